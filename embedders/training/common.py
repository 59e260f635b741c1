"""Shared pieces of the trainable models: log-mel front end, model folders, checkpoints, the epoch loop.

A trained model lives in one folder `<data>/trained/<model name>/`:

    meta.json        what it is (kind, name, dim, hop, config, normalisation, results); JSON only
    model.pt         the weights to embed with (a torch state dict of tensors; loaded weights_only)
    checkpoint.pt    the latest epoch's weights + optimizer state + epoch + early-stopping state (resume)
    training_log.csv one row per epoch (epoch, train_loss, val_loss, ...)

No code is pickled: every .pt file is a dict of tensors and plain numbers, read back with
`torch.load(..., weights_only=True)`.
"""
from __future__ import annotations

import contextlib
import contextvars
import csv
import json
import math
import os
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .. import runtime

SAMPLE_RATE = 22050
N_FFT = 1024
HOP = 256  # 86.1 mel frames per second
N_MELS = 64
FMIN, FMAX = 30.0, 11025.0
LOG_FLOOR = 1e-6
FRAMES_PER_S = SAMPLE_RATE / HOP

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
META_FILE, MODEL_FILE, CHECKPOINT_FILE, LOG_FILE = "meta.json", "model.pt", "checkpoint.pt", "training_log.csv"

Progress = Callable[[int, int, str], None]  # (done, total, message), as the indexer's
Log = Callable[[str], None]  # one human-readable line (per epoch, summaries)


class TrainingError(ValueError):
    """A user-facing problem with training (no data, no labels, bad name, model exists)."""


_STOP: contextvars.ContextVar = contextvars.ContextVar("training_stop", default=None)


@contextlib.contextmanager
def stoppable(event: threading.Event):
    """Within this block, setting `event` stops a training run after its current epoch, as an early
    stop: the best weights so far are kept and the model is saved and listed as usual."""
    token = _STOP.set(event)
    try:
        yield
    finally:
        _STOP.reset(token)


def stop_requested() -> bool:
    """Whether the caller of this training run asked it to stop (see `stoppable`)."""
    event = _STOP.get()
    return bool(event is not None and event.is_set())


def pick_device(name: str | None = None) -> torch.device:
    """The device to train and embed on, as a torch.device: `runtime.pick_device(name)`, the one
    device policy (the name given, else $AUDIO_EXPLORER_DEVICE, else CUDA when available, else CPU)."""
    return torch.device(runtime.pick_device(name))


# ----------------------------------------------------------------------------- front end

_MEL_BASES: dict[str, torch.Tensor] = {}


def mel_basis() -> torch.Tensor:
    """[N_MELS, N_FFT//2+1] Slaney mel filterbank (librosa), float32."""
    if "cpu" not in _MEL_BASES:
        import librosa

        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)
        _MEL_BASES["cpu"] = torch.from_numpy(fb.astype(np.float32))
    return _MEL_BASES["cpu"]


