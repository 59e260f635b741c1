"""Clusters of a library's full-dimensional vectors (never of a 2D map): HDBSCAN, optionally
after PCA, with each cluster's medoid; purity and adjusted Rand index against labels.

Arrays in, arrays out; cached on disk by `ClusterCache` like maps."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import ProjectionError, as_matrix, unit_rows

NOISE = -1


@dataclass
class Clustering:
    """HDBSCAN's answer for n points."""

    labels: np.ndarray          # [n] int, cluster index 0..k-1, NOISE (-1) for noise
    medoids: dict[int, int]     # cluster -> row index of its medoid (the member nearest its mean)
    probabilities: np.ndarray   # [n] float in [0, 1]: strength of membership
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        """Clusters found (noise not counted)."""
        return len(self.medoids)

    def members(self, cluster: int) -> np.ndarray:
        """Row indices of a cluster's members (NOISE: the noise points)."""
        return np.flatnonzero(self.labels == cluster)


def cluster(vectors: Any, min_cluster_size: int = 5, min_samples: int | None = None, pca_dims: int | None = 50,
            seed: int = 0) -> Clustering:
    """HDBSCAN (scikit-learn) on unit-normalised `vectors` [n, d] (Euclidean distance on unit
    vectors orders pairs as cosine does), reduced to `pca_dims` first when d is larger (None: no PCA)."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    X = unit_rows(as_matrix(vectors))
    n = X.shape[0]
    if min_cluster_size < 2:
        raise ProjectionError("min_cluster_size must be at least 2")
    if n < max(2, min_cluster_size):
        raise ProjectionError(f"{n} clips are too few for clusters of at least {min_cluster_size}")
    Z = X
    if pca_dims and X.shape[1] > pca_dims and n > pca_dims:
        Z = PCA(n_components=pca_dims, random_state=seed).fit_transform(X).astype(np.float32)
    hd = HDBSCAN(min_cluster_size=int(min_cluster_size), min_samples=None if min_samples is None else int(min_samples),
                 copy=True)
    labels = hd.fit_predict(Z).astype(np.int64)
    probs = np.asarray(getattr(hd, "probabilities_", np.ones(n)), np.float32)
    medoids = {}
    for c in sorted(set(labels.tolist()) - {NOISE}):
        idx = np.flatnonzero(labels == c)
        centre = unit_rows(X[idx].mean(axis=0))
        medoids[int(c)] = int(idx[np.argmax(X[idx] @ centre)])
    params = {"min_cluster_size": int(min_cluster_size), "min_samples": min_samples, "pca_dims": pca_dims,
              "seed": seed}
    return Clustering(labels, medoids, probs, params)


def agreement(labels: Sequence[Any], clusters: Any) -> dict[str, float]:
    """Purity (share of clustered labelled points whose cluster's majority label is theirs) and the
    adjusted Rand index, over labelled points that are not noise; NaN where undefined."""
    from sklearn.metrics import adjusted_rand_score

    clusters = np.asarray(clusters)
    keep = [i for i, lb in enumerate(labels) if lb not in (None, "") and clusters[i] != NOISE]
    if len(keep) < 2:
        return {"purity": float("nan"), "ari": float("nan"), "n": len(keep)}
    y = [str(labels[i]) for i in keep]
    c = clusters[keep]
    majority = 0
    for k in set(c.tolist()):
        members = [y[j] for j in np.flatnonzero(c == k)]
        majority += max(members.count(v) for v in set(members))
    return {"purity": majority / len(keep), "ari": float(adjusted_rand_score(y, c)), "n": len(keep)}


class ClusterCache:
    """Clusterings on disk (JSON + NPY, no pickles) keyed by (library, model, params, point set)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @staticmethod
    def key(library: str, model: str, ids: Sequence[str], params: dict[str, Any]) -> str:
        """A digest of what a clustering depends on."""
        h = hashlib.sha1()
        h.update(json.dumps([library, model, params], sort_keys=True, default=str).encode())
        for i in ids:
            h.update(i.encode())
            h.update(b"\0")
        return h.hexdigest()[:24]

    def _paths(self, library: str, key: str) -> tuple[Path, Path]:
        d = self.root / library
        return d / f"{key}.json", d / f"{key}.npz"

    def get(self, library: str, key: str) -> Clustering | None:
        """A cached clustering, or None."""
        meta_p, arr_p = self._paths(library, key)
        try:
            meta = json.loads(meta_p.read_text())
            with np.load(arr_p, allow_pickle=False) as z:
                return Clustering(z["labels"], {int(k): int(v) for k, v in meta["medoids"].items()}, z["probabilities"],
                                  meta["params"])
        except (OSError, ValueError, KeyError):
            return None

    def put(self, library: str, key: str, c: Clustering) -> None:
        """Store a clustering (written to temporary files, then renamed)."""
        meta_p, arr_p = self._paths(library, key)
        meta_p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=meta_p.parent, suffix=".npz")
        os.close(fd)
        np.savez(tmp, labels=c.labels, probabilities=c.probabilities)
        os.replace(tmp, arr_p)
        fd, tmp = tempfile.mkstemp(dir=meta_p.parent, suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"medoids": {str(k): v for k, v in c.medoids.items()}, "params": c.params}, f)
        os.replace(tmp, meta_p)

    def clear(self, library: str) -> None:
        """Forget a library's clusterings."""
        import shutil

        shutil.rmtree(self.root / library, ignore_errors=True)
