"""Family 'dsp': MFCC and log-mel statistics (librosa). No weights; the floor to beat."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Embedder, Frames, ModelSpec, frame_times, l2_normalise

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 64
N_MFCC = 20
WINDOW_S = 0.5
HOP_S = 0.25
DIM = 2 * (N_MFCC - 1) + (N_MFCC - 1) + N_MELS + 2  # 123


def _features(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel dB [n_mels, T], mfcc [n_mfcc, T]) of a wave."""
    import librosa

    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                         n_mels=N_MELS, power=2.0)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)
    return log_mel, mfcc


def _stats(log_mel: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
    """One unnormalised feature vector [DIM] from a block of feature frames.

    Timbre (MFCC 1..19 mean/std, delta std) and spectral shape (mean log-mel minus its
    band average) are independent of gain; loudness (MFCC 0) and spectral flux are kept
    as two scaled scalars so that level matters a little, not a lot.
    """
    m = mfcc[1:]
    delta = np.diff(m, axis=1) if m.shape[1] > 1 else np.zeros_like(m)
    shape = log_mel.mean(axis=1)
    shape = shape - shape.mean()
    loud = mfcc[0].mean() / 400.0
    flux = np.abs(np.diff(log_mel, axis=1)).mean() / 10.0 if log_mel.shape[1] > 1 else 0.0
    return np.concatenate([
        m.mean(axis=1) / 20.0,
        m.std(axis=1) / 10.0,
        delta.std(axis=1) / 5.0,
        shape / 20.0,
        [loud, flux],
    ]).astype(np.float32)


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
