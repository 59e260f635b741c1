"""Family 'dsp': MFCC and log-mel statistics (librosa). No weights; the floor to beat."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Embedder, Frames, ModelSpec, frame_times, l2_normalise
from .timbre import (DIM, HOP, HOP_S, N_FFT, N_MELS, N_MFCC, SAMPLE_RATE, WINDOW_S,  # noqa: F401
                     features as _features, stats as _stats)


class DspEmbedder(Embedder):
    """MFCC + log-mel statistics over 0.5 s windows (0.25 s hop); clip vector from the whole clip."""

    name = "dsp"
    family = "dsp"
    description = "MFCC and log-mel statistics (librosa); no weights, the floor"
    sample_rate = SAMPLE_RATE
    dim = DIM
    frame_hop_s = HOP_S
    window_s = WINDOW_S
    tag_names = None

    def embed_frames(self, wave: np.ndarray) -> Frames:
        log_mel, mfcc = _features(np.asarray(wave, np.float32))
        per_s = SAMPLE_RATE / HOP
        win, hop = max(1, round(WINDOW_S * per_s)), max(1, round(HOP_S * per_s))
        n_cols = log_mel.shape[1]
        starts = list(range(0, max(1, n_cols - win + 1), hop))
        vecs = np.stack([_stats(log_mel[:, s:s + win], mfcc[:, s:s + win]) for s in starts])
        duration_s = len(wave) / SAMPLE_RATE
        times = frame_times(len(starts), HOP_S, min(WINDOW_S, duration_s))
        return Frames(times_s=times, vectors=l2_normalise(vecs), tags=None)

    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        log_mel, mfcc = _features(np.asarray(wave, np.float32))
        return l2_normalise(_stats(log_mel, mfcc))

    def embed_clip_batch(self, waves) -> np.ndarray:
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.embed_clip(w) for w in waves])


def _build(data_dir: Path | None = None) -> DspEmbedder:
    return DspEmbedder()


def specs(data_dir: Path) -> list[ModelSpec]:
    """The one dsp model."""
    return [ModelSpec(name="dsp", family="dsp", description=DspEmbedder.description, dim=DIM,
                      build=_build)]
