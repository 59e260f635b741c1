"""Trainable embedders (family 'trained'): autoencoder, self-supervised CNN, supervised-contrastive head.

Small models and few epochs on a small synthetic library: these tests check that training
lowers the loss, that checkpoints reload and resume, the PCA-3 fallback, the registry,
indexing and search with a trained model, and the `train` CLI verb.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embedders
import index
from index import training
from index.ingest import IngestOptions
from tests.contract import assert_contract

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["kick", "snare", "hihat", "voice", "bell"]
FAST = IngestOptions(descriptors=False, thumbnails=False)


def _write_library(folder: Path, per_class: int = 5, unlabelled: int = 1, seed: int = 0) -> Path:
    """Demo clips at levels spread over 30 dB (as in real libraries: level is a nuisance, not a class)."""
    import soundfile as sf

    from app.demo import write_demo_library

    write_demo_library(folder, per_class=per_class, classes=CLASSES, unlabelled=unlabelled, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in sorted(folder.rglob("*.wav")):
        wave, sr = sf.read(str(p), dtype="float32")
        sf.write(str(p), wave * 10 ** (rng.uniform(-30, 0) / 20), sr, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """(store, data folder, audio folder) of a library 'lib' indexed with dsp: 5 classes x 5 clips + 1 unlabelled."""
    root = tmp_path_factory.mktemp("trained")
    folder = _write_library(root / "audio")
    data = root / "data"
    store = index.open_store(data)
    index.index_folder(store, "lib", folder, ["dsp"], data_dir=data, options=FAST)
    yield store, data, folder
    store.close()


def _wave(seconds: float = 2.0, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-t)).astype(np.float32)


def _reloads_identically(name: str, data: Path) -> None:
    wave = _wave()
    a = embedders.load(name, data).embed_frames(wave).vectors
    embedders.forget(name)
    b = embedders.load(name, data).embed_frames(wave).vectors
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_autoencoder_trains_resumes_and_has_a_3d_latent(lib):
    store, data, _ = lib
    cfg = training.AutoencoderConfig(epochs=2, widths=[8, 16, 32], hidden=32, batch_size=16, lr=3e-3,
                                     min_epoch_windows=256)
    lines: list[str] = []
    res = training.train_autoencoder(store, "lib", name="t", data_dir=data, config=cfg, log=lines.append)
    assert res.model == "ae-t" and res.epochs_run == 2
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert any("PCA-3 baseline" in n for n in res.notes)
    folder = data / "trained" / "ae-t"
    assert {"meta.json", "model.pt", "checkpoint.pt", "training_log.csv"} <= {p.name for p in folder.iterdir()}

    # --resume continues from the saved epoch (optimizer state included) up to the new total
    res2 = training.train_autoencoder(store, "lib", name="t", data_dir=data, resume=True,
                                      config=training.AutoencoderConfig(epochs=4), log=lines.append)
    assert [h["epoch"] for h in res2.history] == [1, 2, 3, 4]
    assert res2.history[0]["train_loss"] == pytest.approx(res.history[0]["train_loss"])
    assert res2.history[-1]["train_loss"] < res2.history[0]["train_loss"]
    import torch

    ck = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 4 and ck["optimizer"]["state"]
    with pytest.raises(training.TrainingError, match="already exists"):
        training.train_autoencoder(store, "lib", name="t", data_dir=data, config=cfg, log=lines.append)

    av = {a.name: a for a in embedders.available(data)}
    assert av["ae-t"].status == "ready" and av["ae-t"].family == "trained" and av["ae-t"].dim == 3
    emb = embedders.load("ae-t", data)
    assert emb.dim == 3 and emb.frame_hop_s == pytest.approx(16 * 256 / 22050)
    assert emb.embed_frames(_wave()).vectors.shape[1] == 3
    assert_contract(emb)
    _reloads_identically("ae-t", data)


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_autoencoder_falls_back_to_pca3_and_indexes(lib):
    store, data, folder = lib
    cfg = training.AutoencoderConfig(epochs=1, lr=0.0, widths=[8, 16, 32], hidden=16)
    res = training.train_autoencoder(store, "lib", name="flat", data_dir=data, config=cfg, log=lambda line: None)
    assert res.metrics["fallback"] == "pca3" and res.metrics["ae_mse"] >= res.metrics["pca3_mse"]
    assert any("did not beat PCA-3" in n for n in res.notes)
    meta = json.loads((data / "trained" / "ae-flat" / "meta.json").read_text())
    assert meta["fallback"] == "pca3"
    emb = embedders.load("ae-flat", data)
    assert emb.fallback and "PCA-3" in emb.description
    # the fallback's frames are the (standardised) PCA-3 coordinates of the log-mel windows
    from embedders.training import autoencoder, common

    m = emb.model
    x = autoencoder.gather([common.log_mel(_wave())], np.array([[0, 0]]), 32, meta["norm_mean"], meta["norm_std"])
    want = ((x.reshape(1, -1) - m.pca_mean) @ m.pca_components.T - m.latent_mean) / m.latent_std
    np.testing.assert_allclose(emb.embed_frames(_wave()).vectors[0], want[0], rtol=1e-4, atol=1e-4)
    assert_contract(emb)

    # a trained model is indexed and searched like any other
    rep = index.index_folder(store, "lib", folder, ["ae-flat"], data_dir=data, options=FAST)
    assert not rep.failed and rep.added == 26
    ids, vecs, _ = index.read_vectors(store, "lib", "ae-flat")
    assert vecs.shape == (26, 3)
    hits = index.search_id(store, "lib", "ae-flat", ids[0], k=3)
    assert hits[0].id == ids[0] and len(hits) == 3


def test_selfsup_learns_beyond_its_random_init(lib):
    store, data, _ = lib
    cfg = training.SelfSupConfig(epochs=12, widths=[8, 16, 32, 32], feature_dim=64, batch_size=8, gain_db=15.0,
                                 patience=12)
    res = training.train_selfsup(store, "lib", name="t", data_dir=data, config=cfg, log=lambda line: None)
    assert res.model == "ssl-t"
    # the training loss of 2 steps an epoch is noisy; the validation loss (fixed views) is not
    val = [h["val_loss"] for h in res.history]
    assert val[-1] < val[0] and res.best_val_loss < val[0]

    emb = embedders.load("ssl-t", data)
    assert emb.family == "trained" and emb.dim == 64
    assert_contract(emb)
    _reloads_identically("ssl-t", data)

    # kNN label agreement of clip vectors: trained encoder vs a random-init copy of itself
    import torch

    from embedders.audio import decode
    from embedders.training import common, selfsup
    from projections.knn import neighbor_graph
    from projections.quality import knn_agreement

    files = training.library_files(store, "lib")
    labelled = [f for f in files if f.label]
    mels = [common.log_mel(decode(f.path, common.SAMPLE_RATE)[0]) for f in labelled]
    labels = [f.label for f in labelled]

    def agreement(model) -> float:
        vectors = np.stack([v.mean(axis=0) for v in model.frames(mels)])
        neighbours, _ = neighbor_graph(vectors, 3, "cosine", include_self=False)
        return knn_agreement(neighbours, labels)

    trained = agreement(emb.model)
    torch.manual_seed(cfg.seed)
    emb.model.encoder.load_state_dict(selfsup.build_model(cfg).encoder.state_dict())
    random_init = agreement(emb.model)
    embedders.forget("ssl-t")
    assert trained > random_init, (trained, random_init)


def test_contrastive_head_beats_its_base_on_held_out_files(lib):
    store, data, folder = lib
    cfg = training.SupConConfig(epochs=40, val_fraction=0.4, patience=10)
    res = training.train_contrastive(store, "lib", "dsp", name="t", data_dir=data, config=cfg,
                                     log=lambda line: None)
    assert res.model == "dsp+supcon-t"
    m = res.metrics
    assert m["val_knn_agreement"] > m["base_val_knn_agreement"], m
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]

    from embedders.trained import training_log

    log = training_log("dsp+supcon-t", data)
    assert [r["epoch"] for r in log] == [h["epoch"] for h in res.history]
    assert {"epoch", "train_loss", "val_loss", "val_knn_agreement"} <= set(log[0])
    with open(data / "trained" / "dsp+supcon-t" / "training_log.csv") as f:
        assert next(csv.reader(f))[:4] == ["epoch", "train_loss", "val_loss", "val_knn_agreement"]
    meta = json.loads((data / "trained" / "dsp+supcon-t" / "meta.json").read_text())
    # train/validation split is by file: no file on both sides
    assert meta["n_val"] > 0 and meta["n_train"] + meta["n_val"] == 25

    emb = embedders.load("dsp+supcon-t", data)
    assert emb.dim == 128 and emb.sample_rate == 22050 and emb.frame_hop_s == 0.25
    assert_contract(emb)
    _reloads_identically("dsp+supcon-t", data)
    rep = index.index_folder(store, "lib", folder, ["dsp+supcon-t"], data_dir=data, options=FAST)
    assert not rep.failed
    ids, vecs, pays = index.read_vectors(store, "lib", "dsp+supcon-t")
    q = next(i for i, p in zip(ids, pays) if p["label"] == "voice")
    hits = index.search_id(store, "lib", "dsp+supcon-t", q, k=4)
    assert hits[0].id == q and sum(h.label == "voice" for h in hits) >= 3


def test_contrastive_without_labels_is_a_clear_error(data_dir, tmp_path):
    import soundfile as sf

    from app.demo import make_clip

    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, kind in enumerate(["kick", "bell", "voice"]):
        sf.write(str(folder / f"clip_{i}.wav"), make_clip(kind, rng), 22050)
    with index.open_store(data_dir) as store:
        index.index_folder(store, "flat", folder, ["dsp"], data_dir=data_dir, options=FAST)
        with pytest.raises(training.TrainingError) as exc:
            training.train_contrastive(store, "flat", "dsp", data_dir=data_dir, log=lambda line: None)
    msg = str(exc.value)
    assert "no labelled clips" in msg and "\n" not in msg
    assert not (data_dir / "trained").exists() or not any((data_dir / "trained").iterdir())


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_train_cli_verb(data_dir, tmp_path):
    from app.demo import write_demo_library

    folder = write_demo_library(tmp_path / "audio", per_class=4, classes=["kick", "hihat", "voice"], unlabelled=0)
    env = {**os.environ}
    env.pop("AUDIO_EXPLORER_DATA", None)

    def run(*args):
        return subprocess.run([sys.executable, "app.py", *args, "--data-dir", str(data_dir)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    r = run("index", str(folder), "--library", "cli", "--models", "dsp", "--no-thumbnails", "--no-descriptors")
    assert r.returncode == 0, r.stderr
    r = run("train", "contrastive", "--library", "cli", "--base", "dsp", "--epochs", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "dsp+supcon-cli" and out["epochs_run"] == 3 and len(out["history"]) == 3
    assert "epoch 3/3" in r.stderr and "held-out kNN agreement" in r.stderr
    r = run("train", "contrastive", "--library", "cli", "--base", "nope", "--epochs", "1")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: unknown model 'nope'")
    av = {a.name: a for a in embedders.available(data_dir)}
    assert av["dsp+supcon-cli"].status == "ready" and av["dsp+supcon-cli"].family == "trained"
