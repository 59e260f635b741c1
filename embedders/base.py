"""The one contract every audio model follows (modelled on the HEAR API)."""
from __future__ import annotations

import abc
import functools
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


class EmbedderError(RuntimeError):
    """A user-facing problem with a model (unknown name, missing weights)."""


@dataclass
class Frames:
    """Timestamped embeddings of one wave."""

    times_s: np.ndarray  # [T] float64, centre time of each frame in seconds
    vectors: np.ndarray  # [T, dim] float32
    tags: np.ndarray | None = None  # [T, n_tags] float32 tag probabilities, or None


@dataclass
class Availability:
    """Whether a registered model can run on this machine, and if not why."""

    name: str
    family: str
    status: str  # "ready" | "downloadable" | "unavailable"
    reason: str = ""  # one line: why not ready and the command that fixes it
    dim: int | None = None
    description: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "ready"


@dataclass
class ModelSpec:
    """A cheap registry entry: describes a model without importing torch or TF."""

    name: str  # stable id, e.g. "musicnn-msd"; part of the Qdrant collection name
    family: str  # "dsp" | "musicnn" | "hf" | "tfhub" | "crepe" | "trained"
    description: str  # one line
    dim: int | None  # output dimension when known without loading
    build: Callable[..., "Embedder"]  # build(data_dir=Path) -> Embedder (loads weights)
    check: Callable[..., Availability] | None = None  # check(data_dir=Path) -> Availability
    listed: bool = True  # False for variants that are loadable by name but not listed
    extra: dict = field(default_factory=dict)


def check_wave(wave: np.ndarray, name: str) -> np.ndarray:
    """`wave` as a 1-D float32 array; EmbedderError (one line, naming the model) if it is not
    mono or holds NaN or infinite samples."""
    w = np.asarray(wave, dtype=np.float32)
    if w.ndim != 1:
        raise EmbedderError(f"{name}: expected a mono wave [n], got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise EmbedderError(f"{name}: the wave contains NaN or infinite samples")
    return w


# The embedding entry points and whether they take a batch of waves. `Embedder` checks their
# waves (check_wave) before a family's code sees them, once per outermost call.
_WAVE_METHODS = {"embed_frames": False, "embed_clip": False,
                 "embed_frames_batch": True, "embed_clip_batch": True}
_checking = threading.local()


def _wave_checked(batched: bool) -> Callable[[Callable], Callable]:
    """Decorator: the method's wave (or, `batched`, each wave) goes through check_wave first;
    nested entry-point calls (an embed_frames calling embed_frames_batch) skip the repeat."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def checked(self, waves, *args, **kwargs):
            if getattr(_checking, "active", False):
                return method(self, waves, *args, **kwargs)
            name = getattr(self, "name", type(self).__name__)
            waves = [check_wave(w, name) for w in waves] if batched else check_wave(waves, name)
            _checking.active = True
            try:
                return method(self, waves, *args, **kwargs)
            finally:
                _checking.active = False

        checked.checks_waves = True
        return checked

    return wrap


class Embedder(abc.ABC):
    """Audio -> vectors. Waves are mono float32 in [-1, 1] at `sample_rate`.

    Families implement `embed_frames` (and may override the other three entry points); every
    entry point, the overrides included, receives waves already checked by `check_wave`: 1-D
    float32, finite. Subclasses never validate waves themselves.
    """

    name: str
    family: str
    description: str = ""
    sample_rate: int
    dim: int
    frame_hop_s: float
    window_s: float | None = None  # native input window (used to trim one-shots around their peak)
    tag_names: list[str] | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for attr, batched in _WAVE_METHODS.items():
            method = cls.__dict__.get(attr)
            if callable(method) and not getattr(method, "checks_waves", False):
                setattr(cls, attr, _wave_checked(batched)(method))

    @abc.abstractmethod
    def embed_frames(self, wave: np.ndarray) -> Frames:
        """Timestamped embeddings of one wave (at least one frame, even for tiny waves)."""

    @_wave_checked(batched=False)
    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        """One L2-normalised vector [dim] for the whole wave (mean of frames)."""
        return l2_normalise(self.embed_frames(wave).vectors.mean(axis=0))

    @_wave_checked(batched=True)
    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        """`embed_frames` for several waves; models override this to batch."""
        return [self.embed_frames(w) for w in waves]

    @_wave_checked(batched=True)
    def embed_clip_batch(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """[n, dim] clip vectors for several waves."""
        frames = self.embed_frames_batch(waves)
        if not frames:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([l2_normalise(f.vectors.mean(axis=0)) for f in frames])

    def clip_tags(self, frames: Frames) -> np.ndarray | None:
        """[n_tags] clip-level tag scores (mean over frames) or None."""
        return None if frames.tags is None else frames.tags.mean(axis=0)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Unit-length copy of x along its last axis (zeros stay zeros), float32."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def frame_times(n_frames: int, hop_s: float, window_s: float) -> np.ndarray:
    """Centre times of n evenly spaced windows of `window_s` every `hop_s` seconds."""
    return np.arange(n_frames, dtype=np.float64) * hop_s + window_s / 2.0
