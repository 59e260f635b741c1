"""projections/: methods, placement of new points, cache, quality numbers.

Small synthetic data only (tens of points), so the file runs in well under a
minute on two cores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from projections import (
    METHODS,
    MapCache,
    MapKey,
    ProjectionError,
    canonical_params,
    ids_hash,
    knn_label_agreement,
    make,
    map_quality,
    trustworthiness,
)

DIM = 24


def blobs(n_classes: int = 5, per_class: int = 12, seed: int = 0, spread: float = 4.0):
    """Labelled Gaussian blobs: vectors [n, DIM] float32 and labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, DIM)) * spread
    y = np.repeat(np.arange(n_classes), per_class)
    X = centres[y] + rng.normal(size=(y.size, DIM))
    return X.astype(np.float32), [f"class{c}" for c in y]


def curve(n: int = 60, seed: int = 0):
    """Points along a smooth curve (a trajectory-like manifold) in DIM dims."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3 * np.pi, n)
    basis = rng.normal(size=(4, DIM))
    feats = np.stack([np.cos(t), np.sin(t), 0.5 * np.cos(2 * t), t / 3], axis=1)
    return (feats @ basis + 0.05 * rng.normal(size=(n, DIM))).astype(np.float32)


def frames_of(clip: np.ndarray, n_frames: int = 8, seed: int = 1) -> np.ndarray:
    """A clip's 'trajectory': its vector plus small noise per frame."""
    rng = np.random.default_rng(seed)
    noise = 0.01 * np.abs(clip).mean() * rng.normal(size=(n_frames, clip.size))
    return (clip + noise).astype(np.float32)


# -- methods ----------------------------------------------------------------


@pytest.mark.parametrize("dims", (2, 3))
@pytest.mark.parametrize("method", METHODS)
def test_fit_is_deterministic_for_a_seed(method, dims):
    X, labels = blobs()
    first = make(method, dims, seed=3).fit_transform(X, labels)
    second = make(method, dims, seed=3).fit_transform(X, labels)
    assert first.shape == (X.shape[0], dims)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_params_are_canonical_and_round_trip():
    umap = make("umap", 2)
    assert umap.params == {
        "n_neighbors": 15,
        "min_dist": 0.1,
        "metric": "cosine",
        "seed": 0,
        "n_epochs": None,
        "init": "auto",
    }
    assert make("umap", 2, n_neighbors="15", min_dist=0.1).params == umap.params
    assert canonical_params("t-SNE", 3, perplexity=30) == make("tsne", 3).params
    tsne = make("tsne", 3, perplexity=12, seed=None)
    assert make(tsne.method, tsne.dims, **tsne.params).params == tsne.params
    assert make("pca", 2, seed=5).params == {}  # deterministic methods drop seed
    with pytest.raises(ProjectionError, match="unknown parameter perplexity for umap"):
        make("umap", 2, perplexity=5)
    with pytest.raises(ProjectionError, match="unknown projection method"):
        make("isomap", 2)


@pytest.mark.parametrize("dims", (1, 4, "2"))
def test_dims_must_be_2_or_3(dims):
    with pytest.raises(ProjectionError, match="dims must be 2 or 3"):
        make("pca", dims)


def test_nan_input_is_a_clear_error():
    X, _ = blobs()
    X[7, 3] = np.nan
    with pytest.raises(ProjectionError, match="NaN or infinite values in 1 of 60 rows \\(first bad row: 7\\)"):
        make("pca", 2).fit(X)
    fitted = make("pca", 2).fit(blobs()[0])
    with pytest.raises(ProjectionError, match="NaN"):
        fitted.transform(X[:10])


@pytest.mark.parametrize("method", ("umap", "tsne"))
def test_too_few_points_says_how_many_are_needed(method):
    X, _ = blobs()
    with pytest.raises(ProjectionError, match=r"needs at least 5 points \(got 3\): use PCA"):
        make(method, 2).fit(X[:3])


