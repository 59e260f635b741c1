"""Train a model from the Library tab: the supervised-contrastive head on the model picked above,
the self-supervised library model, a pretrained model (VGG / MusiCNN) fine-tuned self-supervised on
the library, or the conditioned autoencoder (a library or one long file
of it). The run goes on in the background (other sessions keep searching); this view polls its
progress bar, per-epoch loss and log; Stop ends it after the current epoch (best weights kept);
when done the model is listed with the others and one click indexes the library with it."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app.components import error_md
from app.services import Services
from app.services.training import FINETUNE_BASES, KINDS
from app.views import PRIVATE, bind
from app.views.library import loss_figure

POLL_S = 1.0


@dataclass
class TrainHandles:
    """What the wiring connects."""

    changed: list   # events after which libraries / models changed (a model trained and indexed)


def status_html(job) -> str:
    """A run's progress bar, state, message and last log lines (data attributes for tests)."""
    if job is None:
        return '<div class="ae-train" data-state="none">No training run yet.</div>'
    pct = 100.0 * job.done / job.total if job.total else 0.0
    tail = "\n".join(job.log[-8:])
    return (f'<div class="ae-train" data-state="{job.state}" data-done="{job.done}" data-total="{job.total}" '
            f'data-model="{html.escape(job.model)}"><b>{html.escape(job.model)}</b> · {job.state}'
            f' · {job.done}/{job.total}<br><progress max="100" value="{pct:.0f}" style="width: 100%"></progress>'
            f'<div>{html.escape(job.message)}</div><pre class="ae-train-log">{html.escape(tail)}</pre></div>')


def start(svc: Services, kind: str, library: str | None, base: str | None, name: str | None, epochs: float | None,
          file: str | None = None, overwrite: bool = False, ft_base: str | None = None,
          minutes: float | None = None, request: gr.Request | None = None) -> tuple:
    """(status, job id, poll timer): start a run in the background (`base`: the model picked above, for
    the contrastive head; `ft_base`: the pretrained start of a fine-tuning run; `minutes`: time limit,
    0 for none, empty for the kind's default)."""
    try:
        svc.access.require(request, f"training a model on library '{library}'", library)
        start_from = base if kind == "contrastive" else ft_base if kind == "finetune" else None
        job = svc.training.start(kind, library, name=name, base=start_from,
                                 epochs=int(epochs) if epochs else None, file=file if kind == "autoencoder" else None,
                                 overwrite=bool(overwrite), minutes=None if minutes is None else float(minutes))
    except Exception as exc:
        return error_md(exc), gr.skip(), gr.update(active=False)
    return status_html(job), job.id, gr.update(active=True)


def poll(svc: Services, job_id: str | None, shown: str | None) -> tuple:
    """(status, loss plot (redrawn when an epoch was added or the run ended), what the plot shows, poll timer)."""
    job = svc.training.job(job_id) or svc.training.current()
    if job is None:
        return status_html(None), gr.skip(), shown, gr.update(active=False)
    key = f"{job.id}:{job.state}:{job.done}"
    redraw = key != shown and job.state not in ("starting", "decoding")
    return (status_html(job), loss_figure(svc, job.model) if redraw else gr.skip(), key,
            gr.update(active=job.running))


def stop(svc: Services, job_id: str | None, request: gr.Request | None = None) -> str:
    """Ask the run to stop after its current epoch."""
    job = svc.training.job(job_id) or svc.training.current()
    if job is None:
        return "No training run."
    try:
        svc.access.require(request, f"stopping a training run on library '{job.library}'", job.library)
    except Exception as exc:
        return error_md(exc)
    svc.training.stop(job.id)
    return status_html(job)


def index_with(svc: Services, job_id: str | None, request: gr.Request | None = None, progress=gr.Progress()) -> str:
    """Index the run's library with the model it trained."""
    job = svc.training.job(job_id) or svc.training.current()
    if job is None or job.state not in ("done", "stopped"):
        return "Train a model first (and wait until it is done)."
    try:
        svc.access.require(request, f"indexing library '{job.library}'", job.library)
        root = svc.libs.get(job.library).root

        def cb(done: int, total: int, msg: str) -> None:
            progress(done / max(total, 1), desc=f"{done}/{total} {msg}")

        rep = svc.libs.index(job.library, folder=root, models=[job.model], progress=cb)
    except Exception as exc:
        return error_md(exc)
    return f"**{html.escape(rep.summary())}**: pick **{html.escape(job.model)}** as the model above."


def build(svc: Services, library: gr.Dropdown, model: gr.Dropdown) -> TrainHandles:
    """Lay out the training section and wire its events."""
    with gr.Accordion("Train a model (in the background)", open=False, elem_id="ae-train-section"):
        gr.Markdown("Trains on the library picked at the top. The contrastive head is trained on the "
                    "**model picked at the top** (its frozen vectors) and the library's labels; fine-tuning starts "
                    "from the pretrained model picked below and uses no labels.")
        with gr.Row():
            kind = gr.Radio([(f"{k}: {v}", k) for k, v in KINDS.items()], value="contrastive", label="What to train",
                            scale=3)
            with gr.Column(scale=1):
                name = gr.Textbox(label="Name (default: the library's)", placeholder="my-head")
                epochs = gr.Number(value=20, precision=0, label="Epochs (at most; early stopping)")
                minutes = gr.Number(value=10, label="Time limit, minutes (0: none; best weights kept)")
        with gr.Row():
            ft_base = gr.Dropdown(list(FINETUNE_BASES), value=FINETUNE_BASES[0], scale=3,
                                  label="Fine-tuning: the pretrained model to start from")
        with gr.Row():
            file = gr.Textbox(label="Autoencoder: one long file of the library only (its path), or empty",
                              scale=3)
            overwrite = gr.Checkbox(value=False, label="Replace a model of that name")
        with gr.Row():
            go = gr.Button("Start training", variant="primary", elem_id="ae-train-go")
            halt = gr.Button("Stop", variant="stop", elem_id="ae-train-stop")
            index_btn = gr.Button("Index the library with it", elem_id="ae-train-index")
        status = gr.HTML(status_html(None), elem_id="ae-train-status")
        loss = gr.Plot(label="Loss per epoch")
        indexed = gr.Markdown()
    job_id = gr.State(None)
    shown = gr.State("")
    timer = gr.Timer(POLL_S, active=False)

    go.click(bind(start, svc), [kind, library, model, name, epochs, file, overwrite, ft_base, minutes],
             [status, job_id, timer],
             **PRIVATE)
    timer.tick(bind(poll, svc), [job_id, shown], [status, loss, shown, timer], **PRIVATE)
    halt.click(bind(stop, svc), job_id, status, **PRIVATE)
    done = index_btn.click(bind(index_with, svc), job_id, indexed, **PRIVATE)
    return TrainHandles([done])
