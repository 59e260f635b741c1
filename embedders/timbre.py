"""DSP timbre statistics (MFCC + log-mel shape, librosa): shared by the `dsp` family and the
musicnn+dsp model fusion (embedders/musicnn/fusion.py), so no family imports another."""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 64
N_MFCC = 20
WINDOW_S = 0.5
HOP_S = 0.25
DIM = 2 * (N_MFCC - 1) + (N_MFCC - 1) + N_MELS + 2  # 123


def features(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-mel dB [n_mels, T], mfcc [n_mfcc, T]) of a wave."""
    import librosa

    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                         n_mels=N_MELS, power=2.0)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)
    return log_mel, mfcc


def stats(log_mel: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
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