def test_tsne_3d_refuses_big_sets_clearly():
    from projections.tsne_projector import MAX_POINTS_3D

    too_many = np.zeros((MAX_POINTS_3D + 1, 4), dtype=np.float32)
    with pytest.raises(ProjectionError, match="t-SNE in 3D is limited to .*: use t-SNE in 2D or UMAP in 3D"):
        make("tsne", 3).fit(too_many)


def test_wrong_width_of_new_points_is_a_clear_error():
    X, _ = blobs()
    fitted = make("pca", 2).fit(X)
    with pytest.raises(ProjectionError, match="have 5 features but the map was fitted on 24"):
        fitted.transform(X[:, :5])
    with pytest.raises(ProjectionError, match="not fitted"):
        make("pca", 2).transform(X)


def test_lda_with_one_class_raises_and_offers_pca():
    X, _ = blobs()
    labels = ["rock"] * 20 + [None] * 40
    with pytest.raises(ProjectionError, match=r"LDA needs at least 2 labelled classes \(found 1.*\): use PCA"):
        make("lda", 2).fit(X, labels)
    with pytest.raises(ProjectionError, match="found 0"):
        make("lda", 2).fit(X)  # no labels at all


def test_lda_3d_needs_four_classes():
    X, labels = blobs(n_classes=3, per_class=20)
    make("lda", 2).fit(X, labels)  # 3 classes: 2 axes, fine
    with pytest.raises(ProjectionError, match=r"LDA in 3D needs at least 4 labelled classes \(found 3\)"):
        make("lda", 3).fit(X, labels)


def test_degenerate_vectors_give_a_clear_error_or_a_map():
    same = np.ones((30, DIM), dtype=np.float32)
    with pytest.raises(ProjectionError, match="LDA cannot separate these labelled points.*use PCA"):
        make("lda", 2).fit(same, ["a", "b", "c"] * 10)
    assert np.isfinite(make("pca", 2).fit_transform(same)).all()


def test_lda_ignores_unlabelled_points_in_the_fit_but_places_them():
    X, labels = blobs()
    labels = [lab if i % 3 else None for i, lab in enumerate(labels)]  # a third unlabelled
    unlabelled = np.array([lab is None for lab in labels])
    first = make("lda", 2).fit(X, labels)

    moved = X.copy()
    moved[unlabelled] = np.random.default_rng(9).normal(size=(unlabelled.sum(), DIM)) * 50
    second = make("lda", 2).fit(moved, labels)

    np.testing.assert_allclose(second.components_, first.components_)
    np.testing.assert_allclose(second.offset_, first.offset_)
    np.testing.assert_array_equal(second.embedding_[~unlabelled], first.embedding_[~unlabelled])
    np.testing.assert_allclose(second.embedding_[unlabelled], second.transform(moved[unlabelled]), rtol=1e-5)
    assert np.isfinite(second.embedding_).all()
    assert list(second.labelled_mask_) == list(~unlabelled)


def test_other_methods_ignore_labels():
    X, labels = blobs()
    for method in ("pca", "umap"):
        with_labels = make(method, 2).fit_transform(X, labels)
        np.testing.assert_array_equal(with_labels, make(method, 2).fit_transform(X))


# -- placing new points --------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_a_trajectory_lands_near_its_own_clip(method):
    """Frames of a clip already in the map land on it: exactly the nearest map
    point for the linear maps; for UMAP / t-SNE, whose placement is a short
    optimisation among the clip's neighbours, among the 5 nearest of 60."""
    if method == "lda":
        X, labels = blobs()
    else:
        X, labels = curve(), None
    fitted = make(method, 2).fit(X, labels)
    worst = 0 if method in ("pca", "lda") else 4
    for clip in (5, 30, 52):
        placed = fitted.transform(frames_of(X[clip]))
        centre = np.median(placed, axis=0)
        dist = ((fitted.embedding_ - centre) ** 2).sum(axis=1)
        rank = int((dist < dist[clip]).sum())
        assert rank <= worst, f"{method}: clip {clip} is map neighbour number {rank + 1} of its frames"


