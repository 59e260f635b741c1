"""The programmatic API: exactly the endpoints the README documents, with stable names.

Results name a clip's path relative to its library `file` (not `path`, which gradio_client
would try to download)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from index.curation import UNSET

from app.services import Services
from app.services.formatting import plain, without_folder
from app.views import bind
from index.classes import class_stats_json

# the README's list; tests/test_api_surface.py checks that a client can call these and nothing else
ENDPOINTS = ("list_libraries", "list_models", "search_file", "search_by_id", "map_coordinates", "taggram",
             "class_stats", "tag_clips")


def api_json(obj: Any) -> Any:
    """JSON for a client: hits as dicts, and every "path" key renamed "file" (gradio_client
    downloads any result dict with a "path" key)."""
    return _rename(plain(obj))


def _rename(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {("file" if k == "path" else k): _rename(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rename(v) for v in obj]
    return obj


def list_libraries(svc: Services, request: gr.Request | None = None) -> list[dict]:
    """Every library: name, root, models and clip counts (the server's folder is left out for
    visitors of a public deployment)."""
    rows = svc.libs.table()
    if not svc.access.is_admin(request):
        rows = [{**{k: v for k, v in r.items() if k != "root"},
                 "damaged": [without_folder(m, r["root"]) for m in r.get("damaged", [])]} for r in rows]
    return rows


def list_models(svc: Services) -> list[dict]:
    """Every model with its availability (ready / downloadable / unavailable and why)."""
    return svc.libs.models()


def search_by_id(svc: Services, library: str, model: str, point_id: str, k: int = 10) -> list[dict]:
    """The k clips nearest a clip of the library (itself first)."""
    return api_json(svc.queries.search_id(library, model, point_id, k=int(k)))


def map_coordinates(svc: Services, library: str, model: str, method: str = "umap", dims: int = 2,
                    seed: int = 0) -> dict:
    """Map coordinates with payload (path, label, tags) of every clip; `params` the method's
    parameters, `fitted_on` the clips the map was fitted on: a UMAP of more than 100,000 clips is
    fitted on a random 20,000 (`params.fit_sample`) and the rest placed by transform (`note`)."""
    return api_json(svc.maps.document(library, model, method, int(dims), seed=int(seed)))


def taggram(svc: Services, library: str, model: str, path: str) -> dict:
    """A clip's taggram over time: times_s, tag names, scores [T, n_tags]."""
    return api_json(svc.queries.taggram(library, model, path))


def class_stats(svc: Services, library: str, model: str, k: int = 5) -> dict:
    """Label counts, agreement@k per class and overall, centroid similarity matrix."""
    return api_json(class_stats_json(svc.queries.class_stats(library, model, k=int(k))))


def tag_clips(svc: Services, library: str, ids: list[str], add: list[str] | None = None,
              remove: list[str] | None = None, label: str | None = None, admin_token: str | None = None,
              request: gr.Request | None = None) -> dict:
    """Add/remove tags and/or set the user label ('' restores the folder's) of clips, in every
    model collection of the library: {changed, clips, collections, missing}. In a public
    deployment it needs `admin_token`."""
    svc.access.require(request, f"tagging clips of library '{library}'", library, token=admin_token)
    res = svc.curation.edit(library, list(ids or []), add=list(add or []), remove=list(remove or []),
                            label=UNSET if label is None else (label.strip() or None))
    return {"changed": res.changed, "clips": res.clips, "collections": res.collections, "missing": res.missing}


def search_file(svc: Services, library: str, model: str, path: str, k: int = 10) -> list[dict]:
    """The k clips most similar to an uploaded audio file."""
    return api_json(svc.queries.search_file(library, model, path, k=int(k or 10)))


def build(svc: Services) -> None:
    """Register the endpoints (search_file through a hidden file input, so clients can upload)."""
    for fn in (list_libraries, list_models, search_by_id, map_coordinates, taggram, class_stats, tag_clips):
        gr.api(bind(fn, svc), api_name=fn.__name__)
    with gr.Row(visible=False):
        lib, model = gr.Textbox(), gr.Textbox()
        f = gr.File(type="filepath")
        k = gr.Number(value=10, precision=0)
        out = gr.JSON()
        btn = gr.Button()
    btn.click(bind(search_file, svc), [lib, model, f, k], out, api_name="search_file")
