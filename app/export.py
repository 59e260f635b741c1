"""Export a library map as a self-contained static page, and vectors for notebooks.

The page (index.html) needs no Python server: the points are inlined, plotly.min.js sits
beside it, thumbnails are copied, and audio is referenced by file:// URL (or copied with
`copy_audio`, for hosting). Click a point to hear it.
"""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np

from app.services import Services

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script src="plotly.min.js"></script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 12px 20px; color: #222; }}
#info {{ display: flex; gap: 14px; align-items: center; min-height: 70px; }}
#thumb {{ width: 200px; height: 64px; background: #111; }}
#plot {{ width: 100%; height: 78vh; }}
.meta {{ color: #666; font-size: 13px; }}
</style></head>
<body>
<h2>{title}</h2>
<div class="meta">{subtitle}</div>
<div id="info"><img id="thumb" alt=""/><div><div id="now">Click a point to hear it.</div>
<audio id="player" controls></audio></div></div>
<div id="plot"></div>
<script>
const DATA = {data};
const pts = DATA.points, is3d = DATA.dims === 3;
const PALETTE = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#17becf','#bcbd22',
  '#7f7f7f','#393b79','#637939','#8c6d31','#843c39','#7b4173'];
const labels = [...new Set(pts.map(p => p.label == null ? '(no label)' : p.label))].sort();
const traces = labels.map((lb, k) => {{
  const idx = pts.map((p, i) => i).filter(i => (pts[i].label == null ? '(no label)' : pts[i].label) === lb);
  const t = {{ type: is3d ? 'scatter3d' : 'scattergl', mode: 'markers', name: lb + ' (' + idx.length + ')',
    x: idx.map(i => pts[i].x), y: idx.map(i => pts[i].y), customdata: idx,
    text: idx.map(i => pts[i].path), hovertemplate: '%{{text}}<extra></extra>',
    marker: {{ size: is3d ? 3 : 7, color: lb === '(no label)' ? '#bbb' : PALETTE[k % PALETTE.length] }} }};
  if (is3d) t.z = idx.map(i => pts[i].z);
  return t;
}});
const gd = document.getElementById('plot');
Plotly.newPlot(gd, traces, {{ margin: {{l: 0, r: 0, t: 0, b: 0}}, hovermode: 'closest',
  legend: {{ itemsizing: 'constant' }} }}, {{ responsive: true, displaylogo: false }}).then(() => {{
  document.body.dataset.points = String(pts.length);
}});
gd.on('plotly_click', ev => {{
  const i = ev.points[0].customdata, p = pts[i];
  document.getElementById('now').textContent = p.path + (p.label ? '  [' + p.label + ']' : '');
  const a = document.getElementById('player');
  a.src = p.audio; a.currentTime = p.start_s || 0; a.play().catch(() => {{}});
  const th = document.getElementById('thumb');
  if (p.thumb) {{ th.src = p.thumb; th.style.visibility = 'visible'; }} else th.style.visibility = 'hidden';
  document.body.dataset.playing = p.path;
}});
</script></body></html>
"""


def export_map(svc: Services, library: str, model: str, method: str, dims: int, out: str | Path,
               seed: int = 0, copy_audio: bool = False, vectors: str = "npz") -> dict:
    """Write index.html + points.json + plotly.min.js + thumbs/ (+ audio/) + vectors.{npz,parquet} to `out`."""
    from app.server import plotly_js_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lib = svc.library(library)
    doc = svc.map_document(library, model, method, dims, seed=seed, quality=True)
    (out / "thumbs").mkdir(exist_ok=True)
    copied: set[str] = set()
    for p in doc["points"]:
        src = lib.resolve(p["path"])
        if copy_audio:
            dest = out / "audio" / p["path"]
            if p["path"] not in copied:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                copied.add(p["path"])
            p["audio"] = "audio/" + p["path"]
        else:
            p["audio"] = src.as_uri()
        th = svc.thumbnail(library, p["id"])
        if th is not None:
            shutil.copy2(th, out / "thumbs" / th.name)
            p["thumb"] = "thumbs/" + th.name
    (out / "points.json").write_text(json.dumps(doc))
    shutil.copy2(plotly_js_path(slim=False), out / "plotly.min.js")  # loaded in <head>: the full bundle
    q = doc.get("quality") or {}
    subtitle = (f"{doc['n']} clips · {model} · {method.upper()} {dims}D"
                + (f" · trustworthiness {q['trustworthiness']:.3f}" if q.get("trustworthiness") is not None else ""))
    page = PAGE.format(title=html.escape(f"{library} · {model}"), subtitle=html.escape(subtitle),
                       data=json.dumps(doc).replace("</", "<\\/"))
    (out / "index.html").write_text(page, encoding="utf-8")
    written = {"page": str(out / "index.html"), "points": doc["n"]}
    written["vectors"] = str(export_vectors(svc, library, model, out, fmt=vectors))
    return written


def export_vectors(svc: Services, library: str, model: str, out: str | Path, fmt: str = "npz") -> Path:
    """Vectors + payload of (library, model) as NPZ (ids, vectors, payload_json) or Parquet."""
    ids, X, pays = svc.read_vectors(library, model)
    out = Path(out)
    if fmt == "npz":
        path = out / f"{library}__{model}.npz"
        np.savez_compressed(path, ids=np.array(ids), vectors=X,
                            payload_json=np.array([json.dumps(p) for p in pays]))
        return path
    if fmt == "parquet":
        import pandas as pd

        path = out / f"{library}__{model}.parquet"
        df = pd.DataFrame({"id": ids, "vector": list(X.astype(np.float32)),
                           "path": [p.get("path") for p in pays], "label": [p.get("label") for p in pays],
                           "payload_json": [json.dumps(p) for p in pays]})
        df.to_parquet(path, index=False)
        return path
    raise ValueError(f"unknown vector format '{fmt}' (npz or parquet)")
