"""Quality numbers for a map: trustworthiness and kNN label agreement.

:func:`knn_agreement` (and :func:`knn_agreement_per_class`) is the project's one kNN label
agreement: it takes neighbour indices, however they were found (Qdrant's kNN graph or batched
queries in ``index.classes``, numpy brute force here for maps, held-out neighbours in training),
so every view reports the same statistic. One sampling policy: with more than
``AGREEMENT_SAMPLE`` labelled points, ``AGREEMENT_SAMPLE`` of them, drawn at random with a fixed
seed (:func:`sample_rows`), are scored against all labelled points. One empty-set convention:
NaN when no point has a neighbour (undefined, not 0); JSON reports carry None and the UI and CLI
print "n/a".

Trustworthiness is computed on a random subsample of at most ``max_points`` points (the same
sampler, fixed seed, so the numbers are repeatable) to stay fast on big maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .base import ProjectionError, as_matrix, label_list
from .knn import ExactNeighbors, check_metric

MAX_POINTS = 3000  # trustworthiness subsample
AGREEMENT_SAMPLE = 2000  # above this many labelled points, agreement is scored on this many


@dataclass
class LabelAgreement:
    """Fraction of each labelled point's k nearest labelled neighbours that
    share its label: averaged over points (``overall``) and per class."""

    overall: float  # in [0, 1]; NaN with fewer than 2 labelled points
    per_class: dict[str, float] = field(default_factory=dict)
    k: int = 0  # neighbours actually used
    n_points: int = 0  # labelled points that were scored


def sample_rows(n: int, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """Rows to score out of ``n``: all of them when ``n <= max_rows`` (or ``max_rows`` is None),
    else ``max_rows`` drawn at random without replacement (seed ``seed``), in increasing order."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_rows), replace=False))


def _agreement_fractions(
    neighbours: Any, labels: Sequence[Any], query_rows: Any | None
) -> tuple[list[Any], np.ndarray]:
    """(label of each scored query point, fraction of its neighbours sharing it); query points
    without any neighbour are left out."""
    nbr = np.asarray(neighbours, dtype=np.int64)
    if nbr.ndim != 2:
        raise ProjectionError(f"neighbour indices must be 2-d [m, k], got shape {nbr.shape}")
    labs = list(labels)
    rows = np.arange(nbr.shape[0]) if query_rows is None else np.asarray(query_rows, dtype=np.int64).reshape(-1)
    if rows.shape[0] != nbr.shape[0]:
        raise ProjectionError(f"{nbr.shape[0]} neighbour rows but {rows.shape[0]} query rows")
    if nbr.size and (nbr.max() >= len(labs) or nbr.min() < -1):
        raise ProjectionError(f"neighbour indices must be in [-1, {len(labs)}) (-1: no neighbour)")
    if rows.size and (rows.max() >= len(labs) or rows.min() < 0):
        raise ProjectionError(f"query rows must be in [0, {len(labs)})")
    codes_of: dict[Any, int] = {}
    codes = np.array([codes_of.setdefault(lab, len(codes_of)) for lab in labs], dtype=np.int64)
    valid = nbr >= 0
    counts = valid.sum(axis=1)
    same = (codes[np.where(valid, nbr, 0)] == codes[rows][:, None]) & valid
    scored = counts > 0
    fractions = same.sum(axis=1)[scored] / counts[scored]
    return [labs[i] for i in rows[scored]], fractions.astype(np.float64)


def knn_agreement(neighbours: Any, labels: Sequence[Any], query_rows: Any | None = None) -> float:
    """kNN label agreement: the mean, over query points, of the fraction of their neighbours
    that share their label.

    ``neighbours`` int [m, k]: row i holds indices into ``labels`` of the neighbours of point
    ``query_rows[i]`` (of point i when ``query_rows`` is None), the point itself not among them;
    -1 marks a missing neighbour (padding). ``labels`` [n]: one label per point (leave
    unlabelled points out before finding neighbours). Query points without any neighbour are
    left out; NaN when none is left (undefined).
    """
    _, fractions = _agreement_fractions(neighbours, labels, query_rows)
    return float(fractions.mean()) if fractions.size else math.nan


