"""Playback view: a file's trajectory through the map; a red marker follows the audio in the
browser (driven by the audio element's time, no server round-trips), waveform and spectrogram."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.components import EMPTY, dims_of, error_html, hits_html, map_view
from app.errors import one_line
from app.services import Services
from app.views import PRIVATE, bind
from app.views.map import METHOD_CHOICES

MAX_CHOICES = 1000  # a dropdown of 50k files would freeze the page


@dataclass
class PlaybackHandles:
    """What other views connect to."""

    file: gr.Dropdown


def file_choices(svc: Services, library: str | None, model: str | None) -> dict:
    """The files of (library, model) for the picker: the first MAX_CHOICES, any path may be typed,
    and a click on the Map view picks the clicked file."""
    try:
        paths = svc.libs.files_of(library, model) if library and model else []
    except Exception:
        paths = []
    info = (f"first {MAX_CHOICES} of {len(paths)} files: type a path or click a point on the Map"
            if len(paths) > MAX_CHOICES else None)
    return gr.update(choices=paths[:MAX_CHOICES], value=paths[0] if paths else None, info=info)


def play(svc: Services, library: str | None, model: str | None, path: str | None, method: str, dims: str,
         trail_s: float = 0.0, rotate: bool = False, progress=gr.Progress()) -> tuple[dict, str]:
    """(map value in playback mode, note): the file's frames placed into the map."""
    if not library or not model:
        return {"message": EMPTY}, ""
    if not path:
        return {"message": "Pick a file to play."}, ""
    progress(0.1, desc="placing the file's frames into the map")
    try:
        return svc.maps.playback_value(library, model, method, dims_of(dims), path, trail_s=float(trail_s or 0),
                                       rotate=bool(rotate))
    except Exception as exc:
        return {"message": f"Error: {one_line(exc)}"}, error_html(exc)


def search_part(svc: Services, library: str | None, model: str | None, path: str | None, start_s: float | None,
                end_s: float | None, k: float = 10) -> tuple[str, str]:
    """(status, results HTML): the clips most similar to the start_s..end_s part of the playing file."""
    if not library or not model:
        return EMPTY, ""
    if not path:
        return "Pick a file first.", ""
    try:
        hits, why = svc.queries.search_range(library, model, path, None if start_s is None else float(start_s),
                                             None if end_s is None else float(end_s), k=int(k))
    except Exception as exc:
        return "", error_html(exc)
    span = f"{start_s or 0:g}–{'end' if end_s is None else f'{float(end_s):g}'} s"
    return f"{len(hits)} results for {span} of {path}", hits_html(library, hits, why=why)


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown) -> PlaybackHandles:
    """Lay out the playback view and wire its own events."""
    with gr.Row():
        file = gr.Dropdown([], label="File", scale=3, allow_custom_value=True, elem_id="ae-playback-file")
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method", elem_id="ae-playback-method")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions", elem_id="ae-playback-dims")
    with gr.Row():
        trail = gr.Slider(0, 30, value=0, step=0.5, label="Trail length (s; 0 = whole path)")
        rotate = gr.Checkbox(value=False, label="Rotate camera (3D)")
        play_btn = gr.Button("Play", variant="primary")
    status = gr.Markdown()
    view = map_view(elem_id="ae-map-playback", empty="Pick a file and press Play: its frames are placed on the map, "
                                                              "and a marker follows the audio as it plays.")
    with gr.Accordion("Search with a part of this file", open=False, elem_id="ae-playback-search"):
        with gr.Row():
            part_start = gr.Number(value=None, label="from (s)", elem_id="ae-part-start")
            part_end = gr.Number(value=None, label="to (s)", elem_id="ae-part-end")
            part_btn = gr.Button("Search this part", elem_id="ae-part-go")
        part_status = gr.Markdown()
        part_results = gr.HTML()
    part_btn.click(bind(search_part, svc), [library, model, file, part_start, part_end], [part_status, part_results],
                   **PRIVATE)
    for comp in (library, model):
        comp.change(bind(file_choices, svc), [library, model], file, **PRIVATE)
    play_btn.click(bind(play, svc), [library, model, file, method, dims, trail, rotate], [view, status], **PRIVATE)
    return PlaybackHandles(file)
