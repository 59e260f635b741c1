"""The whole UI: the views laid out in tabs and connected, explicitly, in one place."""
from __future__ import annotations

import gradio as gr

from app.services import Services
from app.views import (PRIVATE, api, bind, classes, compare, curate, library, pickers, playback, review, search,
                       selection, train)
from app.views import map as maps


def build_app(svc: Services) -> gr.Blocks:
    """The Gradio Blocks of the explorer."""
    with gr.Blocks(title="Audio embedding explorer") as demo:
        gr.Markdown("## Audio embedding explorer")
        mode_banner = gr.Markdown(elem_id="ae-mode")
        top = pickers.build()
        with gr.Tab("Map", id="map"):
            mapv = maps.build(svc, top.library, top.model)
            sel = selection.build(svc, top.library, top.model, mapv.view, mapv.selection)
        with gr.Tab("Playback", id="playback"):
            play = playback.build(svc, top.library, top.model)
        with gr.Tab("Search", id="search"):
            search.build(svc, top.library, top.model, mapv.selection)
        with gr.Tab("Curate", id="curate"):
            curate.build(svc, top.library, top.model, mapv.selection, mapv.view)
        with gr.Tab("Review", id="review"):
            rev = review.build(svc, top.library, top.model, mapv.selection, mapv.view)
        with gr.Tab("Classes", id="classes"):
            classes.build(svc, top.library, top.model)
        with gr.Tab("Library", id="library"):
            lib = library.build(svc)
            trainv = train.build(svc, top.library, top.model)
        with gr.Tab("Compare", id="compare"):
            compare.build(svc, top.library)
        api.build(svc)

        selectors = ([top.library, top.model], [top.library, top.model, top.banner])
        top.library.change(bind(pickers.models_for, svc), top.library, top.model, **PRIVATE)
        # ids are the same in every model of a library: the selection survives a model change, not a library change
        top.library.change(lambda _lib: ([], selection.panel(svc, None, None, [])), top.library,
                           [mapv.selection, sel.panel], **PRIVATE)
        # a clicked point's file becomes the Playback view's file
        mapv.view.point_click(maps.clicked_clip, None, play.file, **PRIVATE)
        # suggested labels written: the map can be coloured by them
        for event in rev.changed:
            event.then(bind(maps.color_choices, svc), [top.library, top.model, mapv.inputs[4]], mapv.inputs[4], **PRIVATE)
        # indexing or deleting a library changes what the pickers offer
        for event in lib.changed:
            event.then(bind(pickers.refresh, svc), *selectors, **PRIVATE)
        for event in trainv.changed:  # a model trained from the UI and indexed
            event.then(bind(pickers.refresh, svc), *selectors, **PRIVATE).then(
                bind(library.tables, svc), None, lib.tables, **PRIVATE)
        # page load: the pickers, then the map (what a user waits for), the library tables beside it
        loaded = demo.load(bind(pickers.refresh, svc), *selectors, **PRIVATE)
        loaded.then(bind(maps.draw, svc), mapv.inputs, [mapv.view, mapv.status], **PRIVATE).then(
            bind(maps.quality, svc), mapv.inputs, mapv.status, **PRIVATE)
        loaded.then(bind(library.tables, svc), None, lib.tables, **PRIVATE).then(
            bind(library.trained_choices, svc), None, lib.trained, **PRIVATE)
        # what this session may change is shown; the callbacks refuse the rest anyway
        demo.load(bind(library.rights, svc), None, [mode_banner] + lib.rights, **PRIVATE)
        top.library.change(bind(selection.edit_rights, svc), top.library, sel.edit, **PRIVATE)
    return demo
