"""The Gradio UI: one `build_<tab>(services)` per view, wired in `build_app`."""
from __future__ import annotations

import os
import sys

import gradio as gr

from app.cli import one_line
from app.services import Services

EMPTY_LIBRARIES = "No library yet: index a folder in the Library tab (or run `python app.py index FOLDER --library NAME`)."


def _choices(svc: Services) -> tuple[list[str], list[str]]:
    libs = svc.libraries()
    return [lib.name for lib in libs], (list(libs[0].models) if libs else [])


def build_libraries(svc: Services) -> None:
    """Library overview: names, models and counts."""
    table = gr.Dataframe(headers=["library", "clips", "models", "root"], interactive=False, label="Libraries")
    note = gr.Markdown()

    def refresh():
        rows = svc.library_table()
        if not rows:
            return [], EMPTY_LIBRARIES
        return ([[r["name"], r["clips"], ", ".join(f"{m} ({n})" for m, n in r["counts"].items()), r["root"]]
                 for r in rows], "")

    btn = gr.Button("Refresh")
    btn.click(refresh, outputs=[table, note], api_name="list_libraries")
    table.attach_load_event(refresh, None) if hasattr(table, "attach_load_event") else None
    return refresh, table, note


def build_search(svc: Services) -> None:
    """Query by example with an uploaded or recorded clip."""
    names, models = _choices(svc)
    with gr.Row():
        lib = gr.Dropdown(names, value=names[0] if names else None, label="Library")
        model = gr.Dropdown(models, value=models[0] if models else None, label="Model")
        k = gr.Slider(1, 50, value=10, step=1, label="k")
    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Query clip")
    go = gr.Button("Search", variant="primary")
    status = gr.Markdown()
    results = gr.Dataframe(headers=["rank", "score", "label", "path", "id"], interactive=False, label="Results")

    def on_lib(name):
        models = list(svc.library(name).models) if name else []
        return gr.Dropdown(choices=models, value=models[0] if models else None)

    def run(name, model_name, path, k_):
        if not name:
            return EMPTY_LIBRARIES, []
        if not path:
            return "Upload or record a clip first.", []
        try:
            hits = svc.search_file(name, model_name, path, k=int(k_))
        except Exception as exc:
            return f"**Error:** {one_line(exc)}", []
        return (f"{len(hits)} results",
                [[i + 1, round(h.score, 4), h.label or "-", h.path, h.id] for i, h in enumerate(hits)])

    lib.change(on_lib, lib, model)
    go.click(run, [lib, model, audio, k], [status, results], api_name="search_file")


def build_app(svc: Services) -> gr.Blocks:
    """The whole UI."""
    with gr.Blocks(title="Audio embedding explorer") as demo:
        gr.Markdown("# Audio embedding explorer")
        with gr.Tab("Search"):
            build_search(svc)
        with gr.Tab("Library"):
            refresh, table, note = build_libraries(svc)
        demo.load(refresh, outputs=[table, note])
    return demo


def serve(data_dir=None, host: str | None = None, port: int | None = None, demo: bool = True,
          share: bool = False) -> int:
    """Build the demo library if needed and serve the UI until interrupted."""
    svc = Services(data_dir)
    if demo and not svc.libraries():
        print("building the demo library (first run)...", file=sys.stderr)
        svc.ensure_demo()
    app = build_app(svc)
    host = host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = port or int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    roots = [lib.root for lib in svc.libraries()]
    app.queue(default_concurrency_limit=4).launch(server_name=host, server_port=port, share=share,
                                                  allowed_paths=roots, show_error=True)
    return 0
