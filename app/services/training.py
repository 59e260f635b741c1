"""Training runs started from the UI: the supervised-contrastive head, the self-supervised library
model, a pretrained model fine-tuned self-supervised on the library, and the conditioned
autoencoder (`index.training`, the same code as `python app.py train`), each in a background
thread with its progress, per-epoch log and a stop request (an early stop after the current
epoch: the best weights so far are saved and the model is listed as usual).
One run at a time per server (training takes every core it is given); searches and maps go on
meanwhile in their own threads."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import index
from index import training

from app.errors import ServiceError, one_line

if TYPE_CHECKING:
    from app.services import Services

KINDS = {"contrastive": "supervised-contrastive head on a frozen model (needs labels)",
         "selfsup": "self-supervised CNN on the library's audio (no labels)",
         "finetune": "self-supervised fine-tuning of a pretrained model (VGG / MusiCNN) on the library's audio "
                     "(no labels)",
         "autoencoder": "conditioned autoencoder with a 3-D latent (a library, or one long file of it)"}
FINETUNE_BASES = training.FINETUNE_BASES  # pretrained models a fine-tuning run can start from
LOG_LINES = 200


@dataclass
class TrainJob:
    """One training run and what it has said so far."""

    id: str
    kind: str
    library: str
    model: str                       # the name the trained model gets (ae-..., ssl-..., BASE+supcon-...)
    state: str = "starting"          # starting, decoding, training, done, stopped, failed
    done: int = 0                    # epochs (or files while decoding) done of `total`
    total: int = 0
    message: str = ""
    log: list[str] = field(default_factory=list)
    error: str | None = None
    result: dict | None = None       # TrainResult.to_dict() when finished
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """Whether the run is still going."""
        return self.state in ("starting", "decoding", "training")

    def say(self, line: str) -> None:
        """Append a log line (the last LOG_LINES are kept)."""
        self.log.append(line)
        del self.log[:-LOG_LINES]


class TrainingService:
    """Background training runs of one data folder."""

    def __init__(self, svc: "Services"):
        self._svc = svc
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainJob] = {}

    def current(self) -> TrainJob | None:
        """The running job, else the latest one."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.started)
        running = [j for j in jobs if j.running]
        return running[-1] if running else (jobs[-1] if jobs else None)

    def job(self, job_id: str | None) -> TrainJob | None:
        """A job by id."""
        with self._lock:
            return self._jobs.get(str(job_id)) if job_id else None

    def start(self, kind: str, library: str, name: str | None = None, base: str | None = None,
              epochs: int | None = None, file: str | None = None, overwrite: bool = False,
              settings: dict | None = None, minutes: float | None = None) -> TrainJob:
        """Start a run in a background thread (`base`: the frozen model of a contrastive head, the
        pretrained start of a fine-tuning run (default vgg-msd); `minutes`: a training-time limit;
        `settings`: other fields of the kind's config, e.g. patience); ServiceError (one line) for a
        bad request or while another run is going."""
        if kind not in KINDS:
            raise ServiceError(f"unknown kind of training '{kind}' ({', '.join(KINDS)})")
        if not library:
            raise ServiceError("pick a library to train on")
        index.get_library(self._svc.store, library)
        if kind == "contrastive" and not base:
            raise ServiceError("contrastive training needs a base model indexed in the library")
        if kind == "finetune":
            base = base or training.FINETUNE_BASES[0]
            if base not in training.FINETUNE_BASES:
                raise ServiceError(f"cannot fine-tune '{base}': pick one of {', '.join(training.FINETUNE_BASES)}")
        if epochs is not None and int(epochs) < 1:
            raise ServiceError("epochs must be at least 1")
        if minutes is not None and float(minutes) < 0:
            raise ServiceError("the time limit must be 0 (none) or more minutes")
        model = training.model_name("supcon" if kind == "contrastive" else kind, (name or "").strip() or library,
                                    base)
        cfg = {"autoencoder": training.AutoencoderConfig, "selfsup": training.SelfSupConfig,
               "finetune": training.FineTuneConfig, "contrastive": training.SupConConfig}[kind]()
        if epochs:
            cfg.epochs = int(epochs)
        if minutes is not None:
            cfg.max_minutes = float(minutes)
        for key, value in (settings or {}).items():
            if not hasattr(cfg, key):
                raise ServiceError(f"unknown {kind} setting '{key}'")
            setattr(cfg, key, value)
        with self._lock:
            busy = [j for j in self._jobs.values() if j.running]
            if busy:
                raise ServiceError(f"a training run is going ({busy[0].model}, {busy[0].state}): stop it or wait")
            job = TrainJob(uuid.uuid4().hex[:12], kind, library, model)
            self._jobs[job.id] = job
        job.thread = threading.Thread(target=self._run, args=(job, cfg, (name or "").strip() or None, base,
                                                              (file or "").strip() or None, overwrite),
                                      name=f"train-{model}", daemon=True)
        job.thread.start()
        return job

    def stop(self, job_id: str | None) -> TrainJob | None:
        """Ask a run to stop after its current epoch."""
        job = self.job(job_id) or self.current()
        if job is not None and job.running:
            job.stop.set()
            job.say("stop requested: the run stops after the current epoch")
        return job

    def _run(self, job: TrainJob, cfg, name: str | None, base: str | None, file: str | None,
             overwrite: bool) -> None:
        def decoding(done: int, total: int, msg: str = "") -> None:
            if job.stop.is_set():
                raise training.TrainingError("stopped by the user before training began")
            job.state, job.done, job.total, job.message = "decoding", done, total, f"decoding {msg}"

        def epochs(done: int, total: int, msg: str = "") -> None:
            job.state, job.done, job.total, job.message = "training", done, total, msg

        store, ddir = self._svc.store, self._svc.data_dir
        common = dict(name=name, data_dir=ddir, config=cfg, overwrite=overwrite, progress=epochs, log=job.say)
        try:
            with training.stoppable(job.stop):
                job.state = "training" if job.kind == "contrastive" else "decoding"
                if job.kind == "autoencoder":
                    res = training.train_autoencoder(store, job.library, file=file, decode_progress=decoding,
                                                     **common)
                elif job.kind == "selfsup":
                    res = training.train_selfsup(store, job.library, decode_progress=decoding, **common)
                elif job.kind == "finetune":
                    res = training.train_finetune(store, job.library, base, decode_progress=decoding, **common)
                else:
                    res = training.train_contrastive(store, job.library, base, **common)
            job.result = res.to_dict()
            for note in res.notes:
                job.say(note)
            job.state = "stopped" if job.stop.is_set() else "done"
            job.message = (f"trained '{res.model}': {res.epochs_run} epochs (best {res.best_epoch}, validation loss "
                           f"{res.best_val_loss:.5f}){' — stopped by the user' if job.stop.is_set() else ''}; "
                           f"it is listed with the models: index it like any other")
        except Exception as exc:  # a failed run is one line; the server goes on
            job.state, job.error = "failed", one_line(exc)
            job.message = f"failed: {job.error}"
            job.say(job.message)
        finally:
            job.finished = time.time()
