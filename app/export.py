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

from app.assets import EXPORT_PAGE, plotly_js_path
from app.services import Services



def export_map(svc: Services, library: str, model: str, method: str, dims: int, out: str | Path,
               seed: int = 0, copy_audio: bool = False, vectors: str = "npz") -> dict:
    """Write index.html + points.json + plotly.min.js + thumbs/ (+ audio/) + vectors.{npz,parquet} to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lib = svc.libs.get(library)
    doc = svc.maps.document(library, model, method, dims, seed=seed, quality=True)
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
        th = svc.libs.thumbnail(library, p["id"])
        if th is not None:
            shutil.copy2(th, out / "thumbs" / th.name)
            p["thumb"] = "thumbs/" + th.name
    (out / "points.json").write_text(json.dumps(doc))
    shutil.copy2(plotly_js_path(slim=False), out / "plotly.min.js")  # loaded in <head>: the full bundle
    q = doc.get("quality") or {}
    subtitle = (f"{doc['n']} clips · {model} · {method.upper()} {dims}D"
                + (f" · trustworthiness {q['trustworthiness']:.3f}" if q.get("trustworthiness") is not None else ""))
    page = EXPORT_PAGE.format(title=html.escape(f"{library} · {model}"), subtitle=html.escape(subtitle),
                       data=json.dumps(doc).replace("</", "<\\/"))
    (out / "index.html").write_text(page, encoding="utf-8")
    written = {"page": str(out / "index.html"), "points": doc["n"]}
    written["vectors"] = str(export_vectors(svc, library, model, out, fmt=vectors))
    return written


def export_vectors(svc: Services, library: str, model: str, out: str | Path, fmt: str = "npz") -> Path:
    """Vectors + payload of (library, model) as NPZ (ids, vectors, payload_json) or Parquet."""
    ids, X, pays = svc.vectors.read(library, model)
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
