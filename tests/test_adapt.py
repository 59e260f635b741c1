"""Library-adapted search (index/adapt.py) on real Qdrant: better neighbours, stored with the library,
applied to queries, refitted when the library changes, dropped with the model."""
from __future__ import annotations

import numpy as np
import pytest

import index
from index import adapt, queries
from index.libraries import Library, delete_model, save_library
from index.store import ClientStore, EdgeStore


def _vectors(n_per: int = 40, d: int = 48, seed: int = 0):
    """Two labelled classes apart along a weak direction, under a shared offset and two strong
    nuisance dimensions (level, recording chain): raw cosine mostly sees the nuisance."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=d)
    x, y = [], []
    for label in ("a", "b"):
        for _ in range(n_per):
            v = common.copy()
            v[:2] += rng.normal(size=2) * 2.0
            v[2:10] += (0.1 if label == "b" else -0.1)
            v += 0.1 * rng.normal(size=d)
            x.append(v)
            y.append(label)
    return np.asarray(x, np.float32), y


def _library_store(kind: str, path, x: np.ndarray, y: list[str], audio):
    """A store of `kind` (edge / memory) holding library 'lib' with model 'm' = the vectors x, labels y."""
    st = EdgeStore(path) if kind == "edge" else ClientStore.in_memory()
    coll = index.collection_name("lib", "m")
    st.create_collection(coll, x.shape[1], indexes={"label": "keyword", "path": "keyword"})
    ids = [index.point_id(f"{i:040x}") for i in range(len(x))]
    st.upsert(coll, ids, x, [{"path": f"{lab}/{i}.wav", "label": lab} for i, lab in enumerate(y)])
    save_library(st, Library(name="lib", root=str(audio), models=["m"]))
    st.ids, st.x, st.y = ids, x, y
    return st


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    st = _library_store(request.param, tmp_path / "qdrant", *_vectors(), tmp_path / "audio")
    yield st
    st.close()


def _p_at_5(store) -> float:
    hits = []
    for pid, lab in zip(store.ids, store.y):
        got = queries.search_id(store, "lib", "m", pid, k=6)
        assert got[0].id == pid  # the clip itself first, adapted or not
        hits.append(np.mean([h.label == lab for h in got[1:]]))
    return float(np.mean(hits))


def test_adapted_search_finds_neighbours_raw_cosine_misses(store):
    raw = _p_at_5(store)
    w = adapt.fit_adaptation(store, "lib", "m")
    assert w is not None and w.n_fit == 80
    adapted = _p_at_5(store)
    assert adapted > raw + 0.15, (raw, adapted)
    # an uploaded query (a vector not in the library) goes through the same transform
    q = store.x[3] + np.float32(0.01)
    assert queries.search_vector(store, "lib", "m", q, k=5)[0].label == "a"
    # the switch turns it off: raw cosine again
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(adapt.ADAPT_ENV, "0")
        assert abs(_p_at_5(store) - raw) < 1e-9


def test_transform_is_stored_with_the_library_and_refitted_on_change(store):
    assert adapt.refresh_adaptations(store, "lib", ["m"]) == ["m"]  # none yet: fitted
    assert store.has_collection(adapt.adapt_collection_name("lib", "m"))
    assert adapt.refresh_adaptations(store, "lib", ["m"]) == []  # unchanged: kept
    x, _ = _vectors(n_per=20, seed=1)  # +50% clips
    coll = index.collection_name("lib", "m")
    store.upsert(coll, [index.point_id(f"{1000 + i:040x}") for i in range(len(x))], x,
                 [{"path": f"new/{i}.wav", "label": "a"} for i in range(len(x))])
    assert adapt.refresh_adaptations(store, "lib", ["m"]) == ["m"]
    assert adapt.load_adaptation(store, "lib", "m").n_fit == 120
    delete_model(store, "lib", "m")
    assert not store.has_collection(adapt.adapt_collection_name("lib", "m"))


def test_small_libraries_keep_raw_search(store, monkeypatch):
    monkeypatch.setattr(adapt, "MIN_CLIPS", 1000)
    assert adapt.fit_adaptation(store, "lib", "m") is None
    assert adapt.load_adaptation(store, "lib", "m") is None


@pytest.mark.slow
def test_indexing_fits_the_transform(tmp_path, monkeypatch):
    """After `index_folder` the library's model has its transform and search uses it."""
    from app.demo import write_demo_library

    monkeypatch.setattr(adapt, "MIN_CLIPS", 10)
    folder = write_demo_library(tmp_path / "audio", per_class=4, classes=["kick", "hihat", "pad"], unlabelled=0)
    data = tmp_path / "data"
    st = index.open_store(data)
    try:
        index.index_folder(st, "demo", folder, ["dsp"], data_dir=data)
        w = adapt.load_adaptation(st, "demo", "dsp")
        assert w is not None and w.n_fit == 12 and w.method == "diag"
        hits = queries.search_file(st, "demo", "dsp", folder / "kick" / "kick_00.wav", k=3, data_dir=data)
        assert hits[0].path == "kick/kick_00.wav" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    finally:
        st.close()


