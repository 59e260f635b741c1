"""Map view: library x model x method x dims; colour by label/tag/descriptor; click a point to
hear it and list its nearest neighbours (a Qdrant query)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import gradio as gr

from app.components import EMPTY, choices, dims_of, error_html, hits_html, map_view
from app.errors import one_line
from app.services import METHOD_LABELS, Services
from app.views import PRIVATE, bind

METHOD_CHOICES = [(label, key) for key, label in METHOD_LABELS.items()]


@dataclass
class MapHandles:
    """What other views connect to."""

    view: gr.HTML
    status: gr.Markdown
    inputs: list  # the draw / quality callbacks' inputs, pickers first, the selection last
    selection: gr.State  # point ids of the selection


def method_params(method: str, n_neighbors: float, min_dist: float, perplexity: float) -> dict:
    """The map method's own parameters from the sliders."""
    return {"umap": {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist)},
            "tsne": {"perplexity": float(perplexity)}}.get(method, {})


class _Latest:
    """The newest map request of each page (Gradio session): a draw that finishes after a newer one
    of its page began is dropped, so picking UMAP then 3D at once never ends on the slow UMAP 2D."""

    def __init__(self, keep: int = 2000):
        self._gen: OrderedDict[str, int] = OrderedDict()
        self._lock, self._keep, self._n = threading.Lock(), keep, 0

    def begin(self, request: gr.Request | None) -> tuple[str, int] | None:
        """Record a new request of this page; its ticket (None without a session)."""
        sid = getattr(request, "session_hash", None)
        if not sid:
            return None
        with self._lock:
            self._n += 1
            self._gen[sid] = self._n
            self._gen.move_to_end(sid)
            while len(self._gen) > self._keep:
                self._gen.popitem(last=False)
            return sid, self._n

    def superseded(self, ticket: tuple[str, int] | None) -> bool:
        """Whether a newer request of the ticket's page began since."""
        if ticket is None:
            return False
        with self._lock:
            return self._gen.get(ticket[0], ticket[1]) != ticket[1]


LATEST = _Latest()


def draw(svc: Services, library: str | None, model: str | None, method: str, dims: str, color_by: str,
         n_neighbors: float = 15, min_dist: float = 0.1, perplexity: float = 30, seed: float = 0,
         selected: list[str] | None = None, progress=gr.Progress(),
         request: gr.Request | None = None) -> tuple[dict, str] | tuple:
    """(map value, status line): the map first, the selection marked; its quality numbers come
    from `quality`. Nothing is shown when a newer draw of the same page began meanwhile."""
    ticket = LATEST.begin(request)
    out = _draw(svc, library, model, method, dims, color_by, n_neighbors, min_dist, perplexity, seed, selected,
                progress)
    return (gr.skip(), gr.skip()) if LATEST.superseded(ticket) else out


def _draw(svc: Services, library: str | None, model: str | None, method: str, dims: str, color_by: str,
          n_neighbors: float, min_dist: float, perplexity: float, seed: float, selected: list[str] | None,
          progress) -> tuple[dict, str]:
    if not library or not model:
        return {"message": EMPTY}, ""
    progress(0.05, desc=f"{METHOD_LABELS.get(method, method)} map of {library} · {model} (fitted once, then cached)")

    def placing(done: int, total: int, msg: str) -> None:  # a UMAP fitted on a sample places the rest
        progress(0.1 + 0.85 * done / max(total, 1), desc=msg)

    try:
        return svc.maps.value(library, model, method, dims_of(dims), color_by=color_by, seed=int(seed or 0),
                              params=method_params(method, n_neighbors, min_dist, perplexity), quality=False,
                              selected_ids=selected, progress=placing)
    except Exception as exc:
        return {"message": f"Error: {one_line(exc)}"}, error_html(exc)


