"""UMAP (umap-learn) in 2D/3D, with placement of new points into a fitted map."""

from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings
from typing import Any

import numpy as np

from .base import ProjectionError, Projector, n_cores
from .knn import ExactNeighbors, check_metric, neighbor_graph

# umap-learn's own DISCONNECTION_DISTANCES for the metrics we accept
_DISCONNECTION = {"cosine": 2.0, "correlation": 2.0}

#: Defaults by size (see UMAPProjector): spectral initialisation up to
#: SPECTRAL_MAX points, PCA above; 100 epochs above FEW_EPOCHS_ABOVE points.
SPECTRAL_MAX = 20_000
FEW_EPOCHS_ABOVE = 50_000


class _SkipInThisThread(importlib.abc.MetaPathFinder):
    """Refuse some top-level imports, in one thread only, while umap is imported."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.thread = threading.get_ident()

    def find_spec(self, fullname, path, target=None):  # noqa: D401 - importlib hook
        if threading.get_ident() == self.thread and fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is not needed by projections")
        return None


def import_umap():
    """``umap.umap_`` without its optional ParametricUMAP, whose TensorFlow
    import costs ~10 s. The block applies to this thread only and only for
    the duration of the import, so TensorFlow stays importable elsewhere."""
    if "umap.umap_" in sys.modules:
        return sys.modules["umap.umap_"]
    finder = _SkipInThisThread(("tensorflow", "keras", "tf_keras"))
    sys.meta_path.insert(0, finder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap.umap_ as umap_
    finally:
        sys.meta_path.remove(finder)
    _cache_compiled(umap_)
    return umap_


def _cache_compiled(umap_) -> None:
    """Let numba cache (on disk) the umap-learn kernels it otherwise compiles
    afresh in every process: ~10 s saved on the first map of each session.
    Same functions and options, only ``cache=True`` added; on any problem
    umap-learn is left as it was."""
    try:
        import numba
        import umap.layouts as layouts

        for module, name in (
            (umap_, "smooth_knn_dist"),
            (umap_, "compute_membership_strengths"),
            (layouts, "_nb_optimize_layout_euclidean_single_epoch"),
        ):
            fn = getattr(module, name, None)
            if fn is None or not hasattr(fn, "py_func") or getattr(fn, "_projections_cached", False):
                continue
            options = {k: v for k, v in fn.targetoptions.items() if k != "nopython"}
            cached = numba.njit(cache=True, locals=dict(fn.locals), **options)(fn.py_func)
            cached._projections_cached = True
            setattr(module, name, cached)
    except Exception:  # pragma: no cover - an unexpected numba/umap version
        pass


class UMAPProjector(Projector):
    """Uniform Manifold Approximation and Projection (umap-learn).

    Parameters (all in ``params``):

    - ``n_neighbors`` (15): neighbourhood size; lowered to n-1 for tiny sets.
    - ``min_dist`` (0.1): how tightly points may pack, in [0, 1].
    - ``metric`` ("cosine"): distance in the full space (cosine, euclidean,
      manhattan, correlation).
    - ``seed`` (0): an int makes the map deterministic (umap then runs its
      layout single-threaded); None runs on every core and is not repeatable.
    - ``n_epochs`` (None = by size): umap-learn's default (500 up to 10k
      points, 200 above), but 100 above ``FEW_EPOCHS_ABOVE`` points: the
      seeded layout runs on one core and 200 epochs of 100k points take ~90 s
      there, with the same trustworthiness as 100 on our benchmark.
    - ``init`` ("auto"): "spectral" up to ``SPECTRAL_MAX`` points, "pca" above
      (spectral initialisation can be slow to converge on big graphs); or
      "spectral", "pca", "random".

    Vectors are used as float32 and umap runs with ``low_memory=True``. The
    neighbour graph is computed here (``knn.neighbor_graph``: exact up to
    8,192 points, Annoy above) and handed to umap-learn as ``precomputed_knn``.

    Placing new points (``transform``) follows umap-learn's own ``transform``
    step for step (fuzzy memberships to the k nearest map points, weighted
    initialisation, a short optimisation that moves only the new points) but
    finds the neighbours by exact search over the training vectors instead of
    umap's search index. So nothing but the map and the vectors is needed:
    the same placement works after a restart (see ``MapCache.projector``) and
    the map itself never moves.
    """

    method = "umap"
    defaults: dict[str, Any] = {
        "n_neighbors": 15,
        "min_dist": 0.1,
        "metric": "cosine",
        "seed": 0,
        "n_epochs": None,
        "init": "auto",
    }
    min_points = 5
    needs_training_vectors = True

    def _canonical(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            n_neighbors = int(p["n_neighbors"])
            min_dist = float(p["min_dist"])
            n_epochs = None if p["n_epochs"] in (None, "auto") else int(p["n_epochs"])
            seed = None if p["seed"] is None else int(p["seed"])
        except (TypeError, ValueError) as exc:
            raise ProjectionError(f"bad UMAP parameter: {exc}") from None
        if n_neighbors < 2:
            raise ProjectionError(f"UMAP n_neighbors must be at least 2 (got {n_neighbors})")
        if not 0.0 <= min_dist <= 1.0:
            raise ProjectionError(f"UMAP min_dist must be in [0, 1] (got {min_dist})")
        if n_epochs is not None and n_epochs < 1:
            raise ProjectionError(f"UMAP n_epochs must be at least 1 (got {n_epochs})")
        if p["init"] not in ("auto", "spectral", "pca", "random"):
            raise ProjectionError(f"UMAP init must be auto, spectral, pca or random (got {p['init']!r})")
        return {
            "n_neighbors": n_neighbors,
            "min_dist": min_dist,
            "metric": check_metric(p["metric"]),
            "seed": seed,
            "n_epochs": n_epochs,
            "init": p["init"],
        }

    # effective settings for n points
    def fit_settings(self, n: int) -> dict[str, Any]:
        """The settings umap-learn actually gets for ``n`` points."""
        p = self._params
        n_epochs = p["n_epochs"]
        if n_epochs is None:
            n_epochs = 500 if n <= 10_000 else 200 if n <= FEW_EPOCHS_ABOVE else 100
        init = p["init"]
        if init == "auto":
            init = "spectral" if n <= SPECTRAL_MAX else "pca"
        return {"n_neighbors": min(p["n_neighbors"], n - 1), "n_epochs": n_epochs, "init": init}

    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        umap_ = import_umap()
        p = self._params
        eff = self.fit_settings(X.shape[0])
        knn_indices, knn_dists = self._fit_neighbors(X, eff["n_neighbors"])
        model = umap_.UMAP(
            n_components=self.dims,
            n_neighbors=eff["n_neighbors"],
            min_dist=p["min_dist"],
            metric=p["metric"],
            n_epochs=eff["n_epochs"],
            init=eff["init"],
            random_state=p["seed"],
            transform_seed=42 if p["seed"] is None else p["seed"],
            low_memory=True,
            n_jobs=1 if p["seed"] is not None else n_cores(),
            verbose=False,
            tqdm_kwds={"disable": True},
            precomputed_knn=(knn_indices, knn_dists, None),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "transform unavailable" (we place points ourselves), n_jobs notes
            emb = model.fit_transform(X)
        if not np.isfinite(emb).all():
            raise ProjectionError("UMAP produced NaN coordinates (duplicate or degenerate vectors?): try PCA")
        self.embedding_ = emb
        self.a_, self.b_ = float(model._a), float(model._b)
        self._X_fit = X  # kept (by reference) only to place new points; never stored
        self._knn: ExactNeighbors | None = None

    def _fit_neighbors(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-neighbour graph (each point first among its own neighbours)."""
        p = self._params
        indices, dists = neighbor_graph(X, k, p["metric"], include_self=True, seed=p["seed"], n_jobs=n_cores())
        return indices.astype(np.int32), dists.astype(np.float32)

    # -- placing new points ---------------------------------------------
    def _transform(self, X_new: np.ndarray) -> np.ndarray:
        """umap-learn's UMAP.transform, with exact neighbours among the training vectors."""
        umap_ = import_umap()
        from scipy.sparse import coo_matrix
        from umap.layouts import optimize_layout_euclidean

        p = self._params
        n_fit = self.embedding_.shape[0]
        k = min(p["n_neighbors"], n_fit - 1)
        if self._knn is None:
            self._knn = ExactNeighbors(self._X_fit, p["metric"])
        indices, dists = self._knn.query(X_new, k)
        indices = indices.astype(np.int32)
        nearest = indices[:, 0].copy()
        dists = np.ascontiguousarray(dists, dtype=np.float32)
        indices[dists >= _DISCONNECTION.get(p["metric"], np.inf)] = -1

        sigmas, rhos = umap_.smooth_knn_dist(dists, float(k), local_connectivity=0.0)
        rows, cols, vals, _ = umap_.compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=True)
        m = X_new.shape[0]
        graph = coo_matrix((vals, (rows, cols)), shape=(m, n_fit))
        csr = graph.tocsr()
        csr.eliminate_zeros()
        reference = np.array(self.embedding_, dtype=np.float32)  # a writable copy: the map never moves
        init = umap_.init_graph_transform(csr, reference)
        lost = ~np.isfinite(init).all(axis=1)
        if lost.any():  # no neighbour within reach: start on the nearest map point
            init[lost] = reference[nearest[lost]]
        if graph.nnz == 0:
            return init

        if p["n_epochs"] is None:
            n_epochs = 100 if m <= 10_000 else 30
        else:
            n_epochs = max(1, int(p["n_epochs"] // 3))
        graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
        graph.eliminate_zeros()
        epochs_per_sample = umap_.make_epochs_per_sample(graph.data, n_epochs)
        seed = 42 if p["seed"] is None else p["seed"]
        rng_state = np.random.RandomState(seed).randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = optimize_layout_euclidean(
                init,
                reference,
                graph.row,
                graph.col,
                n_epochs,
                n_fit,
                epochs_per_sample,
                self.a_,
                self.b_,
                rng_state.astype(np.int64),
                1.0,  # repulsion_strength
                1.0 / 4.0,  # umap's transform: learning_rate / 4
                5.0,  # negative_sample_rate
                p["seed"] is None,  # parallel only when not seeded
                verbose=False,
                tqdm_kwds={"disable": True},
            )
        return out

    def get_state(self) -> dict[str, np.ndarray]:
        return {"ab": np.array([self.a_, self.b_], dtype=np.float64)}

    def _set_state(self, state: dict[str, np.ndarray], X: np.ndarray | None) -> None:
        self.a_, self.b_ = (float(v) for v in state["ab"])
        self._X_fit = X
        self._knn = None
