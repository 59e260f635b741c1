"""The one contract test every embedder must pass (HEAR style); reused by family tests."""
from __future__ import annotations

import numpy as np


def assert_contract(emb, seconds: float = 4.0, seed: int = 0) -> None:
    """Shape, dtype, finiteness, evenly spaced times, short clips, and batch == one-by-one."""
    rng = np.random.default_rng(seed)
    sr = emb.sample_rate
    assert isinstance(emb.name, str) and emb.name
    assert emb.dim > 0 and emb.frame_hop_s > 0
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    fr = emb.embed_frames(wave)
    assert fr.vectors.ndim == 2 and fr.vectors.shape[1] == emb.dim
    assert fr.vectors.dtype == np.float32
    assert np.all(np.isfinite(fr.vectors))
    assert fr.times_s.shape == (fr.vectors.shape[0],)
    if len(fr.times_s) > 2:
        assert np.allclose(np.diff(fr.times_s), emb.frame_hop_s, atol=1e-3)
    assert fr.times_s[0] >= 0 and fr.times_s[-1] <= seconds + emb.frame_hop_s
    if emb.tag_names is not None:
        assert fr.tags is not None and fr.tags.shape == (fr.vectors.shape[0], len(emb.tag_names))
    clip = emb.embed_clip(wave)
    assert clip.shape == (emb.dim,) and clip.dtype == np.float32
    assert abs(np.linalg.norm(clip) - 1) < 1e-4
    short = wave[: int(0.05 * sr)]
    fs = emb.embed_frames(short)
    assert fs.vectors.shape[0] >= 1 and np.all(np.isfinite(fs.vectors))
    other = wave[::-1].copy()
    batch = emb.embed_clip_batch([wave, short, other])
    one = np.stack([emb.embed_clip(w) for w in (wave, short, other)])
    assert batch.shape == (3, emb.dim)
    np.testing.assert_allclose(batch, one, atol=1e-4)
