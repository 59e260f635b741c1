"""Class statistics on a large library: agreement estimated from a sample matches the exact one."""
from __future__ import annotations

import numpy as np
import pytest

import index
from index import classes
from index.libraries import Library, save_library
from index.store import EdgeStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """600 clips in 4 labelled clusters (some overlap, so agreement is neither 0 nor 1)."""
    root = tmp_path_factory.mktemp("classes")
    st = EdgeStore(root / "qdrant")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)).astype(np.float32)
    lab = np.arange(600) % 4
    X = centres[lab] + 1.1 * rng.standard_normal((600, 16)).astype(np.float32)
    coll = index.collection_name("big", "m")
    st.create_collection(coll, 16, indexes={"label": "keyword", "path": "keyword"})
    ids = [index.point_id(f"{i:040x}") for i in range(600)]
    st.upsert(coll, ids, X, [{"path": f"c{l}/{i}.wav", "label": f"c{l}"} for i, l in enumerate(lab)])
    save_library(st, Library(name="big", root=str(root / "audio"), models=["m"]))
    yield st
    st.close()


def test_sampled_agreement_estimates_the_exact_one(store):
    exact = classes.agreement(store, "big", "m", k=5, sample=None)
    est = classes.agreement(store, "big", "m", k=5, sample=300)
    assert exact["sampled"] is None and est["sampled"] == 300 and est["n"] == exact["n"] == 600
    assert 0.3 < exact["overall"] < 0.95  # the clusters overlap: a statistic worth estimating
    assert abs(est["overall"] - exact["overall"]) < 0.05
    assert set(est["per_label"]) == set(exact["per_label"])
    # a different draw gives a different (close) estimate: it really samples
    other = classes.agreement(store, "big", "m", k=5, sample=300, seed=1)
    assert other["overall"] != est["overall"] and abs(other["overall"] - exact["overall"]) < 0.05


def test_class_stats_say_when_agreement_is_sampled(store, monkeypatch):
    assert classes.class_stats(store, "big", "m", k=5)["agreement_sampled"] is None  # 600 <= 2000: exact
    monkeypatch.setattr(classes, "AGREEMENT_SAMPLE", 200)
    st = classes.class_stats(store, "big", "m", k=5)
    assert st["agreement_sampled"] == 200 and st["n_labelled"] == 600
    assert set(st["agreement"]) == set(st["labels"]) == {"c0", "c1", "c2", "c3"}


def _brute_force_agreement(X: np.ndarray, labels: list, k: int, rows: np.ndarray) -> tuple[float, dict]:
    """Agreement@k by numpy: cosine neighbours among all points, each query row's own point left out."""
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = unit[rows] @ unit.T
    sim[np.arange(len(rows)), rows] = -np.inf
    nbr = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    lab = np.array(labels)
    frac = (lab[nbr] == lab[rows][:, None]).mean(axis=1)
    return float(frac.mean()), {c: float(frac[lab[rows] == c].mean()) for c in sorted(set(lab[rows]))}


@pytest.mark.parametrize("backend", ["edge", "memory", "memory-batched"])
def test_agreement_from_qdrant_equals_numpy_brute_force(backend, tmp_path, monkeypatch):
    """The same vectors through index.classes (neighbours from Qdrant) and through numpy."""
    from index.store import ClientStore
    from index.store import client as client_backend
    from projections.quality import sample_rows

    if backend == "memory-batched":  # local mode's batched-query kNN graph instead of its search matrix
        monkeypatch.setattr(client_backend, "LOCAL_SEARCH_MATRIX_MAX_POINTS", 10)
    st = EdgeStore(tmp_path / "qdrant") if backend == "edge" else ClientStore.in_memory()
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((3, 12)).astype(np.float32)
    n = 240
    lab = rng.integers(0, 3, n)
    X = centres[lab] + 1.3 * rng.standard_normal((n, 12)).astype(np.float32)
    ids = [index.point_id(f"{i:040x}") for i in range(n)]
    pays = [{"path": f"{i}.wav", **({} if i % 9 == 4 else {"label": f"c{lab[i]}"})} for i in range(n)]
    coll = index.collection_name("bf", "m")
    st.create_collection(coll, 12, indexes={"label": "keyword"})
    st.upsert(coll, ids, X, pays)
    save_library(st, Library(name="bf", root=str(tmp_path / "audio"), models=["m"]))
    try:
        # the labelled clips in point-id order (the order index.classes scores and samples them in)
        order = sorted((pid, i) for i, pid in enumerate(ids) if "label" in pays[i])
        Xl = X[[i for _, i in order]]
        labels = [pays[i]["label"] for _, i in order]
        for k, sample in ((5, None), (4, 60)):
            got = classes.agreement(st, "bf", "m", k=k, sample=sample, seed=2)
            rows = sample_rows(len(labels), sample, seed=2)
            overall, per_class = _brute_force_agreement(Xl, labels, k, rows)
            assert got["n"] == len(labels) and got["sampled"] == (None if sample is None else sample)
            assert got["overall"] == pytest.approx(overall, abs=1e-12), (k, sample)
            assert got["per_label"] == pytest.approx(per_class, abs=1e-12), (k, sample)
            assert 0.4 < overall < 0.98  # overlapping classes: a non-trivial value
    finally:
        st.close()