def log_mel(wave: np.ndarray) -> np.ndarray:
    """Natural-log mel power spectrogram [N_MELS, T] of a mono wave at SAMPLE_RATE (T >= 1)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if x.numel() < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
    with torch.no_grad():
        spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = mel_basis() @ power
        return torch.log(mel + LOG_FLOOR).numpy().astype(np.float32)


def silence_value() -> float:
    """The log-mel value of digital silence (used to pad short clips)."""
    return float(math.log(LOG_FLOOR))


def pad_to(mel: np.ndarray, n_frames: int, fill: float) -> np.ndarray:
    """`mel` right-padded with `fill` to at least n_frames columns."""
    if mel.shape[1] >= n_frames:
        return mel
    out = np.full((mel.shape[0], n_frames), fill, np.float32)
    out[:, :mel.shape[1]] = mel
    return out


def window_starts(n_cols: int, win: int, hop: int) -> list[int]:
    """Start columns of windows of `win` columns every `hop` (at least one; the last may be padded)."""
    if n_cols <= win:
        return [0]
    return list(range(0, n_cols - win + 1, hop))


def norm_stats(mels: Sequence[np.ndarray], max_cols: int = 200_000) -> tuple[float, float]:
    """(mean, std) of log-mel values over a sample of columns of the training spectrograms."""
    rng = np.random.default_rng(0)
    total = sum(m.shape[1] for m in mels)
    keep = min(1.0, max_cols / max(total, 1))
    parts = []
    for m in mels:
        if keep < 1.0:
            idx = rng.random(m.shape[1]) < keep
            m = m[:, idx]
        if m.size:
            parts.append(m.ravel())
    vals = np.concatenate(parts) if parts else np.zeros(1, np.float32)
    return float(vals.mean()), float(max(vals.std(), 1e-3))


# ----------------------------------------------------------------------------- names and folders

def check_name(name: str) -> str:
    """The short name itself if usable in a model name, else TrainingError."""
    if not name or not NAME_RE.match(name) or "__" in name:
        raise TrainingError(f"bad model name '{name}': use 1-48 letters, digits, '-' or '_' (no '__'), "
                            f"starting with a letter or digit")
    return name


def trained_root(data_dir: str | os.PathLike) -> Path:
    """`<data>/trained`, where every trained model has its folder."""
    return Path(data_dir) / "trained"


def model_folder(data_dir: str | os.PathLike, model_name: str) -> Path:
    """The folder of a trained model (named as the model, e.g. `ae-demo`, `musicnn-msd+supcon-demo`)."""
    return trained_root(data_dir) / model_name


def read_meta(folder: Path) -> dict:
    """A model folder's meta.json."""
    return json.loads((folder / META_FILE).read_text())


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON through a temporary file (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    tmp.replace(path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_tensors(path: Path, state: dict) -> None:
    """torch.save a dict of tensors / plain values through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict:
    """A .pt file written by save_tensors (weights only: no code is unpickled)."""
    return torch.load(path, map_location=device, weights_only=True)


def cpu_state(module: torch.nn.Module) -> dict:
    """A module's state dict, detached copies on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def prepare_folder(folder: Path, resume: bool, overwrite: bool) -> None:
    """Create the model folder for a new run, or check it holds a run to resume."""
    if resume:
        if not (folder / CHECKPOINT_FILE).is_file():
            raise TrainingError(f"nothing to resume: no checkpoint in {folder}")
        return
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise TrainingError(f"model '{folder.name}' already exists ({folder}); use --resume to continue "
                                f"training it or --overwrite to replace it")
        for p in folder.iterdir():
            if p.is_file():
                p.unlink()
    folder.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- the epoch loop

@dataclass
class TrainConfig:
    """Options shared by every trainer (each trainer adds its own)."""

    epochs: int = 30  # total epochs to reach (a resumed run continues up to this number)
    lr: float = 1e-3
    batch_size: int = 64
    patience: int = 5  # stop after this many epochs without a better validation loss
    min_delta: float = 1e-4  # an improvement smaller than this does not count
    seed: int = 0
    device: str | None = None  # None: runtime.pick_device() ($AUDIO_EXPLORER_DEVICE, else cuda when available)
    max_minutes: float = 0.0  # > 0: stop after the epoch during which this much training time has passed


@dataclass
class EpochResult:
    """What one epoch measured (extra columns go to the CSV log too)."""

    train_loss: float
    val_loss: float
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """The outcome of a training run, for the CLI and the UI."""

    model: str  # registered embedder name, e.g. "ae-demo"
    kind: str  # "autoencoder" | "selfsup" | "supcon"
    folder: str
    epochs_run: int  # epochs completed in total (including resumed ones)
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    wall_s: float
    windows_per_s: float  # training throughput (windows, crops or vectors per second)
    history: list[dict]
    notes: list[str]  # lines for people (comparisons, fallbacks)
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


class EpochLoop:
    """Runs epochs with early stopping on validation loss, checkpointing every epoch (resumable).

    `step(epoch) -> EpochResult` trains one epoch and evaluates; the loop keeps the best weights
    in model.pt (through `save_best`) and everything needed to resume in checkpoint.pt.
    """

    def __init__(self, folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 cfg: TrainConfig, log: Log | None = None, log_columns: Sequence[str] = ()):
        self.folder, self.model, self.opt, self.cfg = folder, model, optimizer, cfg
        self.log = log or (lambda line: None)
        self.columns = ["epoch", "train_loss", "val_loss", *log_columns, "wall_s"]
        self.epoch = 0
        self.best_loss = float("inf")
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.stopped_early = False
        self.items_trained = 0
        self.train_s = 0.0
        self.deadline: float | None = None  # perf_counter time at which max_minutes is reached (set by run)

    def time_up(self) -> bool:
        """Whether this run's training-time limit (cfg.max_minutes) has been reached."""
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def restore(self) -> None:
        """Load checkpoint.pt: weights, optimizer state, epoch and early-stopping state."""
        ck = load_tensors(self.folder / CHECKPOINT_FILE)
        truncate_log(self.folder / LOG_FILE, int(ck["epoch"]))
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.epoch = int(ck["epoch"])
        self.best_loss = float(ck["best_loss"])
        self.best_epoch = int(ck["best_epoch"])
        self.bad_epochs = int(ck["bad_epochs"])
        self.stopped_early = bool(ck.get("stopped_early", False))
        if "rng" in ck:
            torch.set_rng_state(ck["rng"])
        self.history = read_log(self.folder / LOG_FILE)

    def _checkpoint(self) -> None:
        save_tensors(self.folder / CHECKPOINT_FILE, {
            "model": cpu_state(self.model), "optimizer": self.opt.state_dict(), "epoch": self.epoch,
            "best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early, "rng": torch.get_rng_state()})

    def run(self, step: Callable[[int], EpochResult], save_best: Callable[[], None],
            items_per_epoch: int, progress: Progress | None = None) -> None:
        """Epochs from the saved one up to cfg.epochs, stopping early after `patience` bad epochs."""
        start_epoch = self.epoch
        minutes = float(getattr(self.cfg, "max_minutes", 0) or 0)
        self.deadline = time.perf_counter() + 60.0 * minutes if minutes > 0 else None
        if self.stopped_early:
            self.log(f"resuming after early stop at epoch {self.epoch}: patience reset")
            self.bad_epochs, self.stopped_early = 0, False
        total = max(self.cfg.epochs - start_epoch, 0)
        if total == 0:
            self.log(f"already trained for {self.epoch} epochs (asked for {self.cfg.epochs}); nothing to do")
        for e in range(start_epoch + 1, self.cfg.epochs + 1):
            t0 = time.perf_counter()
            res = step(e)
            dt = time.perf_counter() - t0
            self.train_s += dt
            self.items_trained += items_per_epoch
            self.epoch = e
            improved = res.val_loss < self.best_loss - self.cfg.min_delta
            if improved or not math.isfinite(self.best_loss):
                self.best_loss, self.best_epoch, self.bad_epochs = res.val_loss, e, 0
                save_best()
            else:
                self.bad_epochs += 1
            row = {"epoch": e, "train_loss": res.train_loss, "val_loss": res.val_loss, **res.extra,
                   "wall_s": round(dt, 3)}
            self.history.append(row)
            append_log(self.folder / LOG_FILE, self.columns, row)
            extra = "".join(f"  {k} {v:.4f}" for k, v in res.extra.items() if isinstance(v, float))
            self.log(f"epoch {e}/{self.cfg.epochs}  train_loss {res.train_loss:.5f}  val_loss {res.val_loss:.5f}"
                     f"{extra}{'  *' if improved else ''}  ({dt:.1f} s)")
            if progress:
                progress(e - start_epoch, total, f"epoch {e} loss {res.train_loss:.4f}")
            if stop_requested() and e < self.cfg.epochs:
                self.stopped_early = True
                self._checkpoint()
                self.log(f"stopped by the user after epoch {e} (best {self.best_loss:.5f} at epoch "
                         f"{self.best_epoch}; --resume continues)")
                break
            if self.time_up() and e < self.cfg.epochs:
                self.stopped_early = True
                self._checkpoint()
                self.log(f"time limit: {minutes:g} min of training reached after epoch {e} (best "
                         f"{self.best_loss:.5f} at epoch {self.best_epoch}; --resume continues)")
                break
            if self.bad_epochs >= self.cfg.patience and e < self.cfg.epochs:
                self.stopped_early = True
                self._checkpoint()
                self.log(f"early stop: no better validation loss for {self.cfg.patience} epochs "
                         f"(best {self.best_loss:.5f} at epoch {self.best_epoch})")
                break
            self._checkpoint()

    @property
    def items_per_s(self) -> float:
        """Training throughput of this run (items of the epochs run now, per second)."""
        return self.items_trained / self.train_s if self.train_s > 0 else 0.0


def append_log(path: Path, columns: Sequence[str], row: dict) -> None:
    """Append one row to the CSV training log (header written on first use)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def read_log(path: Path) -> list[dict]:
    """The CSV training log as dicts of numbers (epoch int, the rest float; blanks None)."""
    if not path.is_file():
        return []
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rec = {}
            for k, v in row.items():
                if v in ("", None):
                    rec[k] = None
                elif k == "epoch":
                    rec[k] = int(float(v))
                else:
                    try:
                        rec[k] = float(v)
                    except ValueError:
                        rec[k] = v
            out.append(rec)
    return out


def truncate_log(path: Path, epoch: int) -> None:
    """Drop log rows after `epoch` (a resumed run rewrites what the checkpoint does not hold)."""
    rows = read_log(path)
    if not rows:
        return
    keep = [r for r in rows if r["epoch"] <= epoch]
    if len(keep) == len(rows):
        return
    columns = list(rows[0].keys())
    path.unlink()
    for r in keep:
        append_log(path, columns, r)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (CPU and CUDA) and return a numpy generator."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def batches(n: int, size: int, rng: np.random.Generator, shuffle: bool = True,
            drop_last: bool = False) -> Iterable[np.ndarray]:
    """Index batches over range(n)."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    for i in range(0, n, size):
        b = order[i:i + size]
        if drop_last and len(b) < size and i > 0:
            break
        yield b


def stderr_log(line: str) -> None:
    """Default Log: one line to stderr."""
    print(line, file=sys.stderr, flush=True)
