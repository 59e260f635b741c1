"""Self-supervised fine-tuning of a pretrained model (`BASE+ssl-NAME`, kind 'finetune').

A handful of generated clips and one or two optimizer steps (the musicnn wheel's VGG weights are
converted once per session): the fine-tuned model starts from the pretrained weights (with a
zero learning rate it embeds exactly like the frozen base, through save and reload), moves
after real steps, reloads to the same vectors, indexes into Qdrant and is searchable; the
Library tab's Train section and the CLI verb start it; public mode refuses it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import embedders
import index
from index import training
from index.ingest import IngestOptions
from tests.contract import assert_contract

ROOT = Path(__file__).resolve().parent.parent
FAST = IngestOptions(descriptors=False, thumbnails=False)
QUIET = dict(log=lambda line: None)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """(store, data folder, audio folder) of library 'ft' (3 classes x 3 clips + 1 root clip) indexed with dsp."""
    from app.demo import write_demo_library

    root = tmp_path_factory.mktemp("finetune")
    folder = write_demo_library(root / "audio", per_class=3, classes=["kick", "voice", "bell"], unlabelled=1)
    data = root / "data"
    store = index.open_store(data)
    index.index_folder(store, "ft", folder, ["dsp"], data_dir=data, options=FAST)
    yield store, data, folder
    store.close()


def _waves(folder: Path) -> list[np.ndarray]:
    from embedders.audio import decode

    return [decode(p, 16000)[0] for p in sorted(folder.rglob("*.wav"))]


def _config(**kw) -> training.FineTuneConfig:
    return training.FineTuneConfig(**{"epochs": 1, "batch_size": 4, "max_minutes": 0, **kw})


@pytest.mark.slow  # ~25 s on 2 busy cores (two short runs of the VGG port)
def test_finetuned_model_starts_from_the_pretrained_weights_then_moves_and_is_searchable(lib):
    store, data, folder = lib
    waves = _waves(folder)
    base = embedders.load("vgg-msd", data)
    frozen = base.embed_clip_batch(waves)

    # no step taken (lr 0): every clip's vector is the frozen base's, through save and registry load
    res = training.train_finetune(store, "ft", "vgg-msd", name="still", data_dir=data, config=_config(lr=0.0),
                                  **QUIET)
    assert res.model == "vgg-msd+ssl-still" and res.kind == "finetune" and res.epochs_run == 1
    still = embedders.load(res.model, data)
    np.testing.assert_allclose(still.embed_clip_batch(waves), frozen, atol=1e-5)

    # real steps: the vectors move away from the base's
    res = training.train_finetune(store, "ft", "vgg-msd", name="moved", data_dir=data,
                                  config=_config(lr=1e-3, epochs=2), **QUIET)
    emb = embedders.load(res.model, data)
    moved = emb.embed_clip_batch(waves)
    cos = np.sum(moved * frozen, axis=1)
    assert np.all(cos < 0.9999) and np.max(np.abs(moved - frozen)) > 1e-3, cos
    assert emb.dim == 128 and emb.family == "trained" and emb.tag_names is None
    assert emb.embed_frames(waves[0]).tags is None  # the tagger's output layer is not trained: no tags
    assert "fine-tuned self-supervised" in emb.description and "'ft'" in emb.description
    assert_contract(emb)
    meta = json.loads((data / "trained" / res.model / "meta.json").read_text())
    # 10 clips: 2 held out for the validation loss, 8 in batches of 4, 2 epochs
    assert meta["kind"] == "finetune" and meta["base"] == "vgg-msd" and meta["steps"] == 4

    # it reloads to the same vectors
    embedders.forget(res.model)
    np.testing.assert_array_equal(embedders.load(res.model, data).embed_clip_batch(waves), moved)

    # listed, indexed into Qdrant, searchable, and its vectors are what the embedder computes
    av = {a.name: a for a in embedders.available(data)}
    assert av[res.model].status == "ready" and av[res.model].family == "trained"
    rep = index.index_folder(store, "ft", folder, [res.model], data_dir=data, options=FAST)
    assert not rep.failed and rep.added == len(waves)
    ids, vecs, payloads = index.read_vectors(store, "ft", res.model)
    assert vecs.shape == (len(waves), 128)
    hits = index.search_id(store, "ft", res.model, ids[0], k=3)
    assert hits[0].id == ids[0] and len(hits) == 3
    by_path = {p["path"]: v for p, v in zip(payloads, vecs)}
    first = sorted(folder.rglob("*.wav"))[0].relative_to(folder).as_posix()
    assert float(by_path[first] @ moved[0]) > 0.9999


def test_finetune_refuses_what_it_cannot_start_from(lib):
    store, data, _ = lib
    with pytest.raises(training.TrainingError, match="cannot fine-tune 'dsp'"):
        training.train_finetune(store, "ft", "dsp", name="x", data_dir=data, config=_config(), **QUIET)
    with pytest.raises(training.TrainingError, match="fine-tuning needs a pretrained base"):
        training.model_name("finetune", "x")
    from embedders.training import finetune

    with pytest.raises(training.TrainingError, match="unknown fine-tuning recipe 'nope'"):
        finetune.Views([np.ones((200, 96), np.float32)] * 4, finetune.FineTuneConfig(recipe="nope"))


def test_both_recipes_make_paired_views_of_the_patch_size():
    from embedders.training import finetune

    rng = np.random.default_rng(0)
    mels = [np.abs(rng.standard_normal((n, 96))).astype(np.float32) for n in (40, 187, 400)]
    for recipe in finetune.RECIPES:
        views = finetune.Views(mels, finetune.FineTuneConfig(recipe=recipe))
        x = views.make([0, 1, 2], np.random.default_rng(1))
        assert x.shape == (6, 187, 96) and bool(torch_isfinite(x)) and float(x.min()) >= 0.0
        # two views of one clip differ (augmented), and views differ across draws
        assert not np.allclose(x[0].numpy(), x[3].numpy())


def torch_isfinite(x) -> bool:
    import torch

    return bool(torch.isfinite(x).all())


@pytest.mark.slow  # ~15 s: two short runs (time-limited, then resumed)
def test_time_limit_stops_after_the_epoch_that_passes_it_and_top_tuning_keeps_the_early_layers(lib):
    import torch

    from embedders.training import finetune

    store, data, _ = lib
    lines: list[str] = []
    cfg = _config(epochs=50, lr=1e-3, max_minutes=1e-6, patience=50, tune="top")
    res = training.train_finetune(store, "ft", "vgg-msd", name="timed", data_dir=data, config=cfg,
                                  log=lines.append)
    assert res.epochs_run == 1 and res.stopped_early and res.best_epoch == 1
    assert any("time limit" in line for line in lines)
    assert embedders.check(res.model, data).status == "ready"
    # one step was taken (the limit acts after the step that passes it): blocks 3-5 moved, 1-2 did not
    tuned = torch.load(data / "trained" / res.model / "model.pt", weights_only=True)["net"]
    _, pretrained, _ = finetune.build_model("vgg-msd", data)
    base = pretrained.state_dict()
    for name in ("block1.conv.weight", "block2.conv.weight", "bn_input.gamma"):
        assert torch.equal(tuned[name], base[name]), name
    for name in ("block3.conv.weight", "block5.conv.weight"):
        assert not torch.equal(tuned[name], base[name]), name
    # --resume continues from the saved epoch with the saved settings (tune stays "top")
    res = training.train_finetune(store, "ft", "vgg-msd", name="timed", data_dir=data, resume=True,
                                  config=_config(epochs=2, max_minutes=0), log=lines.append)
    assert res.epochs_run == 2 and [h["epoch"] for h in res.history] == [1, 2]
    resumed = torch.load(data / "trained" / res.model / "checkpoint.pt", weights_only=True)["model"]
    assert torch.equal(resumed["net.block1.conv.weight"], base["block1.conv.weight"])


@pytest.mark.slow  # ~40 s: a background run from the Library tab's callbacks, stopped, indexed, mapped; public mode
def test_finetune_from_the_ui_runs_stops_and_is_refused_in_public_mode(tmp_path):
    from app.access import Access
    from app.demo import write_demo_library
    from app.services import Services
    from app.views import train
    from tests.test_suggest import Req

    folder = write_demo_library(tmp_path / "audio", per_class=2, classes=["kick", "voice"], unlabelled=1)
    svc = Services(tmp_path / "data")
    svc.libs.index("demo", folder=str(folder), models=["dsp"])
    status, job_id, timer = train.start(svc, "finetune", "demo", "dsp", "ui", 500, None, False, "vgg-msd", 5)
    assert timer["active"] is True and 'data-model="vgg-msd+ssl-ui"' in status, status
    job = svc.training.job(job_id)
    t0 = time.time()
    while not (job.state == "training" and job.done >= 1) and job.running and time.time() - t0 < 120:
        time.sleep(0.1)
    train.stop(svc, job.id)
    t0 = time.time()
    while job.running and time.time() - t0 < 120:
        time.sleep(0.1)
    assert job.state == "stopped", job.log
    assert job.result["stopped_early"] and job.result["epochs_run"] < 500
    assert "vgg-msd+ssl-ui" in svc.libs.ready_models()
    # one click indexes the library with it; it is then mapped and searched like any model
    msg = train.index_with(svc, job_id, progress=lambda *a, **k: None)
    assert "added" in msg and "vgg-msd+ssl-ui" in svc.libs.models_of("demo")
    ids = svc.vectors.read("demo", "vgg-msd+ssl-ui")[0]
    assert len(ids) == len(svc.vectors.read("demo", "dsp")[0])
    fit = svc.maps.fit("demo", "vgg-msd+ssl-ui", "pca", 2, quality=False)
    assert fit.coords.shape == (len(ids), 2) and np.isfinite(fit.coords).all()
    assert svc.queries.search_id("demo", "vgg-msd+ssl-ui", ids[0], k=3)[0].id == ids[0]
    bad = train.start(svc, "finetune", "demo", "dsp", "x", 2, None, False, "dsp", 5)[0]
    assert "cannot fine-tune 'dsp'" in bad
    svc.access = Access(public=True, token="t0ken")
    refused = train.start(svc, "finetune", "demo", "dsp", "v", 2, None, False, "vgg-msd", 5, request=Req("visitor"))
    assert "refused" in refused[0]


@pytest.mark.slow  # ~30 s: subprocesses (index, train)
def test_train_finetune_cli_verb(data_dir, tmp_path):
    from app.demo import write_demo_library

    folder = write_demo_library(tmp_path / "audio", per_class=2, classes=["kick", "voice"], unlabelled=1)
    env = {**os.environ}
    env.pop("AUDIO_EXPLORER_DATA", None)

    def run(*args):
        return subprocess.run([sys.executable, "app.py", *args, "--data-dir", str(data_dir)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    r = run("index", str(folder), "--library", "cli", "--models", "dsp", "--no-thumbnails", "--no-descriptors")
    assert r.returncode == 0, r.stderr
    r = run("train", "finetune", "--library", "cli", "--epochs", "1", "--batch-size", "2", "--recipe", "byola",
            "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "vgg-msd+ssl-cli" and out["kind"] == "finetune" and out["epochs_run"] == 1
    assert "--models vgg-msd+ssl-cli" in r.stderr
    r = run("train", "finetune", "--library", "cli", "--base", "dsp", "--name", "bad")
    assert r.returncode == 1 and "cannot fine-tune 'dsp'" in r.stderr.strip().splitlines()[-1]
    assert embedders.check("vgg-msd+ssl-cli", data_dir).status == "ready"
