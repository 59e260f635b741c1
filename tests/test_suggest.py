"""Suggested labels: the classifier recovers generated classes, grouped folds keep a file's
segments (and a source's clips) together, predictions land in Qdrant without ever touching a
real label, accepting a suggestion writes a user label and retrains, the review queue, the map
colouring and filters, the CLI; training from the Library tab in the background (progress, loss,
stop, index with the new model)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import index
from app.services import Services
from index import suggest
from projections import classify


def blobs(n_per=40, classes=4, dim=16, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    X = np.concatenate([centres[c] + spread * rng.normal(size=(n_per, dim)) for c in range(classes)])
    y = [f"c{c}" for c in range(classes) for _ in range(n_per)]
    return X.astype(np.float32), y


def test_classifier_recovers_generated_classes():
    X, y = blobs()
    rng = np.random.default_rng(1)
    test = rng.random(len(y)) < 0.3
    clf = classify.fit(X[~test], [v for v, t in zip(y, test) if not t])
    s = classify.suggest(clf, X[test])
    truth = [v for v, t in zip(y, test) if t]
    assert np.mean([a == b for a, b in zip(s.label, truth)]) > 0.95
    assert np.all((s.conf > 0) & (s.conf <= 1)) and np.all(s.margin >= 0) and np.all(s.margin <= s.conf)
    # unlabelled rows (None) are ignored by the fit; one label alone is refused in one line
    clf2 = classify.fit(X, [v if i % 2 else None for i, v in enumerate(y)])
    assert clf2.n_train == len(y) // 2
    with pytest.raises(ValueError, match="at least two labels"):
        classify.fit(X[:10], ["a"] * 10)


def test_grouped_folds_keep_a_group_together():
    X, y = blobs(n_per=30)
    groups = [f"file{i // 3}" for i in range(len(y))]  # 3 segments per file
    folds = classify.grouped_folds(np.asarray(y, object), groups, 5)
    assert len(folds) == 5
    g = np.asarray(groups)
    for tr, te in folds:
        assert not set(g[tr]) & set(g[te])
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(len(y)))
    with pytest.raises(ValueError, match="at least two groups"):
        classify.grouped_folds(np.asarray(y, object), ["one"] * len(y))


def test_quality_and_learning_curve():
    X, y = blobs(n_per=60, spread=1.5)
    q = classify.evaluate(X, y, [f"f{i // 2}" for i in range(len(y))], curve_sizes=(5, 10, 20))
    assert q.n_folds == 5 and q.grouped_by == "file"
    assert 0.7 < q.accuracy <= 1 and 0.7 < q.macro_f1 <= 1
    assert set(q.per_class) == {"c0", "c1", "c2", "c3"}
    assert sum(v["support"] for v in q.per_class.values()) == len(y)
    assert [c["per_class"] for c in q.curve] == [5, 10, 20, "all"]
    assert q.curve[0]["n_train"] == 20 and q.curve[-1]["macro_f1"] == q.macro_f1
    # more labelled clips do not make it worse on this easy set (5 per class vs all)
    assert q.curve[-1]["macro_f1"] >= q.curve[0]["macro_f1"] - 0.02
    d = q.to_dict()
    assert json.loads(json.dumps(d))["learning_curve"][-1]["per_class"] == "all"


def test_source_grouping_goes_cross_source():
    """Clips of one source share a strong source signature: file-grouped folds are fooled by it,
    source-grouped folds are not (the artist effect)."""
    rng = np.random.default_rng(0)
    dim, rows, labels, sources = 16, [], [], []
    for s in range(8):  # each source plays one class only, with its own signature
        c = s % 2
        sig = rng.normal(size=dim) * 3
        for _ in range(20):
            rows.append(sig + 0.3 * rng.normal(size=dim) + (0.2 if c else -0.2))
            labels.append(f"c{c}")
            sources.append(f"artist{s}")
    X = np.asarray(rows, np.float32)
    by_file = classify.evaluate(X, labels, [str(i) for i in range(len(labels))], curve_sizes=())
    by_src = classify.evaluate(X, labels, sources, grouped_by="source: artist", curve_sizes=())
    assert by_file.macro_f1 > 0.9
    assert by_src.macro_f1 < by_file.macro_f1 - 0.2
    assert suggest.source_field([{"label": "a", "artist": "x"}, {"label": "b", "artist": "y"}]) == "artist"
    assert suggest.source_field([{"label": "a", "artist": "x"}, {"label": "b"}, {"label": "b"}]) is None


@pytest.fixture()
def lib(tmp_path, demo_folder):
    """Services over library 'demo' (dsp): 4 labelled classes x 4 clips + 2 root clips, and 4 clips
    moved to the root (unlabelled) whose true class is known."""
    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    truth = {}
    for kind in ("kick", "hihat", "pad", "voice"):
        src = sorted((folder / kind).glob("*.wav"))[-1]
        dst = folder / f"mystery_{kind}.wav"
        src.rename(dst)
        truth[dst.name] = kind
    svc = Services(tmp_path / "data")
    svc.libs.index("demo", folder=str(folder), models=["dsp"])
    return svc, folder, truth


def payloads(svc, model="dsp"):
    ids, _X, pays = index.read_vectors(svc.store, "demo", model)
    return dict(zip(ids, pays))


def test_predictions_are_written_and_never_touch_a_real_label(lib):
    svc, _folder, truth = lib
    before = payloads(svc)
    run = svc.labels.train("demo", "dsp")
    assert run.written == 6 and run.classifier.n_train == 12
    after = payloads(svc)
    for pid, p in after.items():
        if before[pid].get("label"):
            assert p["label"] == before[pid]["label"] and "pred_label" not in p and "pred_conf" not in p
        else:
            assert p.get("label") is None and p["pred_label"] in {"kick", "hihat", "pad", "voice"}
            assert 0 < p["pred_conf"] <= 1
    right = [after[pid]["pred_label"] == truth[p["path"]] for pid, p in after.items() if p["path"] in truth]
    assert sum(right) >= 3, right  # dsp features on the synthetic classes: most mystery clips recovered
    # filter: predicted X with confidence >= t, in Qdrant
    some = next(p for p in after.values() if p.get("pred_label"))
    got = svc.labels.predicted_ids("demo", "dsp", some["pred_label"], some["pred_conf"])
    assert got and all(after[i]["pred_label"] == some["pred_label"] and after[i]["pred_conf"] >= some["pred_conf"]
                       for i in got)
    assert svc.labels.predicted_ids("demo", "dsp", some["pred_label"], 1.01) == []


def test_accepting_a_suggestion_writes_a_user_label_and_retrains(lib):
    svc, folder, _truth = lib
    svc.labels.train("demo", "dsp")
    counts = svc.labels.counts("demo", "dsp")
    assert (counts["labelled"], counts["suggested"]) == (12, 6)
    q = svc.labels.queue("demo", "dsp", "uncertain", n=10)
    assert len(q) == 6 and [it.margin for it in q] == sorted(it.margin for it in q)
    first = q[0]
    res, run = svc.labels.accept("demo", "dsp", [first.id], first.suggestion)
    assert res.changed == 1 and run.classifier.n_train == 13 and run.written == 5
    p = payloads(svc)[first.id]
    assert p["label"] == first.suggestion and p["label_source"] == "user"
    assert "pred_label" not in p and "pred_conf" not in p
    # written as curation writes a user label: the edits record is kept by a re-index
    rec = svc.store.retrieve(index.naming.edits_collection_name("demo"), [first.id])[0].payload
    assert rec["user_label"] == first.suggestion
    index.index_folder(svc.store, "demo", folder, ["dsp"], data_dir=svc.data_dir, rebuild=True)
    svc.vectors.clear()
    p = payloads(svc)[first.id]
    assert p["label"] == first.suggestion and p["label_source"] == "user"
    counts = svc.labels.counts("demo", "dsp")
    assert counts["labelled"] == 13
    # the queue no longer holds the accepted clip; 'most like X' ranks by that class's probability
    run = svc.labels.train("demo", "dsp")
    like = svc.labels.queue("demo", "dsp", "like", "kick", n=10)
    assert first.id not in [it.id for it in like] and len(like) == 5
    kick = run.classifier.classes.index("kick")
    assert [it.score for it in like] == sorted(run.proba[:, kick].tolist(), reverse=True)
    with pytest.raises(ValueError, match="no label 'nope'"):
        svc.labels.queue("demo", "dsp", "like", "nope")


def test_a_label_set_meanwhile_is_never_given_a_prediction(lib):
    svc, _folder, _truth = lib
    ids, X, pays = index.read_vectors(svc.store, "demo", "dsp")
    un = [i for i, p in zip(ids, pays) if not p.get("label")]
    svc.curation.edit("demo", un[:1], label="kick")  # labelled after the vectors were read
    written, cleared = suggest.write_predictions(svc.store, "demo", "dsp", un, ["pad"] * len(un),
                                                 [0.5] * len(un))
    assert (written, cleared) == (len(un) - 1, 1)
    p = payloads(svc)[un[0]]
    assert p["label"] == "kick" and "pred_label" not in p


class Req:
    """What the callbacks read of a gr.Request."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def test_review_view_accept_correct_skip_and_public_mode(lib):
    from app.access import Access
    from app.views import review

    svc, _folder, _truth = lib
    counts, card, rest, queue, pos, _fix, cls, status = review.suggest(svc, "demo", "dsp", "uncertain", None)
    assert 'data-labelled="12"' in counts and 'data-suggested="6"' in counts
    assert len(queue) == 6 and pos == 0 and queue[0]["id"] in card and "/thumb/demo/" in card and "<audio" in card
    assert "classifier on 12 labelled clips" in status and set(cls["choices"]) == {"kick", "hihat", "pad", "voice"}
    card2, _rest, pos2, _ = review.skip(svc, "demo", queue, 0)
    assert pos2 == 1 and queue[1]["id"] in card2
    out = review.accept(svc, "demo", "dsp", "uncertain", None, queue, pos2)
    assert 'data-labelled="13"' in out[0] and 'data-suggested="5"' in out[0] and "accepted" in out[-1]
    assert payloads(svc)[queue[1]["id"]]["label"] == queue[1]["suggestion"]
    q2 = out[3]
    assert len(q2) == 5 and queue[1]["id"] not in [it["id"] for it in q2]
    wrong = next(c for c in ("kick", "hihat", "pad", "voice") if c != q2[0]["suggestion"])
    out = review.correct(svc, "demo", "dsp", "uncertain", None, q2, 0, wrong)
    assert 'data-labelled="14"' in out[0] and f"→ {wrong}" in out[-1]
    p = payloads(svc)[q2[0]["id"]]
    assert p["label"] == wrong and p["label_source"] == "user"
    head, rows, curve = review.quality(svc, "demo", "dsp")
    assert "cross-validation" in head and "grouped by file" in head and len(rows) == 4 and curve[-1][0] == "all"
    ids, msg, _v = review.select_predicted(svc, "demo", "dsp", out[3][0]["suggestion"], 0.0, None)
    assert ids and "Selected" in msg
    # the map can be coloured by the suggestions, confidence as opacity
    assert "predicted label" in svc.maps.color_options("demo", "dsp")
    all_pays = list(payloads(svc).values())
    col = svc.maps.colors(all_pays, "predicted label")
    for p, v, a in zip(all_pays, col["values"], col["alpha"]):
        if p.get("label"):
            assert v == p["label"] and a == 1.0
        else:
            assert v == p["pred_label"] and a == p["pred_conf"]
    # public mode: a visitor may not train or label a shared library
    svc.access = Access(public=True, token="t0ken")
    out = review.suggest(svc, "demo", "dsp", "uncertain", None, request=Req("visitor"))
    assert "refused" in out[-1]
    out = review.accept(svc, "demo", "dsp", "uncertain", None, q2, 1, request=Req("visitor"))
    assert "refused" in out[-1] and payloads(svc)[q2[1]["id"]].get("label") is None


