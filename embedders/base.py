"""The one contract every audio model follows (modelled on the HEAR API)."""
from __future__ import annotations

import abc
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


class Embedder(abc.ABC):
    """Audio -> vectors. Waves are mono float32 in [-1, 1] at `sample_rate`."""

    name: str
    family: str
    description: str = ""
    sample_rate: int
    dim: int
    frame_hop_s: float
    window_s: float | None = None  # native input window (used to trim one-shots around their peak)
    tag_names: list[str] | None = None

    @abc.abstractmethod
    def embed_frames(self, wave: np.ndarray) -> Frames:
        """Timestamped embeddings of one wave (at least one frame, even for tiny waves)."""

    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        """One L2-normalised vector [dim] for the whole wave (mean of frames)."""
        return l2_normalise(self.embed_frames(wave).vectors.mean(axis=0))

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        """`embed_frames` for several waves; models override this to batch."""
        return [self.embed_frames(w) for w in waves]

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
