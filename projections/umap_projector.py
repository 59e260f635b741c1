"""UMAP (umap-learn) in 2D/3D, with placement of new points into a fitted map."""

from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings
from typing import Any

import numpy as np

from .base import ProjectionError, Projector, n_cores
from .knn import AnnoyNeighbors, ExactNeighbors, check_metric, neighbor_graph

# umap-learn's own DISCONNECTION_DISTANCES for the metrics we accept
_DISCONNECTION = {"cosine": 2.0, "correlation": 2.0}

#: Defaults by size (see UMAPProjector): spectral initialisation up to
#: SPECTRAL_MAX points, PCA above; 100 epochs above FEW_EPOCHS_ABOVE points.
SPECTRAL_MAX = 20_000
FEW_EPOCHS_ABOVE = 50_000
#: A fit on a sample (``fit_sample``) places the other points in chunks of this many (progress
#: is reported after each).
PLACE_CHUNK = 20_000


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
    - ``fit_sample`` (None = every point): with an int s and more than s points,
      umap-learn is fitted on s rows drawn at random (seeded by ``seed``, 0 when
      None; ``sample_rows_``) and every other row is placed into that map with
      the same placement as ``transform`` (neighbours found with Annoy among the
      sample, chunks of ``PLACE_CHUNK``, ``progress`` called after each);
      ``embedding_`` still has one row per input point, the sample's rows
      keeping their fitted coordinates. Left out of ``params`` when None, so
      the keys of full-fit maps do not change.

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
        "fit_sample": None,
    }
    min_points = 5
    needs_training_vectors = True
    sample_rows_: np.ndarray | None = None  # rows umap-learn was fitted on (None: every row)

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
        out = {
            "n_neighbors": n_neighbors,
            "min_dist": min_dist,
            "metric": check_metric(p["metric"]),
            "seed": seed,
            "n_epochs": n_epochs,
            "init": p["init"],
        }
        if p.get("fit_sample") is not None:
            try:
                fit_sample = int(p["fit_sample"])
            except (TypeError, ValueError) as exc:
                raise ProjectionError(f"bad UMAP parameter: {exc}") from None
            if fit_sample < max(self.min_points, n_neighbors + 1):
                raise ProjectionError(f"UMAP fit_sample must be at least {max(self.min_points, n_neighbors + 1)} "
                                      f"(n_neighbors + 1; got {fit_sample})")
            out["fit_sample"] = fit_sample
        return out

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

    def sample_for(self, n: int) -> np.ndarray | None:
        """The rows a map of ``n`` points is fitted on (None: every row)."""
        s = self._params.get("fit_sample")
        if s is None or n <= s:
            return None
        seed = self._params["seed"]
        return np.sort(np.random.default_rng(0 if seed is None else seed).choice(n, size=s, replace=False))

    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        rows = self.sample_for(X.shape[0])
        if rows is None:
            self._fit_umap(X)
            self.sample_rows_ = None
            return
        self._fit_umap(np.ascontiguousarray(X[rows]))
        fitted = self.embedding_
        emb = np.empty((X.shape[0], self.dims), dtype=np.float32)
        emb[rows] = fitted
        rest = np.setdiff1d(np.arange(X.shape[0]), rows)
        search = AnnoyNeighbors(self._X_fit, self._params["metric"], seed=self._params["seed"])
        k = min(self._params["n_neighbors"], rows.size - 1)
        n_epochs = self._place_epochs(rest.size)
        progress = self.progress
        if progress is not None:
            progress(0, rest.size, f"UMAP fitted on {rows.size:,} points; placing the other {rest.size:,}")
        for start in range(0, rest.size, PLACE_CHUNK):
            chunk = rest[start : start + PLACE_CHUNK]
            indices, dists = search.query(X[chunk], k)
            emb[chunk] = self._place(X[chunk], fitted, indices, dists, n_epochs, seed_offset=start)
            if progress is not None:
                done = min(rest.size, start + PLACE_CHUNK)
                progress(done, rest.size, f"placed {done:,} of {rest.size:,} points with transform")
        if not np.isfinite(emb).all():
            raise ProjectionError("UMAP placed points at NaN coordinates (duplicate or degenerate vectors?): try PCA")
        self.embedding_ = emb
        self.sample_rows_ = rows

    def _fit_umap(self, X: np.ndarray) -> None:
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
    def _reference(self) -> np.ndarray:
        """The map coordinates of the vectors umap-learn was fitted on (all, or the sample's)."""
        emb = self.embedding_ if self.sample_rows_ is None else self.embedding_[self.sample_rows_]
        return np.array(emb, dtype=np.float32)  # a writable copy: the map never moves

    def _place_epochs(self, m: int) -> int:
        """Epochs of the placement of m points (umap-learn's transform: 100 up to 10k, 30 above)."""
        n_epochs = self._params["n_epochs"]
        if n_epochs is None:
            return 100 if m <= 10_000 else 30
        return max(1, int(n_epochs // 3))

    def _transform(self, X_new: np.ndarray) -> np.ndarray:
        """umap-learn's UMAP.transform, with exact neighbours among the training vectors."""
        reference = self._reference()
        k = min(self._params["n_neighbors"], reference.shape[0] - 1)
        if self._knn is None:
            self._knn = ExactNeighbors(self._X_fit, self._params["metric"])
        indices, dists = self._knn.query(X_new, k)
        return self._place(X_new, reference, indices, dists, self._place_epochs(X_new.shape[0]))

    def _place(self, X_new: np.ndarray, reference: np.ndarray, indices: np.ndarray, dists: np.ndarray,
               n_epochs: int, seed_offset: int = 0) -> np.ndarray:
        """umap-learn's UMAP.transform from given neighbours (indices into ``reference``, the
        fitted points' coordinates): fuzzy memberships, weighted initialisation, a short
        optimisation that moves only the new points."""
        umap_ = import_umap()
        from scipy.sparse import coo_matrix
        from umap.layouts import optimize_layout_euclidean

        p = self._params
        n_fit = reference.shape[0]
        k = indices.shape[1]
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
        init = _init_graph_transform(csr, reference)
        lost = ~np.isfinite(init).all(axis=1)
        if lost.any():  # no neighbour within reach: start on the nearest map point
            init[lost] = reference[nearest[lost]]
        if graph.nnz == 0:
            return init

        graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
        graph.eliminate_zeros()
        epochs_per_sample = umap_.make_epochs_per_sample(graph.data, n_epochs)
        seed = (42 if p["seed"] is None else p["seed"]) + seed_offset
        rng_state = np.random.RandomState(seed % 2**32).randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3)
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
        state = {"ab": np.array([self.a_, self.b_], dtype=np.float64)}
        if self.sample_rows_ is not None:
            state["sample_rows"] = np.asarray(self.sample_rows_, dtype=np.int64)
        return state

    def _set_state(self, state: dict[str, np.ndarray], X: np.ndarray | None) -> None:
        self.a_, self.b_ = (float(v) for v in state["ab"])
        rows = state.get("sample_rows")
        self.sample_rows_ = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._X_fit = X if X is None or self.sample_rows_ is None else np.ascontiguousarray(X[self.sample_rows_])
        self._knn = None


def _init_graph_transform(graph, embedding: np.ndarray) -> np.ndarray:
    """umap-learn's ``init_graph_transform`` without its Python loop over rows (~0.5 ms a row):
    each new point at the membership-weighted mean of its neighbours' map coordinates, at a
    neighbour's own coordinates where its membership is 1 (an identical vector), NaN with no
    neighbour."""
    csr = graph.tocsr()
    m = csr.shape[0]
    sums = np.asarray(csr.sum(axis=1)).ravel()
    out = np.asarray(csr @ embedding.astype(np.float64), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = out / sums[:, None]
    out[np.diff(csr.indptr) == 0] = np.nan
    ones = np.flatnonzero(csr.data == 1)
    if ones.size:  # the first such neighbour of each row, as umap-learn's loop breaks there
        row_of = np.repeat(np.arange(m), np.diff(csr.indptr))[ones]
        first = np.unique(row_of, return_index=True)[1]
        out[row_of[first]] = embedding[csr.indices[ones[first]]]
    return out.astype(np.float32)