def test_search_filters_by_a_suggested_label(lib):
    from app.views import search

    svc, folder, _truth = lib
    svc.labels.train("demo", "dsp")
    pays = payloads(svc)
    some = next(p for p in pays.values() if p.get("pred_label"))
    _s, html_, res = search.run(svc, "demo", "dsp", str(folder / "kick" / "kick_00.wav"), k=10,
                                pred=some["pred_label"], min_conf=0.0)
    assert res and all(pays[i]["pred_label"] == some["pred_label"] for i, _ in res)
    _s, _h, none = search.run(svc, "demo", "dsp", str(folder / "kick" / "kick_00.wav"), k=10,
                              pred=some["pred_label"], min_conf=1.01)
    assert none == []


def test_cli_classify(lib, monkeypatch, capsys):
    from app import cli
    from embedders.paths import ENV_VAR

    svc, _folder, _truth = lib
    svc.store.close()  # one process opens a Qdrant Edge shard once: the CLI opens its own
    monkeypatch.setenv(ENV_VAR, str(svc.data_dir))

    def main(argv):
        import gc

        try:
            return cli.main(argv)
        finally:
            gc.collect()  # the verb's store is closed (as when its process ends)
    assert main(["classify", "--library", "demo", "--model", "dsp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_labelled"] == 12 and out["written"] == 6 and sum(out["suggested"].values()) == 6
    q = out["quality"]
    assert q["grouped_by"] == "file" and set(q["per_class"]) == {"kick", "hihat", "pad", "voice"}
    assert 0 <= q["macro_f1"] <= 1 and q["learning_curve"][-1]["per_class"] == "all"
    assert main(["classify", "--library", "demo", "--model", "dsp", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "macro-F1" in text and "learning curve" in text
    assert main(["classify", "--library", "demo", "--model", "nope"]) == 1
    assert "has no model 'nope'" in capsys.readouterr().err
    assert main(["classify", "--library", "demo", "--model", "dsp", "--group-by", "artist"]) == 1
    assert "no labelled clip of library 'demo' has a 'artist' field" in capsys.readouterr().err
    # search among the suggestions: only unlabelled clips suggested as the label, above the confidence
    pred = max(out["suggested"], key=out["suggested"].get)
    q = str(_folder / "kick" / "kick_00.wav")
    assert main(["search", "--library", "demo", "--model", "dsp", "--file", q, "--suggested", pred,
                 "--min-conf", "0", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == out["suggested"][pred]
    assert hits and all(h["label"] is None for h in hits)  # suggestions go to unlabelled clips only
    assert main(["search", "--library", "demo", "--model", "dsp", "--file", q, "--suggested", pred,
                 "--min-conf", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["search", "--library", "demo", "--model", "dsp", "--file", q, "--suggested", pred,
                 "--min-conf", "3"]) == 1
    assert "--min-conf must be between 0 and 1" in capsys.readouterr().err


def wait_for(job, timeout=120):
    import time

    t0 = time.time()
    while job.running and time.time() - t0 < timeout:
        time.sleep(0.1)
    assert not job.running, job


@pytest.mark.slow
def test_training_from_the_ui_runs_in_the_background_and_stops(lib):
    import time

    from app.access import Access
    from app.views import train

    svc, _folder, _truth = lib
    status, job_id, timer = train.start(svc, "contrastive", "demo", "dsp", "ui", 3)
    assert timer["active"] is True and 'data-model="dsp+supcon-ui"' in status
    job = svc.training.job(job_id)
    # a second run while one is going is refused in one line
    again = train.start(svc, "selfsup", "demo", "dsp", "x", 2)
    assert "a training run is going" in again[0] or not job.running
    # the server answers searches meanwhile
    hits = svc.queries.search_id("demo", "dsp", svc.vectors.read("demo", "dsp")[0][0], k=3)
    assert len(hits) == 3
    wait_for(job)
    assert job.state == "done", job.log
    html_, plot, shown, timer = train.poll(svc, job_id, "")
    assert 'data-state="done"' in html_ and 'data-done="3"' in html_ and timer["active"] is False
    assert plot is not None and len(plot.data) >= 1 and len(plot.data[0].x) == 3  # loss per epoch
    assert "dsp+supcon-ui" in svc.libs.trained_models() and "dsp+supcon-ui" in svc.libs.ready_models()
    msg = train.index_with(svc, job_id, progress=lambda *a, **k: None)
    assert "added" in msg and "dsp+supcon-ui" in svc.libs.models_of("demo")
    assert len(svc.vectors.read("demo", "dsp+supcon-ui")[0]) == len(svc.vectors.read("demo", "dsp")[0])
    # stop: ends after the current epoch, the best weights are saved and the model is listed
    job = svc.training.start("contrastive", "demo", name="long", base="dsp", epochs=5000,
                             settings={"patience": 5000})
    t0 = time.time()
    while job.done < 2 and time.time() - t0 < 60:
        time.sleep(0.05)
    assert "stop" in train.stop(svc, job.id) or job.stop.is_set()
    wait_for(job)
    assert job.state == "stopped" and job.result["epochs_run"] < 5000 and job.result["stopped_early"]
    assert any("stopped by the user" in line for line in job.log)
    assert "dsp+supcon-long" in svc.libs.ready_models()
    # bad requests are one line; public mode refuses visitors
    assert "epochs must be at least 1" in train.start(svc, "contrastive", "demo", "dsp", "z", -1)[0]
    svc.access = Access(public=True, token="t0ken")
    assert "refused" in train.start(svc, "contrastive", "demo", "dsp", "v", 2, request=Req("visitor"))[0]