@pytest.mark.parametrize("method", METHODS)
def test_placing_points_does_not_move_the_map(method):
    X, labels = blobs()
    fitted = make(method, 2).fit(X, labels)
    before = fitted.embedding_.copy()
    query = frames_of(X[3], n_frames=4)
    first = fitted.transform(query)
    again = fitted.transform(query)
    np.testing.assert_array_equal(fitted.embedding_, before)
    assert not fitted.embedding_.flags.writeable
    np.testing.assert_array_equal(first, again)  # placement is repeatable too
    assert first.shape == (4, 2) and first.dtype == np.float32


# -- cache ------------------------------------------------------------------------


def _ids(n: int) -> list[str]:
    return [f"clip-{i:03d}" for i in range(n)]


def test_ids_hash_is_ordered_and_rejects_a_string():
    assert ids_hash(["a", "b"]) != ids_hash(["b", "a"])
    assert ids_hash(["ab"]) != ids_hash(["a", "b"])
    assert ids_hash(("a", "b")) == ids_hash(["a", "b"])
    with pytest.raises(TypeError):
        ids_hash("abc")


def test_cache_hit_returns_identical_coords_and_is_counted(tmp_path):
    X, labels = blobs()
    cache = MapCache(tmp_path)
    key = MapKey.build("demo", "dsp-mfcc", "pca", 2, _ids(len(X)))
    assert cache.get(key) is None
    assert (cache.stats.hits, cache.stats.misses) == (0, 1)

    fitted = cache.get_or_fit(key, X, labels)
    assert cache.stats.misses == 2 and cache.stats.writes == 1
    again = cache.get(key)
    assert cache.stats.hits == 1
    np.testing.assert_array_equal(again.coords, fitted.coords)
    assert (again.method, again.dims, again.params) == ("pca", 2, {})
    assert 0.0 <= again.quality["trustworthiness"] <= 1.0

    same = cache.get_or_fit(key, X, labels)  # a second view is a hit, no refit
    assert cache.stats.hits == 2 and cache.stats.writes == 1
    np.testing.assert_array_equal(same.coords, fitted.coords)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_map_fitted_without_quality_gets_it_later_without_a_refit(tmp_path):
    X, labels = blobs()
    cache = MapCache(tmp_path)
    key = MapKey.build("demo", "dsp-mfcc", "pca", 2, _ids(len(X)))
    fitted = cache.get_or_fit(key, X, labels, quality_k=None)  # the map first (what the UI does)
    assert fitted.quality is None and cache.get(key).quality is None
    q = map_quality(X, fitted.coords, labels, k=5)
    cache.set_quality(key, q)
    reopened = MapCache(tmp_path).get(key)  # stored on disk, coordinates untouched
    assert reopened.quality["trustworthiness"] == pytest.approx(q["trustworthiness"])
    assert q["trustworthiness"] > 0.5
    np.testing.assert_array_equal(reopened.coords, fitted.coords)
    assert cache.stats.writes == 1
    other = MapKey.build("demo", "dsp-mfcc", "pca", 3, _ids(len(X)))
    with pytest.raises(ProjectionError, match="fit it first"):
        cache.set_quality(other, q)


def test_cache_survives_a_restart_and_places_points(tmp_path):
    X, labels = blobs()
    key = MapKey.build("demo", "dsp-mfcc", "lda", 2, _ids(len(X)), labels=labels)
    first = MapCache(tmp_path)
    coords = first.get_or_fit(key, X, labels).coords
    in_session = first.projector(key).transform(X[:4])

    restarted = MapCache(tmp_path)
    hit = restarted.get(key)
    assert hit is not None and restarted.stats.hits == 1
    np.testing.assert_array_equal(hit.coords, coords)
    projector = restarted.projector(key)  # linear maps need no vectors
    assert restarted.stats.model_loads == 1
    np.testing.assert_allclose(projector.transform(X[:4]), in_session, rtol=1e-6)


