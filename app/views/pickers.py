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


def build() -> Pickers:
    """Lay out the pickers."""
    banner = gr.Markdown()
    with gr.Row():
        library = gr.Dropdown([], label="Library", elem_id="ae-library")
        model = gr.Dropdown([], label="Model", elem_id="ae-model")
    return Pickers(library, model, banner)
