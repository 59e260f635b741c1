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
from app.services.formatting import without_folder
from app.views import PRIVATE, bind


@dataclass
class LibraryHandles:
    """What the wiring connects: the tables to refresh, and the events that change libraries."""

    tables: list      # [libraries table, delete picker, models table]
    trained: gr.Dropdown
    changed: list     # events after which the pickers must be refreshed
    rights: list      # [folder box, delete group, admin group]: shown per session


def tables(svc: Services, request: gr.Request | None = None) -> tuple[list[list], dict, list[list]]:
    """(libraries rows, delete-picker choices, models rows); the server's folders are left out for
    visitors of a public deployment (as /list_libraries does)."""
    rows = svc.libs.table()
    admin = svc.access.is_admin(request)
    libs = [[r["name"], r["clips"], "; ".join([", ".join(f"{m} ({'damaged' if n is None else n})"
                                                         for m, n in r["counts"].items())]
                                              + [d if admin else without_folder(d, r["root"]) for d in r["damaged"]]),
             r["root"] if admin else "(hidden)"]
            for r in rows]
    models = [[m["name"], m["family"], m["status"], m["dim"] or "", m["reason"]] for m in svc.libs.models()]
    return libs, choices([r["name"] for r in rows]), models


def run_index(svc: Services, name: str | None, folder: str | None, files: list[str] | None, models: list[str] | None,
              labels: str = "folder", segment: str = "auto", segment_s: float = 1.0, trim: bool = False,
              request: gr.Request | None = None, progress=gr.Progress()) -> str:
    """Index a folder or uploads; the report as Markdown. In public mode a visitor's uploads go
    to the visitor's own scratch library (quotas apply) and server folders are refused."""
    access = svc.access
    visitor = not access.is_admin(request)
    if visitor:
        if (folder or "").strip():
            return error_md("refused: indexing a server folder needs the admin token in this public deployment")
        name = access.scratch_library(request)
    if not name or not name.strip():
        return "**Error:** give the library a name."
    if not models:
        return "**Error:** choose at least one model."

    def cb(done: int, total: int, msg: str) -> None:
        progress(done / max(total, 1), desc=f"{done}/{total} {msg}")

    opts = dict(labels=(labels or "folder").strip(), segment=segment, segment_s=float(segment_s or 1.0),
                trim=bool(trim))
    try:
        if visitor:
            rep = svc.libs.index_scratch(name, list(files or []), list(models), progress=cb, **opts)
        else:
            rep = svc.libs.index(name.strip(), folder=(folder or "").strip() or None, uploads=files or None,
                                 models=list(models), progress=cb, **opts)
    except Exception as exc:
        return error_md(exc)
    lines = [f"**{html.escape(rep.summary())}** ({rep.audio_s:.1f} s of audio in {rep.wall_s:.1f} s)"]
    if rep.failed:
        lines.append("Skipped:")
        lines += [f"- `{html.escape(p)}`: {html.escape(r)}" for p, r in rep.failed[:200]]
    if visitor:
        lines.append(f"Indexed into your own library **{html.escape(name)}** (it expires "
                     f"{access.quota.ttl_s / 3600:.0f} h after its last change).")
    return "\n".join(lines)


def delete(svc: Services, name: str | None, confirmed: bool, request: gr.Request | None = None) -> str:
    """Delete a library after the box is ticked (public mode: the admin, or a visitor's own)."""
    if not name:
        return "Pick a library."
    if not confirmed:
        return "Tick the box to confirm."
    try:
        svc.access.require(request, f"deleting library '{name}'", library=name)
        dropped = svc.libs.delete(name)
    except Exception as exc:
        return error_md(exc)
    return f"Deleted library '{html.escape(name)}' ({len(dropped)} collections)."


def unlock(svc: Services, token: str | None, request: gr.Request | None = None) -> tuple[str, dict, dict]:
    """(message, folder box, delete group): the admin token unlocks this browser session."""
    if not svc.access.public:
        return "Local mode: everything is allowed already.", gr.update(), gr.update()
    if svc.access.grant(request, (token or "").strip()):
        return "Unlocked: this session may index, delete and edit.", gr.update(visible=True), gr.update(visible=True)
    return "**Error:** wrong admin token.", gr.update(), gr.update()


def rights(svc: Services, request: gr.Request | None = None) -> tuple[str, dict, dict, dict]:
    """(banner, folder box, delete group, admin group) for this session: what it may do is shown."""
    access = svc.access
    if not access.public:
        return "", gr.update(visible=True), gr.update(visible=True), gr.update(visible=False)
    admin = access.is_admin(request)
    banner = ("" if admin else
              "**Public mode:** browse, play, search, draw maps, select and export freely; your uploads go to "
              f"your own library (`{access.scratch_library(request)}`, up to {access.quota.files} files). Indexing "
              "server folders, deleting and editing shared libraries need the admin token (Library tab).")
    return banner, gr.update(visible=admin), gr.update(visible=admin), gr.update(visible=True)


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
            folder = gr.Textbox(label="Server-side folder", placeholder="/path/to/samples", elem_id="ae-folder")
            uploads = gr.File(file_count="multiple", label="…or upload files", type="filepath", elem_id="ae-upload")
            models = gr.CheckboxGroup(svc.libs.ready_models(), value=["dsp"], label="Models (ready here)")
            with gr.Accordion("Options", open=False):
                labels = gr.Textbox(value="folder", label="Labels from",
                                    info="folder, esc50, urbansound8k, pattern:{kit}_{label}_{n}, sidecar:labels.csv, tag:genre")
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
            with gr.Group(elem_id="ae-delete") as del_group:
                gr.Markdown("### Delete a library")
                del_name = gr.Dropdown([], label="Library")
                confirm = gr.Checkbox(value=False, label="Yes, delete all its vectors (audio files are not touched)")
                del_btn = gr.Button("Delete", variant="stop", elem_id="ae-delete-go")
            del_msg = gr.Markdown(elem_id="ae-delete-msg")
            with gr.Group(visible=False, elem_id="ae-admin") as admin_group:
                gr.Markdown("### Admin")
                token = gr.Textbox(label="Admin token", type="password", elem_id="ae-admin-token")
                unlock_btn = gr.Button("Unlock this session", elem_id="ae-unlock")
                unlock_msg = gr.Markdown()
    with gr.Accordion("Trained models: training log", open=False):
        gr.Markdown("Train below (“Train a model”) or with `python app.py train "
                    "autoencoder|selfsup|finetune|contrastive --library NAME ...`; the trained model is then "
                    "listed above and can be indexed like any other.")
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
    unlock_btn.click(bind(unlock, svc), token, [unlock_msg, folder, del_group], **PRIVATE)
    return LibraryHandles(outs, trained, [indexed, deleted], [folder, del_group, admin_group])
