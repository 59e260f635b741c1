"""Shared pieces of every projection method: the error type, the result
dataclass, input checks and the estimator base class.

Nothing here knows about Qdrant or Gradio: arrays in, arrays out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

VALID_DIMS = (2, 3)


class ProjectionError(ValueError):
    """A projection cannot be made from this input; the message is one line
    that a user can act on (it is shown as is in the UI and the CLI)."""


@dataclass
class Projection:
    """A map of a point set: one row of coordinates per input vector.

    ``params`` are the method's canonical parameters (defaults filled in,
    ``dims`` not included), so ``make(method, dims, **params)`` rebuilds the
    same projector.
    """

    coords: np.ndarray  # [n_points, dims] float32
    method: str  # one of METHODS
    dims: int  # 2 or 3
    params: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] | None = None  # see quality.map_quality

    @property
    def n_points(self) -> int:
        return int(self.coords.shape[0])


def n_cores() -> int:
    """CPU cores this process may use (the scheduler's affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_dims(dims: Any) -> int:
    """``dims`` as an int, or a ProjectionError when it is not 2 or 3."""
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or int(dims) not in VALID_DIMS:
        raise ProjectionError(f"dims must be 2 or 3 (got {dims!r})")
    return int(dims)


def as_matrix(X: Any, what: str = "vectors") -> np.ndarray:
    """``X`` as a C-contiguous float32 matrix [n, d]; one-line ProjectionError
    for a wrong shape, an empty set or NaN/infinite values."""
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ProjectionError(f"{what} must be a numeric matrix [n_points, n_features]: {exc}") from None
    if arr.ndim == 1 and arr.size > 0:
        arr = arr.reshape(1, -1)  # a single vector (e.g. an uploaded query)
    if arr.ndim != 2:
        raise ProjectionError(f"{what} must be a matrix [n_points, n_features] (got shape {arr.shape})")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProjectionError(f"{what} are empty (shape {arr.shape}): nothing to project")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ProjectionError(
            f"{what} contain NaN or infinite values in {bad.size} of {arr.shape[0]} rows "
            f"(first bad row: {bad[0]}); re-embed or drop those points"
        )
    return np.ascontiguousarray(arr)


def unit_rows(X: Any) -> np.ndarray:
    """Rows of ``X`` scaled to unit length, float32 (zero rows stay zero): projections' twin of
    ``embedders.base.l2_normalise``, which this room may not import."""
    Y = np.array(X, dtype=np.float32)  # a copy
    norms = np.linalg.norm(Y, axis=-1, keepdims=True)
    np.divide(Y, norms, out=Y, where=norms > 0)
    return Y


def is_unlabelled(label: Any) -> bool:
    """True for None, "" and float NaN (how pandas spells a missing label)."""
    if label is None:
        return True
    if isinstance(label, str):
        return label.strip() == ""
    if isinstance(label, float) and math.isnan(label):
        return True
    return False


def label_list(labels: Sequence[Any] | None, n: int) -> list[str | None] | None:
    """Labels as strings, unlabelled points as None; checks the length."""
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != n:
        raise ProjectionError(f"got {len(labels)} labels for {n} points: give one label (or None) per point")
    return [None if is_unlabelled(lab) else str(lab) for lab in labels]


class Projector:
    """Base class of every method, in scikit-learn estimator style.

    The constructor only stores parameters; ``fit`` learns attributes whose
    names end in ``_`` (``embedding_`` [n, dims] float32, ``n_features_in_``);
    ``transform`` places new points into the fitted map without moving it.
    Subclasses declare their parameters and defaults in ``defaults``.
    """

    method: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    min_points: ClassVar[int] = 2
    uses_labels: ClassVar[bool] = False
    #: True when placing new points needs the training vectors (neighbour
    #: search in the full space); they are never written to disk, so a
    #: projector rebuilt from the cache must be given them again.
    needs_training_vectors: ClassVar[bool] = False
    #: Called as progress(done, total, message) during a long fit, by methods that report it
    #: (UMAP fitted on a sample, while it places the other points); None: nobody listens.
    progress: Callable[[int, int, str], None] | None = None

    def __init__(self, dims: int = 2, **params: Any) -> None:
        self.dims = check_dims(dims)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ProjectionError(
                f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"for {self.method} (known: {known})"
            )
        merged = {**self.defaults, **params}
        self._params = self._canonical(merged)

    # -- parameters ---------------------------------------------------
    def _canonical(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate parameters and bring them to one canonical, JSON-able form."""
        return dict(params)

    @property
    def params(self) -> dict[str, Any]:
        """Canonical parameters (defaults filled in, ``dims`` not included)."""
        return dict(self._params)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """scikit-learn style: every constructor argument."""
        return {"dims": self.dims, **self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- estimator API ------------------------------------------------
    def fit(self, X: Any, labels: Sequence[Any] | None = None) -> "Projector":
        """Learn the map of ``X`` [n, d]; sets ``embedding_`` [n, dims] float32.

        ``labels`` (one per point; None or "" for unlabelled points) are used by
        LDA only; every other method ignores them.
        """
        X = as_matrix(X)
        self._check_enough(X)
        self._fit(X, label_list(labels, X.shape[0]))
        self.n_features_in_ = int(X.shape[1])
        self.n_samples_fit_ = int(X.shape[0])
        emb = np.ascontiguousarray(self.embedding_, dtype=np.float32)
        emb.setflags(write=False)  # the map never moves
        self.embedding_ = emb
        return self

    def fit_transform(self, X: Any, labels: Sequence[Any] | None = None) -> np.ndarray:
        """``fit(X, labels)`` and return a copy of ``embedding_`` [n, dims] float32."""
        return self.fit(X, labels).embedding_.copy()

    def transform(self, X_new: Any) -> np.ndarray:
        """Place new points [m, d] into the fitted map; returns [m, dims] float32.

        The fitted ``embedding_`` is not changed.
        """
        self._check_fitted()
        X_new = as_matrix(X_new, "new vectors")
        if X_new.shape[1] != self.n_features_in_:
            raise ProjectionError(
                f"new vectors have {X_new.shape[1]} features but the map was fitted on "
                f"{self.n_features_in_}: place vectors from the same model"
            )
        out = self._transform(X_new)
        return np.ascontiguousarray(out, dtype=np.float32).reshape(X_new.shape[0], self.dims)

    def to_projection(self, quality: dict[str, Any] | None = None) -> Projection:
        """The fitted map as a :class:`Projection` (coords is a copy)."""
        self._check_fitted()
        return Projection(
            coords=np.array(self.embedding_, dtype=np.float32),
            method=self.method,
            dims=self.dims,
            params=self.params,
            quality=quality,
        )

    # -- persistence (used by cache.MapCache) -------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Arrays (besides ``embedding_``) needed to place new points after a
        restart. Never contains the training vectors."""
        return {}

    def set_state(
        self,
        embedding: np.ndarray,
        state: dict[str, np.ndarray],
        n_features: int,
        X: np.ndarray | None = None,
    ) -> "Projector":
        """Restore a fitted projector from ``embedding_`` and ``get_state()``
        output (see MapCache). ``X`` are the training vectors, in the order the
        map was fitted, for methods with ``needs_training_vectors``."""
        emb = np.ascontiguousarray(embedding, dtype=np.float32)
        emb.setflags(write=False)
        if X is not None:
            X = as_matrix(X, "training vectors")
            if X.shape != (emb.shape[0], n_features):
                raise ProjectionError(
                    f"training vectors have shape {X.shape} but the map was fitted on "
                    f"{emb.shape[0]} points of {n_features} features"
                )
        elif self.needs_training_vectors:
            raise ProjectionError(
                f"placing points into a cached {display_name(self.method)} map needs the map's own vectors: pass X"
            )
        self.embedding_ = emb
        self.n_samples_fit_ = int(emb.shape[0])
        self.n_features_in_ = int(n_features)
        self._set_state(state, X)
        return self

    # -- hooks for subclasses ------------------------------------------
    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        raise NotImplementedError

    def _transform(self, X_new: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_state(self, state: dict[str, np.ndarray], X: np.ndarray | None) -> None:
        raise NotImplementedError

    # -- checks ---------------------------------------------------------
    def _check_enough(self, X: np.ndarray) -> None:
        n = X.shape[0]
        if n < self.min_points:
            hint = "" if self.method == "pca" else ": use PCA for very small sets"
            raise ProjectionError(
                f"{display_name(self.method)} in {self.dims}D needs at least {self.min_points} points (got {n}){hint}"
            )
        if X.shape[1] < self.dims:
            raise ProjectionError(
                f"cannot make a {self.dims}D map from {X.shape[1]}-dimensional vectors"
            )

    def _check_fitted(self) -> None:
        if getattr(self, "embedding_", None) is None:
            raise ProjectionError(f"this {self.method} projector is not fitted yet: call fit first")


def display_name(method: str) -> str:
    """How a method is written for people: PCA, LDA, UMAP, t-SNE."""
    return {"pca": "PCA", "lda": "LDA", "umap": "UMAP", "tsne": "t-SNE"}.get(method, method)
