"""The map component: Plotly (WebGL) inside gr.HTML, with click-to-hear and a playback marker."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

STATIC = Path(__file__).resolve().parent / "static"

TEMPLATE = """
<div class="ae-map">
  <div class="ae-head"><span class="ae-title"></span><span class="ae-note"></span></div>
  <div class="ae-plotwrap"><div class="ae-plot"></div><div class="ae-marker"></div></div>
  <div class="ae-play"><audio class="ae-audio" controls preload="auto"></audio><span class="ae-now"></span></div>
  <div class="ae-timeline"><canvas class="ae-wave"></canvas><img class="ae-spec" alt="spectrogram"/>
    <div class="ae-cursor"></div></div>
</div>
"""

CSS = """
.ae-map { width: 100%; font-size: 13px; }
.ae-head { display: flex; gap: 1em; align-items: baseline; min-height: 1.4em; }
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

# fetched early, run by mapview.js once the app has mounted (see there)
HEAD = '<link rel="preload" href="/static/plotly.min.js" as="script">'


def js() -> str:
    """The component's js_on_load code."""
    return (STATIC / "mapview.js").read_text()


def map_view(**kwargs) -> gr.HTML:
    """A map component; set its value to a map document (see `app.views.map_value`)."""
    return gr.HTML(value=None, html_template=TEMPLATE, css_template=CSS, js_on_load=js(), **kwargs)