def test_cached_umap_places_points_after_a_restart_given_its_vectors(tmp_path):
    X = curve()
    key = MapKey.build("demo", "dsp-mfcc", "umap", 2, _ids(len(X)), params={"n_neighbors": 10})
    first = MapCache(tmp_path)
    first.get_or_fit(key, X, quality_k=None)
    frames = frames_of(X[20])
    in_session = first.projector(key).transform(frames)

    restarted = MapCache(tmp_path)
    assert restarted.get(key) is not None
    with pytest.raises(ProjectionError, match="needs the map's own vectors"):
        restarted.projector(key)
    after = restarted.projector(key, X).transform(frames)
    np.testing.assert_allclose(after, in_session, atol=1e-5)
    assert not list(tmp_path.rglob("*.pkl"))  # no pickles, no vectors on disk
    with np.load(next(tmp_path.rglob("*.npz"))) as stored:
        assert sorted(stored.files) == ["coords", "state__ab"]


def test_adding_a_clip_invalidates_the_map(tmp_path):
    X, labels = blobs()
    cache = MapCache(tmp_path)
    ids = _ids(len(X))
    key = MapKey.build("demo", "dsp-mfcc", "pca", 2, ids)
    cache.get_or_fit(key, X, labels)
    grown = MapKey.build("demo", "dsp-mfcc", "pca", 2, ids + ["clip-new"])
    assert grown.digest != key.digest
    assert cache.get(grown) is None
    assert cache.get(key) is not None


def test_key_depends_on_what_the_map_depends_on():
    ids = _ids(10)
    base = MapKey.build("lib", "model", "umap", 2, ids)
    assert MapKey.build("lib", "model", "umap", 2, ids, params={"n_neighbors": 15}).digest == base.digest
    assert MapKey.build("lib", "model", "umap", 2, ids, params={"n_neighbors": 5}).digest != base.digest
    assert MapKey.build("lib", "model", "umap", 3, ids).digest != base.digest
    assert MapKey.build("lib", "other", "umap", 2, ids).digest != base.digest
    assert MapKey.build("lib", "model", "umap", 2, ids, labels=["a"] * 10).digest == base.digest
    lda_a = MapKey.build("lib", "model", "lda", 2, ids, labels=["a", "b"] * 5)
    lda_b = MapKey.build("lib", "model", "lda", 2, ids, labels=["a", "b"] * 4 + ["b", "a"])
    assert lda_a.digest != lda_b.digest  # relabelling a clip changes an LDA map


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    X, labels = blobs()
    cache = MapCache(tmp_path)
    key = MapKey.build("demo", "dsp-mfcc", "pca", 2, _ids(len(X)))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError):
        cache.get_or_fit(key, X, labels)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert cache.get(key) is None


def test_a_corrupt_entry_is_a_miss(tmp_path):
    X, labels = blobs()
    cache = MapCache(tmp_path)
    key = MapKey.build("demo", "dsp-mfcc", "pca", 2, _ids(len(X)))
    cache.get_or_fit(key, X, labels)
    npz, meta = cache.paths(key)
    npz.write_bytes(b"not a zip")
    assert cache.get(key) is None
    meta.write_text("{", encoding="utf-8")
    assert cache.get(key) is None
    assert json.loads(json.dumps(key.as_dict()))["method"] == "pca"


# -- quality -----------------------------------------------------------------------


def test_quality_numbers_are_fractions_and_follow_the_labels():
    X, labels = blobs(n_classes=4, per_class=15)
    coords = make("pca", 2).fit_transform(X)
    quality = map_quality(X, coords, labels, k=5)
    for name in ("trustworthiness", "agreement_full", "agreement_map"):
        assert 0.0 <= quality[name] <= 1.0, name
    assert set(quality["agreement_full_per_class"]) == set(labels)
    assert quality["agreement_full"] > 0.95

    shuffled = list(np.random.default_rng(0).permutation(labels))
    worse = map_quality(X, coords, shuffled, k=5)
    assert worse["agreement_full"] < quality["agreement_full"] - 0.4
    assert worse["agreement_map"] < quality["agreement_map"] - 0.4
    assert worse["trustworthiness"] == quality["trustworthiness"]  # labels play no part
    assert map_quality(X, coords, None)["agreement_full"] is None


