"""Family 'hf' with tiny randomly initialised models of the real architectures.

Each tiny model (tests/tiny_models.py) is built from its transformers config, saved with `save_pretrained` into a temp
folder, and loaded through the registry (`AUDIO_EXPLORER_MODEL_PATHS` points the real registry
entry at the folder), i.e. through the same `from_pretrained` code the real weights use.
No network: HF_HUB_OFFLINE=1 and an empty HF_HOME throughout.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import embedders
from embedders import EmbedderError, hf, runtime
from tests.contract import assert_contract
from tests.tiny_models import seeded_transformers as _tr, tiny_hf_models

SR = 16000
# ASTFeatureExtractor's own defaults (128 mels from a 400-point FFT) trigger this warning
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Every tiny model folder, keyed by the registry base name it stands in for."""
    with tiny_hf_models(tmp_path_factory.mktemp("tiny_hf")) as folders:
        yield folders


@pytest.fixture
def env(tiny, tmp_path, monkeypatch):
    """Offline, empty HF cache, registry entries pointed at the tiny folders; returns data dir."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, ";".join(f"{k}={v}" for k, v in tiny.items()))
    monkeypatch.setenv(hf.DEVICE_ENV, "cpu")
    _only_importable_families(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    return data


def _only_importable_families(monkeypatch) -> None:
    """Registry isolation from families still being written elsewhere."""
    fams = [m for m in embedders.FAMILY_MODULES if importlib.util.find_spec(f"embedders.{m}")]
    monkeypatch.setattr(embedders, "FAMILY_MODULES", fams)


def _wave(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f = 200 + 300 * rng.random()
    return (0.3 * np.sin(2 * np.pi * f * t * (1 + 0.1 * t)) + 0.05 * rng.standard_normal(t.size)
            ).astype(np.float32)


def _check_frames(fr, dim: int, hop: float, n: int) -> None:
    assert fr.vectors.shape == (n, dim) and fr.vectors.dtype == np.float32
    assert np.all(np.isfinite(fr.vectors))
    np.testing.assert_allclose(fr.times_s, np.arange(n) * hop + hop / 2)


# --------------------------------------------------------------------------- pure helpers


def test_plan_windows_tail_is_right_aligned():
    w = hf.plan_windows(21 * SR, SR, 10.0, min_tail_s=5.0)
    assert [(x.start, x.stop, x.keep_from_s) for x in w] == [
        (0, 10 * SR, 0.0), (10 * SR, 20 * SR, 10.0), (11 * SR, 21 * SR, 20.0)]
    w = hf.plan_windows(25 * SR, SR, 10.0, min_tail_s=5.0)  # a 5 s tail is long enough
    assert w[-1].start == 20 * SR and w[-1].keep_from_s == 20.0
    assert len(hf.plan_windows(3 * SR, SR, 10.0, 5.0)) == 1


def test_pool_frames_bins_by_absolute_time():
    starts = np.arange(0, 2.0, 0.02)  # 100 native frames over 2 s
    vec = np.arange(100, dtype=np.float32)[:, None]
    fr = hf.pool_frames(starts, vec, None, 0.5)
    np.testing.assert_allclose(fr.times_s, [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(fr.vectors[:, 0], [12, 37, 62, 87])


def test_model_paths_env_parsing(monkeypatch):
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, "a=/x/y; facebook/b = /z ;bad;\nc=/w=v")
    assert hf.configured_model_paths() == {"a": "/x/y", "facebook/b": "/z", "c": "/w=v"}


def test_listing_and_checks_import_no_framework():
    import subprocess
    import sys

    code = ("import sys\nfrom embedders import hf, tfhub, crepe\n"
            "for m in (hf, tfhub, crepe):\n"
            "    [s.check(data_dir=None) for s in m.specs(None)]\n"
            "    hf.resolve('mert-95m-l3', None)\n"
            "heavy = {'torch', 'transformers', 'tensorflow', 'tensorflow_hub', 'torchcrepe'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=60,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_listing_is_cheap_and_complete():
    names = [s.name for s in hf.specs(Path("."))]
    for n in ["wav2vec2-base", "hubert-base", "mert-95m", "mert-330m", "whisper-tiny",
              "whisper-base", "whisper-small", "ast-audioset", "clap-htsat-unfused"]:
        assert n in names
    s = hf.resolve("hubert-base-l6", Path("."))
    assert s.name == "hubert-base-l6" and not s.listed and s.extra["layer"] == 6
    assert hf.resolve("dsp", Path(".")) is None
    with pytest.raises(EmbedderError, match="0..12"):
        hf.resolve("wav2vec2-base-l13", Path("."))
    with pytest.raises(EmbedderError, match="no layer choice"):
        hf.resolve("ast-audioset-l3", Path("."))


# --------------------------------------------------------------------------- availability


def test_offline_without_weights_is_unavailable_with_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv(hf.MODEL_PATHS_ENV, raising=False)
    _only_importable_families(monkeypatch)
    data = tmp_path / "data"
    av = {a.name: a for a in embedders.available(data)}
    a = av["wav2vec2-base"]
    assert a.status == "unavailable" and a.family == "hf" and a.dim == 768
    assert "\n" not in a.reason and "hf download facebook/wav2vec2-base" in a.reason
    assert hf.MODEL_PATHS_ENV in a.reason
    assert all(av[n].status == "unavailable" for n in ["mert-95m", "clap-htsat-unfused"])
    with pytest.raises(EmbedderError) as exc:
        embedders.load("wav2vec2-base-l6", data)
    msg = str(exc.value)
    assert "\n" not in msg and "wav2vec2-base-l6" in msg and "hf download" in msg
    # building directly (skipping the check) is also a one-line EmbedderError
    with pytest.raises(EmbedderError) as exc:
        embedders.get_spec("whisper-tiny", data).build(data_dir=data)
    assert "\n" not in str(exc.value) and "openai/whisper-tiny" in str(exc.value)


def test_downloadable_then_failed_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv(hf.MODEL_PATHS_ENV, raising=False)
    monkeypatch.setattr(runtime, "hub_offline", lambda: False)  # pretend the hub is reachable
    import huggingface_hub.utils._http as hub_http

    # the hub client retries with exponential sleeps (~23 s per file); the failure path is the same without them
    monkeypatch.setattr(hub_http.time, "sleep", lambda s: None)
    spec = hf.resolve("wav2vec2-base-l3", tmp_path)
    assert spec.check(data_dir=tmp_path).status == "downloadable"
    spec.extra["repo"] = "audio-explorer-tests/no-such-model"  # 404 online, refused offline
    with pytest.raises(EmbedderError) as exc:
        spec.build(data_dir=tmp_path)
    assert "\n" not in str(exc.value) and "no-such-model" in str(exc.value)


def test_offline_probe_is_fast_and_cached():
    import time

    t = time.time()
    assert hf.host_reachable("http://127.0.0.1:9") is False  # nothing listens on port 9
    assert hf.host_reachable("http://127.0.0.1:9") is False
    assert time.time() - t < 2.5


def test_local_folder_and_cache_make_ready(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv(hf.MODEL_PATHS_ENV, raising=False)
    monkeypatch.delenv(runtime.WEIGHTS_ENV_VAR, raising=False)
    data = tmp_path / "data"
    # 1. a folder named after the model under <data>/weights/hf/ ...
    shutil.copytree(tiny["whisper-tiny"], data / "weights" / "hf" / "whisper-tiny")
    assert hf.resolve("whisper-tiny-l1", data).check(data_dir=data).status == "ready"
    # ... or under $AUDIO_EXPLORER_WEIGHTS/hf/ when that is set (the one weights-folder policy)
    shared = tmp_path / "shared_weights"
    monkeypatch.setenv(runtime.WEIGHTS_ENV_VAR, str(shared))
    assert hf.resolve("whisper-tiny-l1", data).check(data_dir=data).status == "unavailable"
    shutil.copytree(tiny["whisper-tiny"], shared / "hf" / "whisper-tiny")
    assert hf.resolve("whisper-tiny-l1", data).check(data_dir=data).status == "ready"
    monkeypatch.delenv(runtime.WEIGHTS_ENV_VAR)
    # 2. a configured folder that is not a model folder: unavailable, says why
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, f"hubert-base={tmp_path / 'nowhere'}")
    a = hf.specs(data)[1].check(data_dir=data)
    assert a.status == "unavailable" and "nowhere" in a.reason and "\n" not in a.reason
    # 3. a snapshot in the HF cache layout (what `hf download` writes), loaded by hub id offline
    snap = tmp_path / "hf_home" / "hub" / "models--facebook--wav2vec2-base"
    shutil.copytree(tiny["wav2vec2-base"], snap / "snapshots" / "abc123")
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("abc123")
    spec = hf.resolve("wav2vec2-base-l1", data)
    assert spec.check(data_dir=data).status == "ready"
    emb = spec.build(data_dir=data)
    assert emb.source == "facebook/wav2vec2-base" and emb.dim == 32


# --------------------------------------------------------------------------- embeddings


def test_wav2vec2_long_input_frames_and_contract(env):
    emb = embedders.load("wav2vec2-base", env)
    assert (emb.family, emb.sample_rate, emb.dim, emb.frame_hop_s) == ("hf", SR, 32, 0.5)
    _check_frames(emb.embed_frames(_wave(25.0)), 32, 0.5, 50)
    _check_frames(emb.embed_frames(_wave(21.3)), 32, 0.5, 43)  # right-aligned 1.3 s tail
    assert_contract(emb)


def test_layer_choice_matches_transformers(env, tiny):
    tr = _tr()
    import torch

    wave = _wave(3.0, seed=3)
    vec = {n: embedders.load(f"wav2vec2-base-l{n}", env).embed_frames(wave).vectors
           for n in (0, 1, 2)}
    last = embedders.load("wav2vec2-base", env).embed_frames(wave).vectors
    assert not np.allclose(vec[0], vec[1]) and not np.allclose(vec[1], vec[2])
    np.testing.assert_allclose(vec[2], last, atol=1e-5)
    # reference: the full model's hidden_states[N], mean-pooled over 25 frames (0.5 s)
    model = tr.AutoModel.from_pretrained(tiny["wav2vec2-base"]).eval()
    fe = tr.AutoFeatureExtractor.from_pretrained(tiny["wav2vec2-base"])
    with torch.no_grad():
        hs = model(fe(wave, sampling_rate=SR, return_tensors="pt").input_values,
                   output_hidden_states=True).hidden_states
    for n in (0, 1, 2):
        h = hs[n][0].numpy()  # 149 frames
        ref = np.stack([h[i:i + 25].mean(0) for i in range(0, len(h), 25)])
        np.testing.assert_allclose(vec[n], ref, atol=1e-4)
    with pytest.raises(EmbedderError, match="0..2"):  # the tiny model has 2 layers
        embedders.load("wav2vec2-base-l5", env)


def test_hubert(env):
    emb = embedders.load("hubert-base-l1", env)
    other = embedders.load("hubert-base", env)
    w = _wave(12.0, seed=4)
    a, b = emb.embed_frames(w), other.embed_frames(w)
    _check_frames(a, 32, 0.5, 24)
    assert not np.allclose(a.vectors, b.vectors)
    np.testing.assert_allclose(emb.embed_frames(w).vectors, a.vectors)  # deterministic


def test_mert_loads_as_hubert_without_remote_code(env, tiny):
    tr = _tr()
    import torch

    emb = embedders.load("mert-95m", env)
    assert emb.sample_rate == 24000 and type(emb.model).__name__ == "HubertModel"
    wave = _wave(3.0, seed=5, sr=24000)
    # the remote code's own model gives the same states (weights map 1:1, incl. the layer norm)
    remote = tr.AutoModel.from_pretrained(tiny["mert-95m"], trust_remote_code=True).eval()
    assert type(remote).__name__ == "MERTModel"
    fe = tr.AutoFeatureExtractor.from_pretrained(tiny["mert-95m"])
    with torch.no_grad():
        h = remote(fe(wave, sampling_rate=24000, return_tensors="pt").input_values
                   ).last_hidden_state[0].numpy()
    starts = np.arange(len(h)) * 320 / 24000  # 13.3 ms frames: 37 or 38 per 0.5 s frame
    ref = hf.pool_frames(starts, h, None, 0.5).vectors
    np.testing.assert_allclose(emb.embed_frames(wave).vectors, ref, atol=1e-4)
    _check_frames(emb.embed_frames(_wave(25.0, sr=24000)), 32, 0.5, 50)
    l1 = embedders.load("mert-95m-l1", env).embed_frames(wave).vectors
    assert l1.shape == ref.shape and not np.allclose(l1, ref)


def test_mert_remote_code_path(env, tiny, monkeypatch):
    """A MERT variant HuBERT cannot express (deepnorm) runs its own code (trust_remote_code)."""
    emb = embedders.load("mert-330m", env)
    assert type(emb.model).__name__ == "MERTModel"
    fr = emb.embed_frames(_wave(4.0, sr=24000))
    _check_frames(fr, 32, 0.5, 8)
    # this remote forward (like MERT's under transformers 5) returns no hidden states
    with pytest.raises(EmbedderError, match="no hidden states"):
        embedders.load("mert-330m-l1", env).embed_frames(_wave(1.0, sr=24000))
    # only MERT entries may run a repo's own code
    monkeypatch.setenv(hf.MODEL_PATHS_ENV, f"wav2vec2-base={tiny['mert-330m']}")
    with pytest.raises(EmbedderError, match="runs no remote code"):
        embedders.load("wav2vec2-base", env)


def test_whisper_trims_padding(env, tiny):
    tr = _tr()
    import torch

    emb = embedders.load("whisper-tiny", env)
    assert (emb.sample_rate, emb.dim, emb.frame_hop_s) == (SR, 32, 0.5)
    clip = _wave(3.0, seed=6)
    fr = emb.embed_frames(clip)
    _check_frames(fr, 32, 0.5, 6)  # 3 s, not the 30 s the encoder sees
    # reference: encoder on the 30 s-padded features; only its first 150 frames (3 s) are real
    model = tr.WhisperModel.from_pretrained(tiny["whisper-tiny"]).eval()
    fe = tr.AutoFeatureExtractor.from_pretrained(tiny["whisper-tiny"])
    with torch.no_grad():
        h = model.get_encoder()(fe(clip, sampling_rate=SR, return_tensors="pt").input_features
                                ).last_hidden_state[0].numpy()
    assert h.shape[0] == 1500
    np.testing.assert_allclose(fr.vectors, h[:150].reshape(6, 25, -1).mean(1), atol=1e-4)
    padded_mean = h.mean(0)  # what leaking the padding would give
    leaked = padded_mean / np.linalg.norm(padded_mean)
    assert not np.allclose(emb.embed_clip(clip), leaked, atol=1e-2)
    # the same clip followed by 2 s of silence: the frames over the clip are unchanged
    longer = emb.embed_frames(np.concatenate([clip, np.zeros(2 * SR, np.float32)]))
    assert longer.vectors.shape[0] == 10
    np.testing.assert_allclose(longer.vectors[:6], fr.vectors, atol=1e-4)
    # long input: 30 s windows, absolute, evenly spaced times
    _check_frames(emb.embed_frames(_wave(70.0, seed=7)), 32, 0.5, 140)
    l1 = embedders.load("whisper-tiny-l1", env).embed_frames(clip).vectors
    assert l1.shape == fr.vectors.shape and not np.allclose(l1, fr.vectors)


def test_ast_embeddings_and_taggram(env):
    emb = embedders.load("ast-audioset", env)
    assert emb.dim == 32 and emb.frame_hop_s == 10.0
    assert len(emb.tag_names) == 527 and emb.tag_names[3] == "class 3"
    fr = emb.embed_frames(_wave(25.0, seed=8))
    _check_frames(fr, 32, 10.0, 3)
    assert fr.tags.shape == (3, 527) and fr.tags.dtype == np.float32
    assert np.all((fr.tags >= 0) & (fr.tags <= 1))
    assert emb.clip_tags(fr).shape == (527,)
    assert_contract(emb)


def test_clap_audio_and_text_share_a_space(env):
    emb = embedders.load("clap-htsat-unfused", env)
    assert emb.supports_text is True and emb.sample_rate == 48000 and emb.dim == 16
    fr = emb.embed_frames(_wave(25.0, seed=9, sr=48000))
    _check_frames(fr, 16, 10.0, 3)
    text = emb.embed_text(["a dog barking", "rain on a window", "a dog barking"])
    assert text.shape == (3, emb.dim) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text[0], text[2], atol=1e-6)
    assert not np.allclose(text[0], text[1])
    assert emb.embed_text([]).shape == (0, emb.dim)
    audio = emb.embed_clip(_wave(4.0, seed=9, sr=48000))
    assert audio.shape == text[0].shape  # one space: a text query searches CLAP-indexed audio
    assert -1.0 <= float(audio @ text[0]) <= 1.0


@pytest.mark.parametrize("name", ["wav2vec2-base-l1", "mert-95m", "whisper-tiny",
                                  "clap-htsat-unfused"])
def test_batch_equals_one_by_one(env, name):
    emb = embedders.load(name, env)
    sr = emb.sample_rate
    waves = [_wave(12.3, 1, sr), _wave(3.0, 2, sr), _wave(0.01, 3, sr), _wave(10.0, 4, sr)]
    batch = emb.embed_frames_batch(waves)
    for w, b in zip(waves, batch):
        one = emb.embed_frames(w)
        np.testing.assert_allclose(b.times_s, one.times_s)
        np.testing.assert_allclose(b.vectors, one.vectors, atol=1e-4)
    assert batch[2].vectors.shape[0] == 1  # a 10 ms wave still has one frame
