"""The library and model pickers above every view."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.components import EMPTY, choices, error_md
from app.services import Services


@dataclass
class Pickers:
    """The shared selectors and the banner under them."""

    library: gr.Dropdown
    model: gr.Dropdown
    banner: gr.Markdown


def refresh(svc: Services, library: str | None = None, model: str | None = None) -> tuple[dict, dict, str]:
    """Library and model choices (keeping the current ones where they still exist) and a banner."""
    try:
        names = svc.libs.names()
        lib = library if library in names else (names[0] if names else None)
        models = svc.libs.models_of(lib)
    except Exception as exc:
        return gr.update(choices=[], value=None), gr.update(choices=[], value=None), error_md(exc)
    if model not in models:  # preselect the library's best measured model
        try:
            model = svc.libs.default_model(lib)
        except Exception:
            model = None
    return choices(names, lib), choices(models, model), "" if names else EMPTY


def models_for(svc: Services, library: str | None) -> dict:
    """The model choices of a library."""
    try:
        return choices(svc.libs.models_of(library), svc.libs.default_model(library))
    except Exception:
        return choices([])


def initial(svc: Services | None) -> tuple[list[str], str | None, list[str], str | None]:
    """(libraries, first library, its models, its preselected model) when the page is built, so a
    new page has values before its load events run (the prefetched map can be clicked at once);
    empty on any error (the page's load refreshes them anyway)."""
    if svc is None:
        return [], None, [], None
    try:
        names = svc.libs.names()
        lib = names[0] if names else None
        models = svc.libs.models_of(lib) if lib else []
        return names, lib, models, (svc.libs.default_model(lib) if models else None)
    except Exception:
        return [], None, [], None


def build(svc: Services | None = None) -> Pickers:
    """Lay out the pickers (with the libraries and models there are now, refreshed on page load)."""
    names, lib, models, model = initial(svc)
    banner = gr.Markdown()
    with gr.Row():
        library = gr.Dropdown(names, value=lib, label="Library", elem_id="ae-library")
        model = gr.Dropdown(models, value=model, label="Model", elem_id="ae-model")
    return Pickers(library, model, banner)
