"""Windows over long waves and pooling of native frames to the embedder's frame hop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import Frames, frame_times


@dataclass(frozen=True)
class _Window:
    wave: int  # index of the wave in the batch
    start: int  # first sample
    stop: int  # one past the last sample
    keep_from_s: float  # native frames starting before this time (s, absolute) are dropped


def plan_windows(n_samples: int, sample_rate: int, window_s: float, min_tail_s: float,
                 wave: int = 0) -> list[_Window]:
    """Consecutive windows of `window_s`; a tail shorter than `min_tail_s` becomes a full window
    right-aligned to the end of the wave that keeps only its new part."""
    win = int(round(window_s * sample_rate))
    if n_samples <= win:
        return [_Window(wave, 0, n_samples, 0.0)]
    out = []
    start = 0
    while start < n_samples:
        stop = min(start + win, n_samples)
        if stop - start < win and (stop - start) < min_tail_s * sample_rate:
            out.append(_Window(wave, n_samples - win, n_samples, start / sample_rate))
        else:
            out.append(_Window(wave, start, stop, start / sample_rate))
        start = stop
    return out


def pool_frames(starts_s: np.ndarray, vectors: np.ndarray, tags: np.ndarray | None,
                hop_s: float) -> Frames:
    """Mean-pool native frames (absolute start times) into frames k covering [k*hop, (k+1)*hop)."""
    bins = np.floor(starts_s / hop_s + 1e-6).astype(np.int64)
    n = int(bins.max()) + 1
    counts = np.bincount(bins, minlength=n).astype(np.float64)

    def pool(x: np.ndarray) -> np.ndarray:
        acc = np.zeros((n, x.shape[1]), np.float64)
        np.add.at(acc, bins, x.astype(np.float64))
        filled = counts > 0
        acc[filled] /= counts[filled, None]
        for k in np.flatnonzero(~filled):  # cannot happen for contiguous native frames; be safe
            acc[k] = acc[k - 1] if k > 0 else acc[np.argmax(filled)]
        return acc.astype(np.float32)

    return Frames(times_s=frame_times(n, hop_s, hop_s), vectors=pool(vectors),
                  tags=None if tags is None else pool(tags))
