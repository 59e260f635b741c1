"""Exact nearest neighbours by brute force, in memory-bounded chunks.

Used to place new points into UMAP / t-SNE maps (neighbours of a frame among
the map's own vectors) and by the quality numbers. Query sets here are small
(a trajectory, a query, a few thousand sampled points), so exact search over
the reference set is fast and, unlike an approximate index, needs no state
that would have to be stored next to the map.
"""

from __future__ import annotations

import numpy as np

from .base import ProjectionError

#: Metrics accepted for the full (embedding) space.
METRICS = ("cosine", "euclidean", "manhattan", "correlation")

_CHUNK_BYTES = 64 * 2**20  # distance block per chunk


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
