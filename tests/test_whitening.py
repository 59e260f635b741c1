"""Library-adapted vectors (projections/whitening.py): what a user of search notices."""
from __future__ import annotations

import numpy as np
import pytest

from projections.whitening import METHODS, Whitening, fit_whitening


def _library(n_per: int = 30, d: int = 64, seed: int = 0):
    """Two classes that differ along a weak direction, under a shared offset and two strong
    nuisance directions (level, recording chain) that raw cosine mostly sees."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, 3)))
    nuisance, signal = q[:, :2], q[:, 2]
    common = rng.normal(size=d)
    x, y = [], []
    for label in (0, 1):
        for _ in range(n_per):
            v = (common + nuisance @ (rng.normal(size=2) * 2.0) + (0.4 if label else -0.4) * signal
                 + 0.05 * rng.normal(size=d))
            x.append(v)
            y.append(label)
    return np.asarray(x), np.asarray(y)


def _p_at_5(x, y):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :5]
    return float((y[nn] == y[:, None]).mean())


@pytest.mark.parametrize("method", ["diag", "pca"])
def test_adapted_vectors_find_the_class_that_raw_cosine_misses(method):
    x, y = _library()
    w = fit_whitening(x, alpha=0.1, method=method)
    raw, adapted = _p_at_5(x, y), _p_at_5(w.apply(x), y)
    assert adapted > raw + 0.08, (raw, adapted)
    assert np.allclose(np.linalg.norm(w.apply(x), axis=1), 1.0, atol=1e-5)


def test_a_query_is_transformed_like_the_library_and_survives_saving():
    x, _ = _library()
    w = fit_whitening(x[:50], method="pca")
    again = Whitening.from_arrays(dict(np.load(_save(w))))
    q = x[55]  # a new upload, not in the fit
    assert np.allclose(again.apply(q), w.apply(q[None])[0], atol=1e-6)
    assert again.method == "pca" and again.n_fit == 50


def _save(w):
    import io

    buf = io.BytesIO()
    np.savez(buf, **w.to_arrays())
    buf.seek(0)
    return buf


def test_bad_input_is_a_clear_error_and_tiny_libraries_are_left_alone():
    with pytest.raises(ValueError, match="method"):
        fit_whitening(np.ones((10, 4)), method="zca")
    with pytest.raises(ValueError, match="finite"):
        fit_whitening(np.full((10, 4), np.nan))
    w = fit_whitening(np.eye(4)[:3])
    assert w.method == "identity" and np.allclose(w.apply(np.eye(4)[:3]), np.eye(4)[:3])
    with pytest.raises(ValueError, match="4-d"):
        fit_whitening(np.random.default_rng(0).normal(size=(20, 4))).apply(np.ones(5))
    assert set(METHODS) == {"diag", "pca", "center"}


def test_consensus_ranks_the_model_that_agrees_with_the_others_first():
    """Three views of the same clips: two that hear the classes, one that is noise; the
    unlabelled estimate puts the noise last."""
    from projections.consensus import consensus_scores, mutual_rate

    x, _ = _library(seed=3)
    rng = np.random.default_rng(9)
    good = fit_whitening(x, method="pca").apply(x)
    views = {"a": good, "b": good + 0.01 * rng.normal(size=good.shape), "noise": rng.normal(size=good.shape)}
    cons = consensus_scores(views)
    assert min(cons["a"], cons["b"]) > cons["noise"] + 0.1
    assert 0.0 <= mutual_rate(views["noise"]) <= 1.0  # a weak estimate: random vectors score high too
    with pytest.raises(ValueError, match="same clips"):
        consensus_scores({"a": good, "b": good[:10]})