@pytest.mark.slow
def test_the_best_measured_model_is_preselected(tmp_path, monkeypatch):
    """A library indexed with a model that separates its classes and one that does not: the
    picker's default is the better one, by label agreement, and without labels by consensus."""
    from app.services import Services
    from app.views import pickers

    monkeypatch.setattr(adapt, "MIN_CLIPS", 10)
    x, y = _vectors()
    rng = np.random.default_rng(5)
    st = index.open_store(tmp_path / "data")
    try:
        ids = [index.point_id(f"{i:040x}") for i in range(len(x))]
        good, bad = x, rng.normal(size=x.shape).astype(np.float32)  # "bad": noise, knows nothing
        for model, v in (("bad", bad), ("good", good), ("good2", good + 0.05 * rng.normal(size=x.shape))):
            coll = index.collection_name("lib", model)
            st.create_collection(coll, x.shape[1], indexes={"label": "keyword", "path": "keyword"})
            st.upsert(coll, ids, v.astype(np.float32), [{"path": f"{i}.wav", "label": lab} for i, lab in enumerate(y)])
        save_library(st, Library(name="lib", root=str(tmp_path / "audio"), models=["bad", "good", "good2"]))
        adapt.refresh_adaptations(st, "lib", ["bad", "good", "good2"])
        q = adapt.quality_estimates(st, "lib", ["bad", "good", "good2"])
        assert q["good"]["kind"] == "labels" and q["good"]["score"] > q["bad"]["score"] + 0.3
        assert index.best_model(st, "lib", ["bad", "good"]) == "good"
        for coll in (index.collection_name("lib", m) for m in ("bad", "good", "good2")):  # labels gone
            st.delete_payload(coll, ids, ["label"])
        q = adapt.quality_estimates(st, "lib", ["bad", "good", "good2"])
        assert q["good"]["kind"] == "consensus" and q["good"]["score"] > q["bad"]["score"] + 0.2
        svc = Services(tmp_path / "data", store=st)
        _, model_update, _ = pickers.refresh(svc, "lib")
        assert model_update["value"] == "good"
    finally:
        st.close()


