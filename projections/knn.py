"""Nearest neighbours: exact by brute force, and the neighbour graph of a
whole point set (exact for small sets, Annoy above).

Exact search places new points into UMAP / t-SNE maps (neighbours of a frame
among the map's own vectors) and serves the quality numbers: query sets there
are small (a trajectory, a query, a few thousand sampled points), so it is
fast and, unlike an approximate index, needs no state stored next to the map.

The graph of a big set uses Annoy (the copy bundled with openTSNE, a compiled
C++ library): pynndescent, umap-learn's own choice, is numba code that is
compiled afresh in every process, ~25 CPU-seconds before the first map.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .base import ProjectionError

#: Metrics accepted for the full (embedding) space.
METRICS = ("cosine", "euclidean", "manhattan", "correlation")

_CHUNK_BYTES = 64 * 2**20  # distance block per chunk

#: Up to this many points the neighbour graph is exact (brute force with
#: BLAS, ~1 s at this size); above, approximate with Annoy.
EXACT_GRAPH_MAX = 8192


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ProjectionError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
    return metric


class ExactNeighbors:
    """k nearest reference points of query points under ``metric``.

    Distances follow umap-learn / pynndescent conventions: cosine and
    correlation give ``1 - similarity`` (a zero vector is at distance 1 from
    everything), euclidean and manhattan the plain distance.
    """

    def __init__(self, ref: np.ndarray, metric: str = "cosine") -> None:
        self.metric = check_metric(metric)
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.n = self.ref.shape[0]
        ref64 = self.ref.astype(np.float64, copy=False)
        if metric == "cosine":
            self._ref_scale = _inverse(np.linalg.norm(ref64, axis=1))
        elif metric == "correlation":
            centred_norm = np.sqrt(np.maximum((ref64**2).sum(1) - ref64.sum(1) ** 2 / ref.shape[1], 0.0))
            self._ref_scale = _inverse(centred_norm)
        elif metric == "euclidean":
            self._ref_sq = (ref64**2).sum(1).astype(np.float32)

    def query(
        self, Q: np.ndarray, k: int, self_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices [m, k] (int64) and distances [m, k] (float32) of the k nearest
        reference points of each row of ``Q``, nearest first. ``self_index``
        [m] names a reference row to leave out for each query (its own point)."""
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        m = Q.shape[0]
        extra = 0 if self_index is None else 1
        kk = min(k + extra, self.n)
        idx = np.empty((m, kk), dtype=np.int64)
        dist = np.empty((m, kk), dtype=np.float64)
        rows = max(1, _CHUNK_BYTES // (4 * max(self.n, 1)))
        for start in range(0, m, rows):
            block = self._distances(Q[start : start + rows])
            if self_index is not None:
                own = np.asarray(self_index[start : start + rows])
                block[np.arange(block.shape[0]), own] = np.inf
            part = np.argpartition(block, kk - 1, axis=1)[:, :kk] if kk < self.n else np.tile(
                np.arange(self.n), (block.shape[0], 1)
            )
            exact = self._exact(Q[start : start + rows], part)
            if self_index is not None:
                exact[part == own[:, None]] = np.inf
            order = np.lexsort((part, exact), axis=1)  # by distance, ties by index
            idx[start : start + rows] = np.take_along_axis(part, order, axis=1)
            dist[start : start + rows] = np.take_along_axis(exact, order, axis=1)
        kk_out = min(k, self.n - extra)
        return idx[:, :kk_out], dist[:, :kk_out].astype(np.float32)

    # full distance block, float32, used for ranking only
    def _distances(self, Qc: np.ndarray) -> np.ndarray:
        if self.metric in ("cosine", "correlation"):
            q = Qc.astype(np.float64)
            if self.metric == "correlation":
                q = q - q.mean(1, keepdims=True)
            qs = _inverse(np.linalg.norm(q, axis=1)).astype(np.float32)
            sim = (q.astype(np.float32) @ self.ref.T) * qs[:, None] * self._ref_scale.astype(np.float32)[None, :]
            return 1.0 - sim
        if self.metric == "euclidean":
            d2 = (Qc**2).sum(1)[:, None] + self._ref_sq[None, :] - 2.0 * (Qc @ self.ref.T)
            return np.maximum(d2, 0.0)
        from sklearn.metrics import pairwise_distances  # manhattan

        return pairwise_distances(Qc, self.ref, metric=self.metric).astype(np.float32)

    # exact float64 distances to the selected candidates
    def _exact(self, Qc: np.ndarray, cand: np.ndarray) -> np.ndarray:
        q = Qc.astype(np.float64)[:, None, :]
        r = self.ref[cand].astype(np.float64)  # [m, kk, d]
        if self.metric == "euclidean":
            return np.sqrt(((r - q) ** 2).sum(-1))
        if self.metric == "manhattan":
            return np.abs(r - q).sum(-1)
        if self.metric == "correlation":
            q = q - q.mean(-1, keepdims=True)
            r = r - r.mean(-1, keepdims=True)
        num = (q * r).sum(-1)
        den = np.linalg.norm(q, axis=-1) * np.linalg.norm(r, axis=-1)
        sim = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return np.maximum(1.0 - sim, 0.0)


def _inverse(norms: np.ndarray) -> np.ndarray:
    out = np.zeros_like(norms, dtype=np.float64)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


def neighbor_graph(
    X: np.ndarray,
    k: int,
    metric: str = "cosine",
    *,
    include_self: bool = True,
    seed: int | None = 0,
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every row of ``X`` among the rows of ``X``:
    indices [n, k] int64 and distances [n, k] float32 (``metric``'s distance,
    as ExactNeighbors gives it), nearest first. With ``include_self`` each
    point is normally its own first neighbour (as umap-learn expects); without
    it the point is left out (as openTSNE expects).

    Exact up to ``EXACT_GRAPH_MAX`` points; above, Annoy with umap-learn's
    tree count (5 + sqrt(n)/20, at most 64), built single-threaded with a fixed
    seed so the graph is repeatable, queried on ``n_jobs`` threads.
    """
    check_metric(metric)
    n = X.shape[0]
    k = max(1, min(k, n if include_self else n - 1))
    if n <= EXACT_GRAPH_MAX:
        search = ExactNeighbors(X, metric)
        return search.query(X, k) if include_self else search.query(X, k, self_index=np.arange(n))
    return _annoy_graph(X, k, metric, include_self, seed, n_jobs)


def _annoy_graph(X, k, metric, include_self, seed, n_jobs):
    try:
        from openTSNE.dependencies.annoy import AnnoyIndex
    except ImportError:  # pragma: no cover - openTSNE without its bundled Annoy
        from annoy import AnnoyIndex

    n, d = X.shape
    data = X
    if metric == "correlation":
        data = X - X.mean(axis=1, keepdims=True)
    annoy_metric = {"cosine": "angular", "correlation": "angular"}.get(metric, metric)
    index = AnnoyIndex(d, annoy_metric)
    index.set_seed(int(seed) if seed is not None else int(np.random.default_rng().integers(2**31 - 1)))
    for i in range(n):
        index.add_item(i, data[i])
    index.build(min(64, 5 + int(round(n**0.5 / 20.0))), n_jobs=1)

    want = k + (0 if include_self else 1)
    indices = np.full((n, k), -1, dtype=np.int64)
    dists = np.zeros((n, k), dtype=np.float64)

    def query(rows: range) -> None:
        for i in rows:
            got, dist = index.get_nns_by_item(i, want, include_distances=True)
            if not include_self:
                keep = [j for j, item in enumerate(got) if item != i][:k]
                got, dist = [got[j] for j in keep], [dist[j] for j in keep]
            m = min(k, len(got))
            indices[i, :m] = got[:m]
            dists[i, :m] = dist[:m]

    step = 4096
    chunks = [range(s, min(n, s + step)) for s in range(0, n, step)]
    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        list(pool.map(query, chunks))

    if annoy_metric == "angular":  # Annoy's angular distance is sqrt(2 (1 - cos))
        dists = dists**2 / 2.0
    short = np.flatnonzero((indices < 0).any(axis=1))
    if short.size:  # Annoy found too few candidates: search those rows exactly
        search = ExactNeighbors(X, metric)
        fix_i, fix_d = search.query(X[short], k, self_index=None if include_self else short)
        indices[short], dists[short] = fix_i, fix_d
    return indices, dists.astype(np.float32)


#: Annoy settings for placing many points among a fitted sample (``AnnoyNeighbors``): on 20k
#: clustered 200-d vectors 32 trees and search_k 1,000 found 0.99 of the exact 15 neighbours at
#: ~4x the exact search's rate (5,500 against ~1,300 queries/s, load ~8).
PLACE_TREES = 32
PLACE_SEARCH_K = 1000


class AnnoyNeighbors:
    """Approximate k nearest reference points of many query points (Annoy, the copy bundled
    with openTSNE), with ExactNeighbors' distance conventions: for placing a whole library
    into a map fitted on a sample of it, where exact search would cost a full distance
    matrix. Built single-threaded with a fixed seed, so the same reference and queries give
    the same neighbours."""

    def __init__(self, ref: np.ndarray, metric: str = "cosine", *, n_trees: int = PLACE_TREES,
                 search_k: int = PLACE_SEARCH_K, seed: int | None = 0) -> None:
        try:
            from openTSNE.dependencies.annoy import AnnoyIndex
        except ImportError:  # pragma: no cover - openTSNE without its bundled Annoy
            from annoy import AnnoyIndex

        self.metric = check_metric(metric)
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.n, d = self.ref.shape
        self.search_k = int(search_k)
        data = self.ref - self.ref.mean(axis=1, keepdims=True) if metric == "correlation" else self.ref
        self._annoy_metric = {"cosine": "angular", "correlation": "angular"}.get(metric, metric)
        self._index = AnnoyIndex(d, self._annoy_metric)
        self._index.set_seed(0 if seed is None else int(seed))
        for i in range(self.n):
            self._index.add_item(i, data[i])
        self._index.build(int(n_trees), n_jobs=1)
        self._exact: ExactNeighbors | None = None

    def query(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices [m, k] (int64) and distances [m, k] (float32), nearest first; rows for
        which Annoy finds fewer than k candidates are searched exactly."""
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        data = Q - Q.mean(axis=1, keepdims=True) if self.metric == "correlation" else Q
        k = max(1, min(int(k), self.n))
        m = Q.shape[0]
        indices = np.full((m, k), -1, dtype=np.int64)
        dists = np.zeros((m, k), dtype=np.float64)
        for i in range(m):
            got, dist = self._index.get_nns_by_vector(data[i], k, search_k=self.search_k, include_distances=True)
            j = min(k, len(got))
            indices[i, :j] = got[:j]
            dists[i, :j] = dist[:j]
        if self._annoy_metric == "angular":  # Annoy's angular distance is sqrt(2 (1 - cos))
            dists = dists**2 / 2.0
        short = np.flatnonzero((indices < 0).any(axis=1))
        if short.size:
            if self._exact is None:
                self._exact = ExactNeighbors(self.ref, self.metric)
            indices[short], dists[short] = self._exact.query(Q[short], k)
        return indices, dists.astype(np.float32)
