"""Aspect vectors and steered search: per-aspect scores, weights, set restriction, time-range queries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import index
from index import aspects as A
from index.naming import aspect_collection_name, collection_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lib(tmp_path_factory, demo_folder):
    """The demo folder indexed with the dsp model (aspects on), in its own data folder."""
    d = tmp_path_factory.mktemp("aspects_data")
    store = index.open_store(d)
    rep = index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=d)
    assert rep.added == 18 and not rep.failed
    yield store, d, demo_folder
    store.close()


def _stored(store, name, ids):
    coll = collection_name("demo", "dsp") if name == A.DEEP else aspect_collection_name("demo", name)
    return {r.id: r.vector for r in store.retrieve(coll, ids, with_vectors=True)}


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_every_clip_gets_unit_aspect_vectors_stored_under_its_own_id(lib):
    store, _, _ = lib
    ids = [r.id for r in store.scroll(collection_name("demo", "dsp"))]
    for name in A.ASPECTS:
        vecs = _stored(store, name, ids)
        assert set(vecs) == set(ids)
        m = np.stack(list(vecs.values()))
        assert m.shape[1] == A.DIMS[name]
        assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    assert A.aspect_status(store, "demo", "dsp") == {"clips": 18, "with_aspects": 18, "ready": True}


def test_per_aspect_scores_are_the_cosines_of_the_stored_vectors_and_the_score_their_weighted_mean(lib):
    store, d, folder = lib
    q = next(folder.glob("kick/*.wav"))
    weights = {"deep": 1.0, "timbre": 0.5, "envelope": 2.0}
    hits, query = A.search(store, "demo", "dsp", path=q, weights=weights, k=8, data_dir=d)
    assert len(hits) == 8 and hits[0].path == "kick/" + q.name  # the query itself is first
    ids = [h.id for h in hits]
    stored = {a: _stored(store, a, ids) for a in A.ALL}
    for h in hits:
        assert set(h.aspects) == set(A.ALL)
        for a in A.ALL:
            qv = query.deep if a == A.DEEP else query.aspects[a]
            assert h.aspects[a] == pytest.approx(_cos(qv, stored[a][h.id]), abs=1e-5)
        expect = (h.aspects["deep"] + 0.5 * h.aspects["timbre"] + 2 * h.aspects["envelope"]) / 3.5
        assert h.score == pytest.approx(expect, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_a_weight_of_zero_removes_the_aspect_and_an_aspect_alone_ranks_by_it(lib):
    store, d, folder = lib
    q = next(folder.glob("pad/*.wav"))
    with_zero, _ = A.search(store, "demo", "dsp", path=q, weights="deep=1,timbre=1,pitch=0", k=10, data_dir=d)
    without, _ = A.search(store, "demo", "dsp", path=q, weights="deep=1,timbre=1", k=10, data_dir=d)
    assert [(h.id, h.score) for h in with_zero] == [(h.id, h.score) for h in without]
    for h in with_zero:  # pitch is reported but not counted
        assert "pitch" in h.aspects
        assert h.score == pytest.approx((h.aspects["deep"] + h.aspects["timbre"]) / 2, abs=1e-5)
    env_only, _ = A.search(store, "demo", "dsp", path=q, weights="deep=0,envelope=1", k=18, data_dir=d)
    env = [h.aspects["envelope"] for h in env_only]
    assert [h.score for h in env_only] == pytest.approx(env, abs=1e-6)
    assert env == sorted(env, reverse=True)
    all_env = _stored(store, "envelope", [h.id for h in env_only])
    assert len(all_env) == 18  # every clip was a candidate: the ranking is the exact one
    deep_order = [h.id for h in A.search(store, "demo", "dsp", path=q, k=18, data_dir=d)[0]]
    assert [h.id for h in env_only] != deep_order  # the dial changes the results


def test_default_weights_give_exactly_the_plain_search(lib):
    store, d, folder = lib
    for q in (next(folder.glob("voice/*.wav")), next(folder.glob("hihat/*.wav"))):
        plain = index.search_file(store, "demo", "dsp", q, k=7, data_dir=d)
        hits, _ = A.search(store, "demo", "dsp", path=q, k=7, data_dir=d)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in plain]
        assert all(h.aspects["deep"] == pytest.approx(h.score, abs=1e-6) for h in hits)
    pid = plain[2].id
    by_id = index.search_id(store, "demo", "dsp", pid, k=5)
    hits, _ = A.search(store, "demo", "dsp", point_id=pid, weights={"deep": 1}, k=5)
    assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in by_id]


def test_a_steered_search_scores_the_deep_model_as_plain_search_does_on_an_adapted_library(lib, monkeypatch):
    """With a library-adapted transform (index/adapt.py), a hit's deep similarity is the same number
    in a plain search and once a dial moves (it used to be the raw cosine there)."""
    from index import adapt

    store, d, folder = lib
    monkeypatch.setattr(adapt, "MIN_CLIPS", 5)
    assert adapt.fit_adaptation(store, "demo", "dsp") is not None
    try:
        q = next(folder.glob("hihat/*.wav"))
        plain = {h.id: h.score for h in index.search_file(store, "demo", "dsp", q, k=18, data_dir=d)}
        steered, query = A.search(store, "demo", "dsp", path=q, weights="deep=1,timbre=0.5", k=18, data_dir=d)
        assert len(steered) == 18 and set(plain) == {h.id for h in steered}
        raw = _stored(store, A.DEEP, list(plain))
        moved = 0
        for h in steered:
            assert h.aspects["deep"] == pytest.approx(plain[h.id], abs=1e-5)
            moved += abs(h.aspects["deep"] - _cos(query.deep, raw[h.id])) > 1e-3
        assert moved > 0  # the adapted cosine is not the raw one on this library
    finally:
        adapt.drop_adaptation(store, "demo", "dsp")


def test_a_selection_as_the_query_is_the_mean_of_its_vectors(lib):
    store, d, folder = lib
    kicks = sorted(h.id for h in A.search(store, "demo", "dsp", path=next(folder.glob("kick/*.wav")), k=2,
                                          data_dir=d)[0])
    hits, query = A.search(store, "demo", "dsp", point_ids=kicks, weights="deep=1,timbre=1", k=6)
    stored = {a: _stored(store, a, [h.id for h in hits]) for a in A.ALL}
    for a in A.ALL:
        mean = np.mean([_stored(store, a, kicks)[i] for i in kicks], axis=0)
        for h in hits:
            assert h.aspects[a] == pytest.approx(_cos(mean, stored[a][h.id]), abs=1e-5)
    assert set(kicks) <= {h.id for h in hits[:4]}
    with pytest.raises(index.LibraryError, match="selection is empty"):
        A.search(store, "demo", "dsp", point_ids=[], weights="timbre=1")


def test_a_search_inside_a_set_returns_only_its_members(lib):
    store, d, folder = lib
    q = next(folder.glob("kick/*.wav"))
    everything = [h.id for h in A.search(store, "demo", "dsp", path=q, k=18, data_dir=d)[0]]
    members = everything[5:12]  # previous results / a selection that leaves the best matches out
    for weights in (None, "deep=1,timbre=1,spectrum=0.5"):
        hits, _ = A.search(store, "demo", "dsp", path=q, k=10, weights=weights, within=members, data_dir=d)
        assert len(hits) == len(members) and {h.id for h in hits} == set(members)
    tagged = everything[::3]
    index.curation.edit(store, "demo", tagged, add=["keep"])
    for weights in (None, "deep=0.2,pitch=1"):
        hits, _ = A.search(store, "demo", "dsp", path=q, k=18, weights=weights, where={"tags": "keep"}, data_dir=d)
        assert {h.id for h in hits} == set(tagged)
    hits, _ = A.search(store, "demo", "dsp", path=q, k=18, weights="timbre=1", label="pad", data_dir=d)
    assert hits and all(h.label == "pad" for h in hits)


@pytest.mark.slow
def test_a_time_range_of_a_recording_finds_its_own_segment_first(tmp_path, data_dir):
    import soundfile as sf

    from app.demo import SR, make_clip

    rng = np.random.default_rng(3)
    parts = [make_clip(kind, rng)[:SR] for kind in ("kick", "pad", "voice", "hihat", "bass", "bell", "snare", "pad")]
    wave = np.concatenate([np.pad(p, (0, SR - p.size)) for p in parts])
    rec = tmp_path / "rec" / "session.wav"
    rec.parent.mkdir()
    sf.write(str(rec), wave, SR, subtype="PCM_16")
    store = index.open_store(data_dir)
    index.ingest.index_recording(store, "rec", rec, ["dsp"], data_dir=data_dir, segment_s=1.0, hop_s=1.0)
    for start in (2.0, 5.0):
        for weights in (None, "deep=1,timbre=1,envelope=1"):
            hits, _ = A.search(store, "rec", "dsp", path=rec, start_s=start, end_s=start + 1, weights=weights,
                               k=3, data_dir=data_dir)
            assert hits[0].payload["start_s"] == pytest.approx(start)
            assert hits[0].score > 0.99
    with pytest.raises(index.LibraryError, match="bad time range"):
        A.search(store, "rec", "dsp", path=rec, start_s=9.0, end_s=12.0, data_dir=data_dir)
    store.close()


@pytest.mark.slow
def test_a_library_without_aspects_says_how_to_add_them_and_reindexing_adds_them(tmp_path, data_dir, demo_folder):
    from index.ingest import IngestOptions

    store = index.open_store(data_dir)
    index.index_folder(store, "old", demo_folder, ["dsp"], data_dir=data_dir,
                       options=IngestOptions(aspects=False, thumbnails=False))
    q = next(demo_folder.glob("kick/*.wav"))
    hits, _ = A.search(store, "old", "dsp", path=q, k=3, data_dir=data_dir)  # plain search still works
    assert hits and set(hits[0].aspects) == {"deep"}
    with pytest.raises(A.AspectsMissingError, match="index it again"):
        A.search(store, "old", "dsp", path=q, weights="timbre=1", data_dir=data_dir)
    rep = index.index_folder(store, "old", demo_folder, ["dsp"], data_dir=data_dir,
                             options=IngestOptions(thumbnails=False))
    assert rep.added == 18 and not rep.failed
    assert A.aspect_status(store, "old", "dsp")["ready"]
    hits, _ = A.search(store, "old", "dsp", path=q, weights="timbre=1", k=3, data_dir=data_dir)
    assert hits[0].path == "kick/" + q.name
    assert index.index_folder(store, "old", demo_folder, ["dsp"], data_dir=data_dir).unchanged == 18
    store.close()


def test_weights_are_checked_with_one_line_errors():
    assert A.parse_weights(None) == {"deep": 1.0}
    assert A.parse_weights("timbre=0.5,pitch=0") == {"deep": 1.0, "timbre": 0.5, "pitch": 0.0}
    for bad, msg in (("loud=1", "unknown aspect"), ("timbre", "NAME=WEIGHT"), ("timbre=x", "not a number"),
                     ("pitch=-1", ">= 0"), ("deep=0", "every aspect weight is 0")):
        with pytest.raises(ValueError, match=msg):
            A.parse_weights(bad)


def test_why_similar_names_shared_tags_close_and_differing_descriptors():
    q = A.Query(None, None, {"tempo_bpm": 120.0, "loudness_dbfs": -12.0, "spectral_centroid_hz": 1500.0},
                ["rock", "guitar", "drums"])
    hit = index.Hit("x", 0.9, {"tempo_bpm": 121.5, "loudness_dbfs": -16.2, "spectral_centroid_hz": 2600.0,
                               "top_tags": ["guitar", "rock", "loud"]}, aspects={"deep": 0.9, "timbre": 0.8})
    assert A.why_similar(q, hit) == "both rock, guitar; both ~121 bpm; 4 dB quieter; brighter; closest in timbre (0.80)"


@pytest.mark.slow
def test_cli_search_with_aspects_gives_scores_per_aspect(tmp_path, demo_folder):
    import shutil

    folder = tmp_path / "audio"
    for sub in ("hihat", "kick"):
        (folder / sub).mkdir(parents=True)
        for f in sorted((demo_folder / sub).glob("*.wav"))[:3]:
            shutil.copy(f, folder / sub / f.name)
    d = tmp_path / "data"

    def cli(*args):
        return subprocess.run([sys.executable, "app.py", *args, "--data-dir", str(d)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    assert cli("index", str(folder), "--library", "demo", "--models", "dsp", "--no-thumbnails").returncode == 0
    q = next(folder.glob("hihat/*.wav"))
    res = cli("search", "--library", "demo", "--model", "dsp", "--file", str(q), "--aspects",
              "deep=1,timbre=0.5,pitch=0", "-k", "4", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert len(rows) == 4 and rows[0]["path"] == "hihat/" + q.name
    for r in rows:
        assert set(r["aspects"]) == set(A.ALL) and isinstance(r["why"], str)
        assert r["score"] == pytest.approx((r["aspects"]["deep"] + 0.5 * r["aspects"]["timbre"]) / 1.5, abs=1e-5)
    res = cli("search", "--library", "demo", "--model", "dsp", "--file", str(q), "--aspects", "loud=1")
    assert res.returncode != 0 and "unknown aspect 'loud'" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_search_view_dials_bars_why_lines_scope_and_playback_part(lib):
    import re

    from app.services import Services
    from app.views import playback, search

    store, d, folder = lib
    svc = Services(d, store=store)
    q = str(next(folder.glob("kick/*.wav")))
    status, plain_html, plain = search.run(svc, "demo", "dsp", q, "", 6)
    assert status.startswith("6 results for") and "steered" not in status
    assert plain == [[h.id, round(h.score, 6)] for h in index.search_file(store, "demo", "dsp", q, k=6, data_dir=d)]
    assert plain_html.count('class="ae-aspects"') == 6 and plain_html.count('class="ae-why"') >= 1
    status, html_, steered = search.run(svc, "demo", "dsp", q, "", 6, None, False, None, None, None, None,
                                        0.0, 0.0, 0.0, 0.0, 1.0)
    assert "steered by envelope 1" in status and steered != plain
    bars = re.findall(r'title="(\w+) similarity ([0-9.-]+)"', html_)
    assert {name for name, _ in bars} == set(A.ALL)
    first_env = [float(v) for name, v in bars if name == "envelope"][:6]
    assert [s for _i, s in steered] == pytest.approx(first_env, abs=2e-3)  # the score is the envelope bar
    status, _, inside = search.run(svc, "demo", "dsp", q, "", 10, None, False, None, None, None, None,
                                   1.0, 0.0, 0.0, 0.0, 0.0, None, None, search.PREVIOUS, plain[3:5])
    assert {i for i, _ in inside} == {i for i, _ in plain[3:5]} and "inside previous results" in status
    _, err, _ = search.run(svc, "demo", "dsp", q, "", 10, None, False, None, None, None, None,
                           1.0, 0.0, 0.0, 0.0, 0.0, None, None, search.SELECTION, [], [])
    assert "nothing to search inside" in err
    _, err, _ = search.run(svc, "demo", "dsp", q, "", 10, None, False, None, None, None, None,
                           0.0, 0.0, 0.0, 0.0, 0.0)
    assert "every aspect weight is 0" in err
    sel_ids = [i for i, _ in plain[:3]]
    status, _, by_sel = search.run(svc, "demo", "dsp", None, "", 5, None, False, None, None, None, None,
                                   1.0, 0.5, 0.0, 0.0, 0.0, None, None, None, None, sel_ids, None, None, 0.0,
                                   search.QUERY_SELECTION)
    assert status.startswith("5 results for the selection (3 clips)") and len(by_sel) == 5
    rel = Path(q).relative_to(folder).as_posix()
    status, html_ = playback.search_part(svc, "demo", "dsp", rel, 0.0, 0.6)  # the whole 0.6 s kick
    assert status.startswith("10 results for 0–0.6 s of " + rel)
    assert re.search(r'data-path="([^"]+)"', html_).group(1) == rel
    assert "bad time range" in playback.search_part(svc, "demo", "dsp", rel, 5.0, 6.0)[1]
