"""t-SNE (openTSNE) in 2D/3D, with placement of new points into a fitted map."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from .base import ProjectionError, Projector, n_cores, unit_rows
from .knn import ExactNeighbors, check_metric, neighbor_graph

#: FFT gradients have a fixed cost per iteration (the interpolation grid) that
#: makes them slower than Barnes-Hut on small sets (openTSNE's own "auto" rule).
FFT_MIN_POINTS = 10_000
#: Barnes-Hut in 3D is slow (~2 CPU-minutes for 10k points): refuse more than this.
MAX_POINTS_3D = 20_000
#: Below this many points one thread is faster: openTSNE's per-iteration thread
#: synchronisation costs more than it saves, badly so on a busy machine.
THREADS_MIN_POINTS = 10_000

# metrics turned into euclidean distances between unit vectors (see _unit_rows)
_ANGULAR = ("cosine", "correlation")


def _unit_rows(X: np.ndarray, metric: str) -> np.ndarray:
    """Rows scaled to unit length (centred first for correlation): euclidean
    distance between them is sqrt(2 * (1 - similarity)), a monotone function
    of the cosine / correlation distance that openTSNE's neighbour search
    (Annoy's "angular" or exact) handles natively."""
    if metric == "correlation":
        X = X - X.mean(axis=1, keepdims=True)
    return unit_rows(X)


def _threads(n: int) -> int:
    return n_cores() if n >= THREADS_MIN_POINTS else 1


class _Index:
    """Just enough of openTSNE's KNNIndex for Affinities.n_samples."""

    def __init__(self, n_samples: int) -> None:
        self.n_samples = n_samples


def _placement_affinities(X_ref: np.ndarray, metric: str, n_jobs: int):
    """An openTSNE Affinities object for placing new points: affinities from
    each new point to its exact nearest reference vectors (no approximate
    index to store; the same numbers in-session and after a restart)."""
    import scipy.sparse as sp
    from openTSNE.affinity import Affinities, joint_probabilities_nn

    class PlacementAffinities(Affinities):
        def __init__(self) -> None:
            super().__init__(verbose=False)
            n = X_ref.shape[0]
            self.knn_index = _Index(n)
            self.P = sp.csr_matrix((n, n))  # only its shape is looked at
            self.perplexity = 5.0
            self.n_jobs = n_jobs
            self._search = ExactNeighbors(X_ref, metric)

        def to_new(self, data, perplexity=5.0, return_distances=False, k_neighbors="auto"):
            n = self.knn_index.n_samples
            k = min(n, int(3 * perplexity)) if k_neighbors == "auto" else int(k_neighbors)
            k = max(1, k)
            perplexity = k / 3.0 if perplexity > k else float(perplexity)  # as openTSNE does
            neighbors, distances = self._search.query(data, k)
            distances = distances.astype(np.float64)
            if metric in _ANGULAR:
                distances = np.sqrt(2.0 * distances)
            P = joint_probabilities_nn(
                neighbors,
                distances,
                [perplexity],
                symmetrize=False,
                normalization="point-wise",
                n_reference_samples=n,
                n_jobs=self.n_jobs,
            )
            if return_distances:
                return P, neighbors, distances
            return P

    return PlacementAffinities()


class TSNEProjector(Projector):
    """t-SNE with openTSNE.

    Parameters (all in ``params``):

    - ``perplexity`` (30): effective neighbourhood size; lowered to (n-1)/3
      for small sets.
    - ``metric`` ("cosine"): cosine, euclidean, manhattan or correlation.
      Cosine/correlation are computed as euclidean distance between unit
      (centred) rows, which orders neighbours exactly as the metric does.
    - ``seed`` (0): int for a repeatable map (PCA initialisation, Annoy seed);
      None for a random one.
    - ``n_iter`` (500): iterations after the 250 early-exaggeration ones.

    Neighbours (3 x perplexity of them): ``knn.neighbor_graph``, exact up to
    8,192 points, Annoy (approximate, seeded, single-threaded build) above;
    openTSNE computes the affinities from them. Gradients:
    FFT-accelerated interpolation in 2D from ``FFT_MIN_POINTS`` points on
    (below that Barnes-Hut is faster); openTSNE's FFT exists only for 1D/2D,
    so 3D always uses Barnes-Hut (theta 0.5), markedly slower on big sets:
    t-SNE in 3D refuses more than ``MAX_POINTS_3D`` points with a clear error.
    Threads: every core this process may use from ``THREADS_MIN_POINTS``
    points on, one below.

    Placing new points uses openTSNE's ``TSNEEmbedding.transform`` (each new
    point optimised against the fixed map, perplexity 5) with affinities from
    exact neighbours among the training vectors, on a private copy of the map:
    ``embedding_`` never moves.
    """

    method = "tsne"
    defaults: dict[str, Any] = {"perplexity": 30.0, "metric": "cosine", "seed": 0, "n_iter": 500}
    min_points = 5
    needs_training_vectors = True

    def _canonical(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            perplexity = float(p["perplexity"])
            n_iter = int(p["n_iter"])
            seed = None if p["seed"] is None else int(p["seed"])
        except (TypeError, ValueError) as exc:
            raise ProjectionError(f"bad t-SNE parameter: {exc}") from None
        if not perplexity > 0:
            raise ProjectionError(f"t-SNE perplexity must be positive (got {perplexity})")
        if n_iter < 1:
            raise ProjectionError(f"t-SNE n_iter must be at least 1 (got {n_iter})")
        return {"perplexity": perplexity, "metric": check_metric(p["metric"]), "seed": seed, "n_iter": n_iter}

    def _check_enough(self, X: np.ndarray) -> None:
        super()._check_enough(X)
        if self.dims == 3 and X.shape[0] > MAX_POINTS_3D:
            raise ProjectionError(
                f"t-SNE in 3D is limited to {MAX_POINTS_3D:,} points (got {X.shape[0]:,}; its Barnes-Hut "
                f"gradients are too slow beyond): use t-SNE in 2D or UMAP in 3D"
            )

    def gradient_method(self, n: int) -> str:
        """"fft" in 2D from ``FFT_MIN_POINTS`` points on, "bh" (Barnes-Hut) otherwise."""
        return "fft" if self.dims == 2 and n >= FFT_MIN_POINTS else "bh"

    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        from openTSNE import TSNE
        from openTSNE.affinity import PerplexityBasedNN
        from openTSNE.nearest_neighbors import PrecomputedNeighbors

        p = self._params
        n = X.shape[0]
        metric = p["metric"]
        perplexity = min(p["perplexity"], (n - 1) / 3.0)
        k = max(1, min(n - 1, int(3 * perplexity)))
        indices, dists = neighbor_graph(X, k, metric, include_self=False, seed=p["seed"], n_jobs=n_cores())
        dists = dists.astype(np.float64)
        if metric in _ANGULAR:
            dists = np.sqrt(2.0 * dists)
        tsne = TSNE(
            n_components=self.dims,
            perplexity=perplexity,
            n_iter=p["n_iter"],
            negative_gradient_method=self.gradient_method(n),
            n_jobs=_threads(n),
            random_state=p["seed"],
            verbose=False,
        )
        quiet = logging.getLogger("openTSNE")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                affinities = PerplexityBasedNN(
                    perplexity=perplexity,
                    knn_index=PrecomputedNeighbors(indices, dists),
                    n_jobs=_threads(n),
                )
                data = _unit_rows(X, metric) if metric in _ANGULAR else X  # for the PCA initialisation
                emb = np.asarray(tsne.fit(data, affinities=affinities), dtype=np.float64)
        finally:
            quiet.setLevel(level)
        if not np.isfinite(emb).all():
            raise ProjectionError("t-SNE produced NaN coordinates (duplicate or degenerate vectors?): try PCA")
        self.embedding_ = emb
        self.effective_perplexity_ = perplexity
        self._X_fit = X  # kept (by reference) only to place new points; never stored
        self._reference = None

    def _transform(self, X_new: np.ndarray) -> np.ndarray:
        from openTSNE import TSNEEmbedding

        if self._reference is None:
            emb = self.embedding_.astype(np.float64)
            shift = (emb.max(axis=0) + emb.min(axis=0)) / 2  # openTSNE centres the map it places into
            n = emb.shape[0]
            self._reference = TSNEEmbedding(
                emb - shift,
                _placement_affinities(self._X_fit, self._params["metric"], _threads(n)),
                negative_gradient_method=self.gradient_method(n),
                n_jobs=_threads(n),
                random_state=self._params["seed"],
            )
            self._shift = shift
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            placed = self._reference.transform(X_new)
        return np.asarray(placed, dtype=np.float64) + self._shift

    def get_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_state(self, state: dict[str, np.ndarray], X: np.ndarray | None) -> None:
        self._X_fit = X
        self._reference = None