def test_agreement_leaves_unlabelled_points_out():
    X, labels = blobs(n_classes=2, per_class=10)
    partial = [lab if i % 2 else None for i, lab in enumerate(labels)]
    result = knn_label_agreement(X, partial, k=3)
    assert result.n_points == 10 and result.k == 3
    assert result.overall == 1.0
    assert set(result.per_class) == {"class0", "class1"}
    assert np.isnan(knn_label_agreement(X, [None] * 20).overall)


def test_knn_agreement_on_neighbour_indices():
    from projections.quality import knn_agreement, knn_agreement_per_class, sample_rows

    labels = ["a", "a", "b", "b", "a"]
    nbr = np.array([[1, 2], [0, -1], [3, 0], [2, 4], [-1, -1]])  # -1: no neighbour; row 4 has none
    assert knn_agreement(nbr, labels) == pytest.approx((0.5 + 1.0 + 0.5 + 0.5) / 4)
    assert knn_agreement_per_class(nbr, labels) == pytest.approx({"a": 0.75, "b": 0.5})
    rows = np.array([2, 4])  # neighbours of points 2 ("b": 3 "b", 0 "a") and 4 ("a": 0 "a", 3 "b") only
    assert knn_agreement(np.array([[3, 0], [0, 3]]), labels, rows) == pytest.approx(0.5)
    assert knn_agreement(np.array([[3, 0], [0, 1]]), labels, rows) == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(knn_agreement(np.full((3, 2), -1), labels[:3]))  # nothing to score: undefined, not 0
    assert np.isnan(knn_agreement(np.zeros((0, 2), np.int64), labels))
    assert knn_agreement_per_class(np.full((2, 1), -1), labels[:2]) == {}
    with pytest.raises(ProjectionError):
        knn_agreement(np.array([[7]]), labels[:2])
    # one sampler: all rows up to the limit, else a seeded sorted draw
    assert sample_rows(5, 10).tolist() == [0, 1, 2, 3, 4] and sample_rows(5, None).size == 5
    drawn = sample_rows(100, 10, seed=3)
    assert drawn.size == 10 and np.all(np.diff(drawn) > 0) and drawn.tolist() == sample_rows(100, 10, 3).tolist()


def test_map_agreement_equals_brute_force_with_one_sampling_policy(monkeypatch):
    from projections import quality

    X, labels = blobs(n_classes=3, per_class=40, spread=1.5)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    nbr = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    y = np.array(labels)
    frac = (y[nbr] == y[:, None]).mean(axis=1)
    assert knn_label_agreement(X, labels, k=5).overall == pytest.approx(frac.mean(), abs=1e-12)
    monkeypatch.setattr(quality, "AGREEMENT_SAMPLE", 50)  # above it: 50 rows drawn, as index.classes does
    rows = quality.sample_rows(len(labels), 50, 0)
    got = knn_label_agreement(X, labels, k=5)
    assert got.n_points == 50 and got.overall == pytest.approx(frac[rows].mean(), abs=1e-12)
    assert map_quality(X, X[:, :2], labels, k=5)["sampled"] is True


def test_trustworthiness_subsamples_big_sets_repeatably():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 8)).astype(np.float32)
    coords = X[:, :2]
    value = trustworthiness(X, coords, k=5, max_points=300, seed=1)
    assert 0.0 <= value <= 1.0
    assert value == trustworthiness(X, coords, k=5, max_points=300, seed=1)
    assert trustworthiness(X, X[:, :3], k=5, max_points=300) > value  # more of the space kept