def test_sampled_class_stats_are_close_to_the_exact_ones(store):
    """Above the threshold (lowered here) every number comes from a per-class sample, and says so."""
    exact = classes.class_stats(store, "big", "m", k=5)
    est = classes.class_stats(store, "big", "m", k=5, exact_max=100, per_class=60)
    assert exact["sampled"] is None and est["sampled"] == {"n": 240, "of": 600, "per_class": 60}
    assert est["counts"] == exact["counts"] and est["n_labelled"] == 600  # counts stay exact (a facet)
    assert abs(est["overall_agreement"] - exact["overall_agreement"]) < 0.06
    assert max(abs(est["agreement"][lb] - exact["agreement"][lb]) for lb in est["labels"]) < 0.12
    # centroids of 60 of 150 noisy 16-d clips: cosines within 0.15 (measured 0.10)
    assert np.abs(np.array(est["centroid_similarity"]) - np.array(exact["centroid_similarity"])).max() < 0.15
    for lb in est["labels"]:  # typical clips are the class's own, the nearest others are not, as exact
        assert {h.label for h in est["typical"][lb]} == {lb} and lb not in {h.label for h in est["nearest"][lb]}
        overlap = {h.id for h in est["typical"][lb]} & {h.id for h in exact["typical"][lb]}
        assert len(overlap) >= 2
    js = classes.class_stats_json(est)
    assert js["sampled"]["n"] == 240
    from app.views.classes import summary  # the UI says so
    assert "Sampled: 240 of 600 clips" in summary(est, "m") and "Sampled" not in summary(exact, "m")


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_cross_source_agreement_leaves_the_artist_effect_out(backend, tmp_path):
    """Each artist's songs sit in a tight cluster of their own and each artist plays one genre: plain
    agreement is near 1 (neighbours are the same artist's songs); with neighbours from other artists
    only it is what the genre signal gives, and it equals numpy's brute force over those neighbours."""
    from index.store import ClientStore

    st = EdgeStore(tmp_path / "qdrant") if backend == "edge" else ClientStore.in_memory()
    rng = np.random.default_rng(5)
    n_art, per, d = 12, 15, 16
    genre_c = rng.standard_normal((4, d)).astype(np.float32)
    art_c = rng.standard_normal((n_art, d)).astype(np.float32)
    art = np.repeat(np.arange(n_art), per)
    gen = art % 4
    X = 0.9 * genre_c[gen] + 2.0 * art_c[art] + 0.3 * rng.standard_normal((len(art), d)).astype(np.float32)
    ids = [index.point_id(f"{i:040x}") for i in range(len(art))]
    pays = [{"path": f"{i}.mp3", "label": f"g{gen[i]}", **({"artist": f"a{art[i]}"} if i % 17 else {})}
            for i in range(len(art))]
    coll = index.collection_name("music", "m")
    st.create_collection(coll, d, indexes={"label": "keyword", "artist": "keyword"})
    st.upsert(coll, ids, X, pays)
    save_library(st, Library(name="music", root=str(tmp_path / "audio"), models=["m"]))
    try:
        k = 5
        plain = classes.agreement(st, "music", "m", k=k)["overall"]
        got = classes.class_stats(st, "music", "m", k=k, cross="artist")["cross_agreement"]
        assert plain > 0.95 and got["overall"] < plain - 0.2  # the artist effect, measured
        # numpy: for each clip with an artist, its k nearest among clips of another artist (cosine)
        unit = X / np.linalg.norm(X, axis=1, keepdims=True)
        a = np.array([p.get("artist") for p in pays], dtype=object)
        scored = [i for i in range(len(art)) if a[i] is not None]
        fracs, per_label = [], {}
        for i in scored:
            sim = unit @ unit[i]
            sim[a == a[i]] = -np.inf  # same artist (itself included): left out; clips without one stay
            nbr = np.argsort(-sim, kind="stable")[:k]
            f = float(np.mean(gen[nbr] == gen[i]))
            fracs.append(f)
            per_label.setdefault(f"g{gen[i]}", []).append(f)
        assert got["n"] == len(scored) and got["sources"] == n_art and got["sampled"] is None
        assert got["overall"] == pytest.approx(float(np.mean(fracs)), abs=1e-12)
        assert got["per_label"] == pytest.approx({g: float(np.mean(v)) for g, v in per_label.items()}, abs=1e-12)
        with pytest.raises(index.LibraryError, match="has a 'kit' field"):
            classes.cross_agreement(st, "music", "m", "kit")
    finally:
        st.close()
