"""Family 'tfhub' with tiny SavedModels that have YAMNet's and VGGish's signatures.

The stand-ins (tests/tiny_models.py) are tf.Modules saved with tf.saved_model.save and loaded
through the real code path (hub.load of a local folder, and of a hub handle found in
$TFHUB_CACHE_DIR). They frame audio like the originals (25 ms / 10 ms log-mel frames, 0.96 s patches every 0.48 s for YAMNet
and every 0.96 s for VGGish) with small random projections. No network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import embedders
from embedders import EmbedderError, hf, tfhub
from tests.contract import assert_contract
from tests.tiny_models import save_tfhub_stand_in, stub_pkg_resources

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow_hub") is None,
                                reason="tensorflow-hub not installed")
SR = 16000


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tfhub")
    return {"yamnet": save_tfhub_stand_in(root / "yamnet", yamnet=True),
            "vggish": save_tfhub_stand_in(root / "vggish", yamnet=False)}


@pytest.fixture
def hub_importable(monkeypatch):
    """hub.load itself, even where setuptools>=81 lacks the pkg_resources it imports."""
    stub_pkg_resources(monkeypatch)
    assert tfhub._hub_import_problem() == ""


@pytest.fixture
def env(saved, tmp_path, monkeypatch):
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, ";".join(f"{k}={v}" for k, v in saved.items()))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
    fams = [m for m in embedders.FAMILY_MODULES if importlib.util.find_spec(f"embedders.{m}")]
    monkeypatch.setattr(embedders, "FAMILY_MODULES", fams)
    return tmp_path / "data"


def _wave(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (300 + 200 * rng.random()) * t)
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_yamnet_frames_tags_and_class_names(env, hub_importable):
    emb = embedders.load("yamnet", env)  # hub.load of a local SavedModel folder
    assert (emb.family, emb.sample_rate, emb.dim, emb.frame_hop_s) == ("tfhub", SR, 1024, 0.48)
    assert len(emb.tag_names) == 521 and emb.tag_names[7] == "Sound, kind 7"  # from the CSV asset
    fr = emb.embed_frames(_wave(10.0))
    # 998 log-mel frames -> 1 + (998 - 96) // 48 = 19 patches, centred at 0.48 i + 0.48 s
    assert fr.vectors.shape == (19, 1024) and fr.vectors.dtype == np.float32
    assert fr.tags.shape == (19, 521) and np.all((fr.tags >= 0) & (fr.tags <= 1))
    np.testing.assert_allclose(fr.times_s, np.arange(19) * 0.48 + 0.48)
    assert emb.embed_frames(np.zeros(100, np.float32)).vectors.shape == (1, 1024)
    assert_contract(emb)


def test_vggish(env):
    # hub.load when tensorflow_hub imports, else tf.saved_model.load of the same folder
    emb = embedders.load("vggish", env)
    assert emb.dim == 128 and emb.tag_names is None and emb.frame_hop_s == 0.96
    fr = emb.embed_frames(_wave(10.0, seed=1))
    assert fr.vectors.shape == (10, 128) and fr.tags is None
    np.testing.assert_allclose(fr.times_s, np.arange(10) * 0.96 + 0.48)
    np.testing.assert_allclose(emb.embed_frames(_wave(10.0, seed=1)).vectors, fr.vectors)
    assert_contract(emb)


def test_pkg_resources_problem_is_reported(tmp_path, monkeypatch):
    if importlib.util.find_spec("pkg_resources") is not None:
        pytest.skip("pkg_resources is installed here")
    monkeypatch.delenv(hf.MODEL_PATHS_ENV, raising=False)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "empty_cache"))
    av = tfhub.specs(tmp_path)[0].check(data_dir=tmp_path)
    assert av.status == "unavailable" and "setuptools<81" in av.reason and "\n" not in av.reason


def test_unavailable_offline_and_ready_from_tfhub_cache(saved, tmp_path, monkeypatch,
                                                         hub_importable):
    monkeypatch.delenv(hf.MODEL_PATHS_ENV, raising=False)
    cache = tmp_path / "tfhub_cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    monkeypatch.setattr(tfhub, "host_reachable", lambda url, timeout_s=1.0: False)
    data = tmp_path / "data"
    spec = tfhub.specs(data)[0]
    av = spec.check(data_dir=data)
    assert av.status == "unavailable" and "\n" not in av.reason
    assert "tfhub.dev" in av.reason and hf.MODEL_PATHS_ENV in av.reason
    # building anyway: the download fails (nothing listens there, online or not), one line
    spec.extra["handle"] = "http://127.0.0.1:9/google/yamnet/1"
    with pytest.raises(EmbedderError) as exc:
        spec.build(data_dir=data)
    assert "\n" not in str(exc.value) and "yamnet" in str(exc.value)
    # what tensorflow-hub leaves after a download: <cache>/<sha1(handle)>/saved_model.pb
    handle = "https://tfhub.dev/google/yamnet/1"
    spec = tfhub.specs(data)[0]
    shutil.copytree(saved["yamnet"], cache / hashlib.sha1(handle.encode()).hexdigest(),
                    dirs_exist_ok=True)
    assert spec.check(data_dir=data).status == "ready"
    emb = spec.build(data_dir=data)  # hub.load(handle) resolved from the cache, offline
    assert emb.source == handle and emb.embed_frames(_wave(2.0)).vectors.shape == (3, 1024)
    # a folder under <data>/weights/tfhub/<name> works too; a folder that is not a SavedModel
    # is reported
    monkeypatch.delenv("AUDIO_EXPLORER_WEIGHTS", raising=False)
    shutil.copytree(saved["vggish"], data / "weights" / "tfhub" / "vggish")
    assert tfhub.specs(data)[1].check(data_dir=data).status == "ready"
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, f"vggish={tmp_path}")
    av = tfhub.specs(data)[1].check(data_dir=data)
    assert av.status == "unavailable" and "SavedModel" in av.reason
