"""Static pieces of the pages: plotly.js, CSS, the map component's template and script, and the
exported map's page template."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = "200mb"

# the explorer's own styles (hit rows, errors, status lines)
CSS = """
.ae-hits { display: flex; flex-direction: column; gap: 6px; }
.ae-hit { display: grid; grid-template-columns: 2.2em 5em 160px 1fr 300px; gap: 10px; align-items: center;
  padding: 4px 6px; border-bottom: 1px solid #eee; font-size: 13px; }
.ae-hit img { width: 160px; height: 48px; object-fit: fill; border-radius: 3px; background: #111; }
.ae-hit audio { width: 300px; height: 32px; }
.ae-hit .lbl { display: inline-block; padding: 0 6px; border-radius: 8px; background: #eef; color: #224; }
.ae-hit .path { font-family: monospace; word-break: break-all; }
.ae-hit .score { font-variant-numeric: tabular-nums; }
.ae-aspects { display: flex; gap: 6px; margin-top: 3px; }
.ae-aspect { display: inline-flex; align-items: center; gap: 3px; font-size: 11px; width: 86px; }
.ae-aspect i { font-style: normal; color: #667; width: 2.6em; }
.ae-aspect .track { flex: 1; height: 6px; background: #eef; border-radius: 2px; overflow: hidden; }
.ae-aspect b { display: block; height: 100%; background: #5a7bd8; }
.ae-aspect.off b { background: #c8cde0; }
.ae-why { display: block; font-size: 12px; color: #556; margin-top: 2px; }
.ae-error { color: #b00020; font-weight: 600; }
.ae-dupgroup { margin: 6px 0 10px; }
.ae-dupgroup ul { list-style: none; padding-left: 0.6em; margin: 2px 0; }
.ae-dupgroup li { display: flex; gap: 10px; align-items: center; font-size: 13px; }
.ae-dupgroup li .path { font-family: monospace; min-width: 22em; }
.ae-dupgroup audio { height: 30px; width: 280px; }
.ae-selsum { margin: 4px 0 6px; }
.ae-review-item { display: grid; grid-template-columns: 1fr; gap: 6px; padding: 8px; border: 1px solid #ccd; border-radius: 6px; }
.ae-review-item img { width: 320px; height: 80px; object-fit: fill; background: #111; }
.ae-review-item .path, .ae-review-queue .path { font-family: monospace; word-break: break-all; }
.ae-review-queue ol { padding-left: 1.4em; } .ae-review-queue li { display: flex; gap: 10px; align-items: center; }
.ae-review-queue audio { height: 30px; width: 260px; } .ae-review-keys { color: #666; font-size: 12px; }
.ae-quality { color: #555; }
.ae-class { margin: 2px 0; } .ae-class summary { cursor: pointer; padding: 4px 2px; font-weight: 600; }
.ae-class[open] summary { border-bottom: 1px solid #eee; }
/* a download box before anything was exported: one slim line, not a drop-zone-sized empty area */
.ae-download .empty { min-height: 0 !important; height: 2.4em !important; }
.ae-download .empty .icon { height: 1.4em; width: 1.4em; }
"""

# the map component (Plotly WebGL inside gr.HTML): its template never depends on ${value}, so
# Gradio's DOM diff keeps what mapview.js adds
MAP_TEMPLATE = """
<div class="ae-map">
  <div class="ae-head"><span class="ae-title"></span><span class="ae-note"></span>
    <span class="ae-tools"><span class="ae-selinfo"></span>
      <button class="ae-audition" style="display:none">▶ audition selection</button>
      <label class="ae-hoverlabel" title="play a point when the mouse passes over it">
        <input type="checkbox" class="ae-hoverplay"/> hover to hear</label></span></div>
  <div class="ae-plotwrap"><div class="ae-plot"></div><div class="ae-marker"></div></div>
  <div class="ae-play"><audio class="ae-audio" controls preload="auto"></audio><span class="ae-now"></span></div>
  <div class="ae-timeline"><canvas class="ae-wave"></canvas><img class="ae-spec" alt="spectrogram"/>
    <div class="ae-cursor"></div></div>
</div>
"""

MAP_CSS = """
.ae-map { width: 100%; font-size: 13px; }
.ae-head { display: flex; gap: 1em; align-items: baseline; min-height: 1.4em; }
.ae-tools { margin-left: auto; display: flex; gap: 0.8em; align-items: baseline; color: #333; }
.ae-selinfo { font-weight: 600; }
.ae-audition { padding: 1px 8px; border: 1px solid #888; border-radius: 4px; background: #f6f6f6; cursor: pointer; }
.ae-hoverlabel { cursor: pointer; user-select: none; }
.ae-title { font-weight: 600; }
.ae-note { color: #777; }
.ae-plotwrap { position: relative; }
.ae-plot { width: 100%; min-height: 300px; }
.ae-empty { padding: 3em 1em; text-align: center; color: #666; font-size: 15px; }
.ae-marker { position: absolute; display: none; width: 16px; height: 16px; margin: -8px 0 0 -8px;
  border-radius: 50%; background: #e00000; border: 2px solid #fff; box-shadow: 0 0 6px rgba(0,0,0,.5);
  pointer-events: none; z-index: 5; }
.ae-play { display: flex; align-items: center; gap: 1em; margin-top: 4px; }
.ae-audio { height: 36px; min-width: 320px; }
.ae-now { color: #444; font-family: monospace; }
.ae-timeline { position: relative; display: none; margin-top: 6px; cursor: pointer; }
.ae-wave { width: 100%; height: 60px; display: block; background: #f4f6fb; }
.ae-spec { width: 100%; height: 96px; display: block; image-rendering: auto; }
.ae-cursor { position: absolute; top: 0; bottom: 0; width: 2px; background: #e00000; left: 0; pointer-events: none; }
"""

# the first map of a page, fetched and drawn off-screen while Gradio loads (app/static/mapearly.js;
# the map component adopts it when it mounts); the server also puts it at the top of the page
# (app/server.py), where it starts ~1 s before Gradio's own head arrives
EARLY_MODES = ("draw", "fetch", "off")


def early_mode() -> str:
    """How early a page's first map comes (`$AUDIO_EXPLORER_MAP_EARLY`, a benchmark's baseline switch):
    `draw` (default): fetched from the page's first bytes and drawn off-screen before Gradio mounts;
    `fetch`: fetched from the first bytes, drawn when the map component mounts; `off`: fetched once
    Gradio's head is in, drawn when the component mounts (before this mode existed)."""
    mode = os.environ.get("AUDIO_EXPLORER_MAP_EARLY", "draw").strip().lower() or "draw"
    return mode if mode in EARLY_MODES else "draw"


def head(mode: str | None = None) -> str:
    """The page head: plotly.js preloaded and the early map script (see `early_mode`)."""
    mode = mode or early_mode()
    early = (STATIC / "mapearly.js").read_text().replace("__AE_TEMPLATE__", json.dumps(MAP_TEMPLATE))
    early = early.replace("__AE_EARLY_DRAW__", "true" if mode == "draw" else "false")
    return f'<link rel="preload" href="/static/plotly.min.js" as="script"><script>{early}</script>'


@functools.cache
def mapview_js() -> str:
    """The map component's js_on_load code (read once: the page head's early draw, served from
    /static/mapview.js, runs the same code as the components built with it)."""
    return (STATIC / "mapview.js").read_text()


def plotly_js_path(slim: bool = True) -> Path:
    """The map's plotly.js: the slim committed bundle (scattergl + scatter3d; it must be run once
    the page's body exists, as mapview.js does), else, or with ``slim=False``, the plotly
    package's full one."""
    path = STATIC / "plotly-map.min.js"
    if slim and path.is_file():
        return path
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


# a self-contained page of a map (app/export.py): points inlined, plotly.min.js beside it
EXPORT_PAGE = """<!doctype html>
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
