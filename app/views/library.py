"""Library view: index a server-side folder or uploaded files with the chosen models (progress,
a report of what was skipped and why), the models and their availability, delete a library,
trained models' loss curves."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import plotly.graph_objects as go

from app.components import choices, error_md
from app.services import Services
from app.views import PRIVATE, bind


@dataclass
class LibraryHandles:
    """What the wiring connects: the tables to refresh, and the events that change libraries."""

    tables: list      # [libraries table, delete picker, models table]
    trained: gr.Dropdown
    changed: list     # events after which the pickers must be refreshed


def tables(svc: Services) -> tuple[list[list], dict, list[list]]:
    """(libraries rows, delete-picker choices, models rows)."""
    rows = svc.libs.table()
    libs = [[r["name"], r["clips"], "; ".join([", ".join(f"{m} ({'damaged' if n is None else n})"
                                                         for m, n in r["counts"].items())] + r["damaged"]), r["root"]]
            for r in rows]
    models = [[m["name"], m["family"], m["status"], m["dim"] or "", m["reason"]] for m in svc.libs.models()]
    return libs, choices([r["name"] for r in rows]), models


def run_index(svc: Services, name: str | None, folder: str | None, files: list[str] | None, models: list[str] | None,
              labels: str = "folder", segment: str = "auto", segment_s: float = 1.0, trim: bool = False,
              progress=gr.Progress()) -> str:
    """Index a folder or uploads; the report as Markdown."""
    if not name or not name.strip():
        return "**Error:** give the library a name."
    if not models:
        return "**Error:** choose at least one model."

    def cb(done: int, total: int, msg: str) -> None:
        progress(done / max(total, 1), desc=f"{done}/{total} {msg}")

    try:
        rep = svc.libs.index(name.strip(), folder=(folder or "").strip() or None, uploads=files or None,
                             models=list(models), progress=cb, labels=(labels or "folder").strip(),
                             segment=segment, segment_s=float(segment_s or 1.0), trim=bool(trim))
    except Exception as exc:
        return error_md(exc)
    lines = [f"**{html.escape(rep.summary())}** ({rep.audio_s:.1f} s of audio in {rep.wall_s:.1f} s)"]
    if rep.failed:
        lines.append("Skipped:")
        lines += [f"- `{html.escape(p)}`: {html.escape(r)}" for p, r in rep.failed[:200]]
    return "\n".join(lines)


def delete(svc: Services, name: str | None, confirmed: bool) -> str:
    """Delete a library after the box is ticked."""
    if not name:
        return "Pick a library."
    if not confirmed:
        return "Tick the box to confirm."
    try:
        dropped = svc.libs.delete(name)
    except Exception as exc:
        return error_md(exc)
    return f"Deleted library '{html.escape(name)}' ({len(dropped)} collections)."


def trained_choices(svc: Services) -> dict:
    """The models trained here."""
    return choices(svc.libs.trained_models())


def loss_figure(svc: Services, name: str | None) -> go.Figure | None:
    """A trained model's train/validation loss per epoch."""
    if not name:
        return None
    rows = svc.libs.training_log(name)
    fig = go.Figure()
    for col in ("train_loss", "val_loss"):
        ys = [r.get(col) for r in rows]
        if any(v not in (None, "") for v in ys):
            fig.add_trace(go.Scatter(x=[r.get("epoch") for r in rows], y=ys, mode="lines+markers", name=col))
    fig.update_layout(title=f"{name}: loss per epoch", xaxis_title="epoch", yaxis_title="loss", height=360,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def build(svc: Services) -> LibraryHandles:
    """Lay out the library view and wire its own events."""
    table = gr.Dataframe(headers=["library", "clips", "models (clips)", "root"], interactive=False,
                         label="Libraries", elem_id="ae-libraries")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Index audio")
            name = gr.Textbox(label="Library name (new or existing)", placeholder="my-samples")
            folder = gr.Textbox(label="Server-side folder", placeholder="/path/to/samples")
            uploads = gr.File(file_count="multiple", label="…or upload files", type="filepath", elem_id="ae-upload")
            models = gr.CheckboxGroup(svc.libs.ready_models(), value=["dsp"], label="Models (ready here)")
            with gr.Accordion("Options", open=False):
                labels = gr.Textbox(value="folder", label="Labels from",
                                    info="folder, esc50, urbansound8k, pattern:{kit}_{label}_{n}, sidecar:labels.csv")
                segment = gr.Radio(["auto", "always", "never"], value="auto", label="Split into segments",
                                   info="auto: files longer than 30 s")
                seg_len = gr.Number(value=1.0, label="Segment length (s)")
                trim = gr.Checkbox(value=False, label="Trim clips to the model window around their peak")
            go_btn = gr.Button("Index", variant="primary")
            report = gr.Markdown(elem_id="ae-index-report")
        with gr.Column():
            gr.Markdown("### Models")
            models_table = gr.Dataframe(headers=["model", "family", "status", "dim", "why not ready"],
                                        interactive=False, wrap=True)
            gr.Markdown("### Delete a library")
            del_name = gr.Dropdown([], label="Library")
            confirm = gr.Checkbox(value=False, label="Yes, delete all its vectors (audio files are not touched)")
            del_btn = gr.Button("Delete", variant="stop")
            del_msg = gr.Markdown()
    with gr.Accordion("Trained models: training log", open=False):
        gr.Markdown("Train with `python app.py train autoencoder|selfsup|contrastive --library NAME ...`; "
                    "the trained model is then listed above and can be indexed like any other.")
        with gr.Row():
            trained = gr.Dropdown([], label="Trained model", scale=3)
            show = gr.Button("Show loss")
        loss_plot = gr.Plot(label="Loss per epoch")

    outs = [table, del_name, models_table]
    show.click(bind(loss_figure, svc), trained, loss_plot, **PRIVATE)
    indexed = go_btn.click(bind(run_index, svc), [name, folder, uploads, models, labels, segment, seg_len, trim],
                           report, **PRIVATE).then(bind(tables, svc), None, outs, **PRIVATE)
    deleted = del_btn.click(bind(delete, svc), [del_name, confirm], del_msg, **PRIVATE).then(
        bind(tables, svc), None, outs, **PRIVATE)
    return LibraryHandles(outs, trained, [indexed, deleted])