def _chains(n_cls: int = 8, n: int = 30, d: int = 12, step: float = 0.4, noise: float = 0.15, seed: int = 0):
    """Kinds of sound that vary gradually: each class a random walk on the sphere (a chain of
    close neighbours), the chains crossing each other in 12 dimensions."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for c in range(n_cls):
        v, direction = rng.normal(size=d), rng.normal(size=d)
        v /= np.linalg.norm(v)
        for _ in range(n):
            direction /= np.linalg.norm(direction)
            v = v + step * direction
            v /= np.linalg.norm(v)
            direction = direction + 0.3 * rng.normal(size=d)
            x.append(v + noise * rng.normal(size=d))
            y.append(f"k{c}")
    return np.asarray(x, np.float32), y


def _chain_store(kind: str, path):
    st = _library_store(kind, path, *_chains(), path / "audio")
    adapt.fit_adaptation(st, "lib", "m")
    return st


def test_diffusion_follows_chains_of_neighbours_on_both_backends(tmp_path, monkeypatch):
    """Ranking the pool by diffusion finds more of a gradually varying kind than adapted cosine does,
    and Qdrant Edge and qdrant-client give the same hits."""
    stores = [_chain_store(kind, tmp_path / kind) for kind in ("edge", "memory")]
    try:
        got = {}
        for flag in ("1", "0"):
            monkeypatch.setenv(adapt.DIFFUSION_ENV, flag)
            for kind, st in zip(("edge", "memory"), stores):
                some = st.ids if kind == "edge" else st.ids[::6]  # the other backend: a sample, to agree on
                got[kind, flag] = [[h.id for h in queries.search_id(st, "lib", "m", pid, k=6)] for pid in some]
        st = stores[0]
        label = dict(zip(st.ids, st.y))

        def p5(lists):
            assert all(ids[0] == pid for ids, pid in zip(lists, st.ids))  # the clip itself first
            return float(np.mean([[label[i] == label[ids[0]] for i in ids[1:]] for ids in lists]))

        diffused, cosine = p5(got["edge", "1"]), p5(got["edge", "0"])
        assert diffused > cosine + 0.015, (cosine, diffused)
        assert got["edge", "1"][::6] == got["memory", "1"] and got["edge", "0"][::6] == got["memory", "0"]
        assert got["edge", "1"] != got["edge", "0"]
        # the score stays the adapted cosine whatever the order
        hits = queries.search_id(st, "lib", "m", st.ids[5], k=6)
        w = adapt.load_adaptation(st, "lib", "m")
        q = w.apply(st.x[5])
        for h in hits:
            assert h.score == pytest.approx(float(w.apply(st.x[st.ids.index(h.id)]) @ q), abs=1e-5)
    finally:
        for st in stores:
            st.close()


def test_fused_models_are_whitened_part_by_part(store):
    """A fused model's transform keeps its parts and weights (embedders.fusion), and a stored one
    without them is refitted."""
    from embedders.fusion import part_blocks

    name = "aisfx+birdnet+musicnn-mtt"
    blocks = part_blocks(name)
    dim = blocks[-1][1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, dim)).astype(np.float32)
    coll = index.collection_name("lib", name)
    store.create_collection(coll, dim)
    store.upsert(coll, [index.point_id(f"{i:040x}") for i in range(len(x))], x, [{"path": f"{i}.wav"} for i in range(60)])
    w = adapt.fit_adaptation(store, "lib", name)
    assert [b[:2] for b in adapt.load_adaptation(store, "lib", name).blocks] == [b[:2] for b in blocks]
    # cosine of adapted fused vectors = weighted mean of the parts' cosines, each part adapted on its own
    from projections.whitening import fit_whitening

    y = w.apply(x[:2])
    wts = np.asarray([b[2] for b in blocks])
    wts = wts ** 2 / (wts ** 2).sum()
    cos = [float(np.prod(fit_whitening(x[:, a:b]).apply(x[:2, a:b]), axis=0).sum()) for a, b, _ in blocks]
    assert float(y[0] @ y[1]) == pytest.approx(float(wts @ np.asarray(cos)), abs=1e-5)
    # ... which whitening the concatenation as one vector does not keep
    assert abs(float(np.prod(fit_whitening(x).apply(x[:2]), axis=0).sum()) - float(wts @ np.asarray(cos))) > 1e-3
    old = adapt.load_adaptation(store, "lib", name)
    old.blocks = None
    adapt.save_adaptation(store, "lib", name, old)
    assert adapt.refresh_adaptations(store, "lib", [name]) == [name]
    assert adapt.load_adaptation(store, "lib", name).blocks is not None
