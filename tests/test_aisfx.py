"""Family 'aisfx' (aiSFX, ISMIR 2022: embeddings trained on sound-effects libraries; the aisfx wheel's checkpoint)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import embedders
from embedders import EmbedderError, aisfx, runtime

SR = aisfx.SAMPLE_RATE


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    from tests.tiny_models import write_random_aisfx_checkpoint

    weights = write_random_aisfx_checkpoint(tmp_path / "ck.pth")
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"aisfx={weights}")
    return embedders.get_spec("aisfx", tmp_path).build(data_dir=tmp_path)


def test_blocks_follow_aisfx(stand_in):
    """2.3 s blocks every 1.16 s, the partial last block dropped, a short clip padded to one block."""
    assert stand_in.blocks(np.ones(int(0.05 * SR), np.float32)).shape == (1, aisfx.BLOCK, aisfx.N_MELS)
    wave = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)
    assert len(stand_in.blocks(wave)) == 3  # 216 frames: blocks at 0, 50, 100; the one at 150 is partial
    fr = stand_in.embed_frames(wave)
    np.testing.assert_allclose(np.diff(fr.times_s), aisfx.BLOCK_HOP * aisfx.HOP / SR)
    np.testing.assert_allclose(np.linalg.norm(fr.vectors, axis=1), 1, atol=1e-5)
    # level is not a cue: the wave is peak-normalised first
    np.testing.assert_allclose(stand_in.embed_clip(0.2 * wave), stand_in.embed_clip(wave), atol=1e-5)


def test_missing_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"aisfx={tmp_path / 'nowhere.pth'}")
    av = embedders.check("aisfx", tmp_path)
    assert av.status == "unavailable" and "not found" in av.reason and "\n" not in av.reason
    (tmp_path / "junk.pth").write_bytes(b"junk")
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"aisfx={tmp_path / 'junk.pth'}")
    with pytest.raises(EmbedderError) as exc:
        embedders.get_spec("aisfx", tmp_path).build(data_dir=tmp_path)
    assert "could not load 'aisfx'" in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.delenv(runtime.MODEL_PATHS_ENV)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    av = aisfx.check_spec(embedders.get_spec("aisfx", tmp_path), tmp_path)
    assert av.status == "unavailable" and "pip install --no-deps aisfx==0.1.2" in av.reason


@pytest.mark.skipif(not embedders.check("aisfx").ready, reason="aisfx (its checkpoint) not installed")
def test_real_network_equals_the_packages_own(monkeypatch):
    """Our network with the shipped weights gives the same 512-d embedding as aisfx's EmbeddingNet."""
    import torch

    from aisfx.models.cnn2d import EmbeddingNet  # the package's own model code (torch only)

    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    path, _ = aisfx.weights_path(embedders.get_spec("aisfx"))
    ours = aisfx.network().eval()
    state = aisfx.load_checkpoint(path)
    ours.load_state_dict(state)
    theirs = EmbeddingNet("max", 3, 1, 64).eval()
    theirs.load_state_dict(state)
    x = torch.rand(3, aisfx.BLOCK, aisfx.N_MELS)
    with torch.inference_mode():
        np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), atol=1e-5)
    emb = embedders.load("aisfx")
    t = np.arange(3 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.3 * np.random.default_rng(1).standard_normal(t.size)).astype(np.float32)
    a, b, c = emb.embed_clip_batch([tone, tone * np.exp(-t).astype(np.float32), noise])
    assert float(a @ b) > float(a @ c)  # a decaying tone is nearer the tone than noise is