def knn_agreement_per_class(
    neighbours: Any, labels: Sequence[Any], query_rows: Any | None = None
) -> dict[Any, float]:
    """:func:`knn_agreement` within each class of the query points: {label: agreement}, sorted
    by label; a class none of whose query points has a neighbour is absent."""
    own, fractions = _agreement_fractions(neighbours, labels, query_rows)
    by_class: dict[Any, list[float]] = {}
    for lab, value in zip(own, fractions.tolist()):
        by_class.setdefault(lab, []).append(value)
    return {lab: float(np.mean(by_class[lab])) for lab in sorted(by_class)}


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
    idx = sample_rows(X.shape[0], max_points, seed)
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
    max_points: int | None = None,
    seed: int = 0,
) -> LabelAgreement:
    """kNN label agreement (:func:`knn_agreement`) of labelled ``points`` (full-space vectors
    or map coordinates), neighbours found exactly in numpy. Unlabelled points (None / "") are
    left out entirely: neighbours are searched among labelled points only, the point itself
    excluded. ``metric`` defaults to cosine for vectors and euclidean for map coordinates (3 or
    fewer columns). Scores at most ``max_points`` (default ``AGREEMENT_SAMPLE``) labelled points
    (random, seed ``seed``) against all labelled points.
    """
    P = as_matrix(points, "points")
    labs = label_list(labels, P.shape[0])
    if metric is None:
        metric = "euclidean" if P.shape[1] <= 3 else "cosine"
    keep = np.array([lab is not None for lab in labs], dtype=bool)
    n_lab = int(keep.sum())
    if n_lab < 2:
        return LabelAgreement(overall=math.nan, k=0, n_points=n_lab)
    y = [lab for lab in labs if lab is not None]
    ref = P[keep]
    queries = sample_rows(n_lab, AGREEMENT_SAMPLE if max_points is None else max_points, seed)
    kk = min(int(k), n_lab - 1)
    nbrs, _ = ExactNeighbors(ref, check_metric(metric)).query(ref[queries], kk, self_index=queries)
    return LabelAgreement(
        overall=knn_agreement(nbrs, y, queries),
        per_class={str(c): v for c, v in knn_agreement_per_class(nbrs, y, queries).items()},
        k=kk,
        n_points=int(queries.size),
    )


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
    - ``k``, ``n_points``, ``n_labelled``, ``sampled`` (True when either number was computed
      on a subsample: trustworthiness above ``max_points`` points, agreement above
      ``AGREEMENT_SAMPLE`` labelled points).
    """
    X = as_matrix(X)
    C = as_matrix(coords, "coordinates")
    n = X.shape[0]
    labs = label_list(labels, n) if labels is not None else [None] * n
    classes = {lab for lab in labs if lab is not None}
    n_labelled = sum(lab is not None for lab in labs)
    out: dict[str, Any] = {
        "k": int(k),
        "n_points": n,
        "n_labelled": n_labelled,
        "sampled": n > max_points or n_labelled > AGREEMENT_SAMPLE,
        "trustworthiness": _none_if_nan(trustworthiness(X, C, k, metric=metric, max_points=max_points, seed=seed)),
        "agreement_full": None,
        "agreement_map": None,
        "agreement_full_per_class": None,
        "agreement_map_per_class": None,
    }
    if len(classes) >= 2:
        full = knn_label_agreement(X, labs, k, metric=metric, seed=seed)
        mapped = knn_label_agreement(C, labs, k, metric="euclidean", seed=seed)
        out["agreement_full"] = _none_if_nan(full.overall)
        out["agreement_map"] = _none_if_nan(mapped.overall)
        out["agreement_full_per_class"] = full.per_class
        out["agreement_map_per_class"] = mapped.per_class
    return out


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
