"""Compare view: the same library in two or three models side by side (same method), with their
trustworthiness and agreement, the same clip highlighted in all."""
from __future__ import annotations

import gradio as gr

from app.components import EMPTY, dims_of, error_md, map_view
from app.services import Services
from app.services.formatting import compare_table
from app.views import PRIVATE, bind
from app.views.map import METHOD_CHOICES
from app.views.playback import MAX_CHOICES

PANELS = 3
NO_CLIP = "(none)"


def options(svc: Services, library: str | None) -> tuple[dict, dict]:
    """(model choices, the first three ticked; clip choices) for a library."""
    try:
        ms = svc.libs.models_of(library)
        files = svc.libs.files_of(library, ms[0]) if ms else []
    except Exception:
        ms, files = [], []
    return (gr.update(choices=ms, value=ms[:PANELS]),
            gr.update(choices=[NO_CLIP] + files[:MAX_CHOICES], value=NO_CLIP))


def run(svc: Services, library: str | None, models: list[str] | None, method: str, dims: str,
        clip: str | None = None, progress=gr.Progress()) -> list:
    """[quality table, one map value per panel] (unused panels stay blank)."""
    blank = {"message": ""}
    progress(0.05, desc="fitting one map per model (cached afterwards)")
    if not library:
        return [EMPTY] + [blank] * PANELS
    models = list(models or [])[:PANELS]
    if not models:
        return ["Choose 2 or 3 models."] + [blank] * PANELS
    try:
        values, rows = svc.maps.compare(library, models, method, dims_of(dims),
                                        highlight_path=None if clip in (None, "", NO_CLIP) else clip)
    except Exception as exc:
        return [error_md(exc)] + [blank] * PANELS
    return [compare_table(rows)] + values + [blank] * (PANELS - len(values))


def build(svc: Services, library: gr.Dropdown) -> None:
    """Lay out the compare view and wire its own events."""
    with gr.Row():
        models = gr.CheckboxGroup([], label="Models (2 or 3)")
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions")
    with gr.Row():
        clip = gr.Dropdown([], label="Highlight a clip", allow_custom_value=True)
        go_btn = gr.Button("Compare", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        views = [map_view(elem_id=f"ae-map-compare-{i}", empty="" if i else "Press Compare to draw the same clips in "
                              "each chosen model's map, side by side.") for i in range(PANELS)]
    library.change(bind(options, svc), library, [models, clip], **PRIVATE)
    go_btn.click(bind(run, svc), [library, models, method, dims, clip], [status] + views, **PRIVATE)
