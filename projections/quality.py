"""Quality numbers for a map: trustworthiness and kNN label agreement.

Both are computed on a random subsample of at most ``max_points`` points
(fixed seed, so the numbers are repeatable) to stay fast on big maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .base import ProjectionError, as_matrix, label_list
from .knn import ExactNeighbors, check_metric

MAX_POINTS = 3000


@dataclass
class LabelAgreement:
    """Fraction of each labelled point's k nearest labelled neighbours that
    share its label: averaged over points (``overall``) and per class."""

    overall: float  # in [0, 1]; NaN with fewer than 2 labelled points
    per_class: dict[str, float] = field(default_factory=dict)
    k: int = 0  # neighbours actually used
    n_points: int = 0  # labelled points that were scored


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def trustworthiness(
    X: Any,
    coords: Any,
    k: int = 10,
    *,
    metric: str = "cosine",
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> float:
    """scikit-learn's trustworthiness of the map ``coords`` [n, dims] of ``X``
    [n, d]: 1.0 when every point's k nearest map neighbours are also near it in
    the full space (``metric``), lower when the map invents neighbours.

    Computed on a random subsample of at most ``max_points`` points (seed
    ``seed``); ``k`` is lowered to (n-1)//2 for small sets as scikit-learn
    requires; NaN when fewer than 3 points.
    """
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    X = as_matrix(X)
    C = as_matrix(coords, "coordinates")
    if X.shape[0] != C.shape[0]:
        raise ProjectionError(f"{X.shape[0]} vectors but {C.shape[0]} map points")
    idx = _sample(X.shape[0], max_points, seed)
    kk = min(int(k), (idx.size - 1) // 2)
    if kk < 1:
        return math.nan
    value = sk_trustworthiness(X[idx], C[idx], n_neighbors=kk, metric=check_metric(metric))
    return float(min(1.0, max(0.0, value)))


def knn_label_agreement(
    points: Any,
    labels: Sequence[Any],
    k: int = 10,
    *,
    metric: str | None = None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> LabelAgreement:
    """kNN label agreement of labelled ``points`` (full-space vectors or map
    coordinates). Unlabelled points (None / "") are left out entirely:
    neighbours are searched among labelled points only, the point itself
    excluded. ``metric`` defaults to cosine for vectors and euclidean for map
    coordinates (3 or fewer columns). Scores at most ``max_points`` labelled
    points (random, seed ``seed``) against all labelled points.
    """
    P = as_matrix(points, "points")
    labs = label_list(labels, P.shape[0])
    if metric is None:
        metric = "euclidean" if P.shape[1] <= 3 else "cosine"
    keep = np.array([lab is not None for lab in labs], dtype=bool)
    n_lab = int(keep.sum())
    if n_lab < 2:
        return LabelAgreement(overall=math.nan, k=0, n_points=n_lab)
    y = np.array([lab for lab in labs if lab is not None], dtype=object)
    ref = P[keep]
    queries = _sample(n_lab, max_points, seed)
    kk = min(int(k), n_lab - 1)
    nbrs, _ = ExactNeighbors(ref, check_metric(metric)).query(ref[queries], kk, self_index=queries)
    frac = (y[nbrs] == y[queries][:, None]).mean(axis=1)
    per_class = {
        str(c): float(frac[y[queries] == c].mean()) for c in sorted(set(y[queries].tolist()))
    }
    return LabelAgreement(overall=float(frac.mean()), per_class=per_class, k=kk, n_points=int(queries.size))


def map_quality(
    X: Any,
    coords: Any,
    labels: Sequence[Any] | None = None,
    k: int = 10,
    *,
    metric: str = "cosine",
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> dict[str, Any]:
    """Quality numbers for a map, JSON-ready (None where a number does not apply):

    - ``trustworthiness``: see :func:`trustworthiness`;
    - ``agreement_full`` / ``agreement_map``: kNN label agreement in the full
      space (``metric``) and in the map (euclidean), with per-class values in
      ``agreement_full_per_class`` / ``agreement_map_per_class``; None without
      at least 2 labelled classes;
    - ``k``, ``n_points``, ``n_labelled``, ``sampled`` (True when subsampled).
    """
    X = as_matrix(X)
    C = as_matrix(coords, "coordinates")
    n = X.shape[0]
    labs = label_list(labels, n) if labels is not None else [None] * n
    classes = {lab for lab in labs if lab is not None}
    out: dict[str, Any] = {
        "k": int(k),
        "n_points": n,
        "n_labelled": sum(lab is not None for lab in labs),
        "sampled": n > max_points,
        "trustworthiness": _none_if_nan(trustworthiness(X, C, k, metric=metric, max_points=max_points, seed=seed)),
        "agreement_full": None,
        "agreement_map": None,
        "agreement_full_per_class": None,
        "agreement_map_per_class": None,
    }
    if len(classes) >= 2:
        full = knn_label_agreement(X, labs, k, metric=metric, max_points=max_points, seed=seed)
        mapped = knn_label_agreement(C, labs, k, metric="euclidean", max_points=max_points, seed=seed)
        out["agreement_full"] = _none_if_nan(full.overall)
        out["agreement_map"] = _none_if_nan(mapped.overall)
        out["agreement_full_per_class"] = full.per_class
        out["agreement_map_per_class"] = mapped.per_class
    return out


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