def quality(svc: Services, library: str | None, model: str | None, method: str, dims: str, color_by: str,
            n_neighbors: float = 15, min_dist: float = 0.1, perplexity: float = 30, seed: float = 0,
            selected: list[str] | None = None) -> str | dict:
    """The status line with the map's quality numbers (computed once, cached with the map)."""
    if not library or not model:
        return gr.skip()
    try:
        return svc.maps.status(library, model, method, dims_of(dims), seed=int(seed or 0),
                               params=method_params(method, n_neighbors, min_dist, perplexity))
    except Exception as exc:
        return error_html(exc)


def color_choices(svc: Services, library: str | None, model: str | None, current: str | None = "label") -> dict:
    """What the map can be coloured by for this (library, model) (keeping `current` if offered)."""
    try:
        return choices(svc.maps.color_options(library, model), current or "label")
    except Exception:
        return choices(["label"], "label")


def click(svc: Services, library: str, model: str, k: float, token: str | None, index_: int | None,
          point_id: str | None = None) -> tuple[str, str | None]:
    """(clicked clip and its k nearest neighbours as HTML, the clicked point id)."""
    pid = point_id or svc.maps.tokens.point_id(token, index_)
    if not pid:
        return "", None
    if not library or not model:  # the prefetched first map, clicked before the page's pickers were set
        library, model = svc.maps.tokens.source(token) or (library, model)
    try:
        hits = svc.queries.search_id(library, model, pid, k=int(k) + 1)
    except Exception as exc:
        return error_html(exc), None
    head = hits[0].path if hits else ""
    return (hits_html(library, hits[:1], "Clicked clip") +
            hits_html(library, hits[1:], f"Nearest to {head} ({model})")), pid


def clicked_clip(evt: gr.EventData) -> str | dict:
    """The path of a clicked point (for the Playback view's file picker)."""
    return (getattr(evt, "_data", None) or {}).get("clip") or gr.skip()


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown) -> MapHandles:
    """Lay out the map view and wire its own events."""
    with gr.Row():
        method = gr.Radio(METHOD_CHOICES, value="pca", label="Method", info="LDA fits on labelled clips only")
        dims = gr.Radio(["2D", "3D"], value="2D", label="Dimensions")
        color = gr.Dropdown(["label"], value="label", label="Colour by", allow_custom_value=False, elem_id="ae-color")
        draw_btn = gr.Button("Draw map", variant="primary")
    with gr.Accordion("Parameters", open=False):
        with gr.Row():
            n_neighbors = gr.Slider(2, 100, value=15, step=1, label="UMAP n_neighbors")
            min_dist = gr.Slider(0.0, 0.99, value=0.1, step=0.01, label="UMAP min_dist")
            perplexity = gr.Slider(2, 100, value=30, step=1, label="t-SNE perplexity")
            seed = gr.Number(value=0, precision=0, label="Seed")
    status = gr.Markdown(elem_classes=["ae-quality"])
    view = map_view(elem_id="ae-map-main")
    with gr.Row():
        k = gr.Slider(1, 30, value=8, step=1, label="Neighbours of a clicked point", scale=1)
    neighbours = gr.HTML("<p>Click a point to hear it and see its nearest neighbours (a Qdrant query).</p>")
    clicked = gr.State(None)
    selection = gr.State([])

    inputs = [library, model, method, dims, color, n_neighbors, min_dist, perplexity, seed, selection]
    for trigger in (draw_btn.click, method.change, dims.change, color.change):
        trigger(bind(draw, svc), inputs, [view, status], **PRIVATE).then(bind(quality, svc), inputs, status, **PRIVATE)
    model.change(bind(color_choices, svc), [library, model], color, **PRIVATE)

    def on_click(library_, model_, k_, evt: gr.EventData):
        data = getattr(evt, "_data", None) or {}
        return click(svc, library_, model_, k_, data.get("token"), data.get("index"), data.get("id"))

    view.point_click(on_click, [library, model, k], [neighbours, clicked], **PRIVATE)
    return MapHandles(view, status, inputs, selection)
