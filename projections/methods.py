"""The method registry: names, the factory, canonical parameters."""

from __future__ import annotations

from typing import Any

from .base import ProjectionError, Projector
from .linear import LDAProjector, PCAProjector
from .tsne_projector import TSNEProjector
from .umap_projector import UMAPProjector

#: Method names, in the order the UI lists them.
METHODS: tuple[str, ...] = ("pca", "lda", "umap", "tsne")

_CLASSES: dict[str, type[Projector]] = {
    "pca": PCAProjector,
    "lda": LDAProjector,
    "umap": UMAPProjector,
    "tsne": TSNEProjector,
}


def normalize_method(method: str) -> str:
    """"t-SNE", "TSNE", "t_sne" -> "tsne"; ProjectionError for an unknown name."""
    key = str(method).strip().lower().replace("-", "").replace("_", "")
    if key not in _CLASSES:
        raise ProjectionError(f"unknown projection method {method!r}: choose one of {', '.join(METHODS)}")
    return key


def projector_class(method: str) -> type[Projector]:
    """The Projector subclass for a method name."""
    return _CLASSES[normalize_method(method)]


def make(method: str, dims: int = 2, **params: Any) -> Projector:
    """A new, unfitted projector: ``make("umap", 3, n_neighbors=30)``.

    Unknown parameters raise ProjectionError. ``seed`` is accepted by every
    method; PCA and LDA are deterministic and drop it.
    """
    cls = projector_class(method)
    if "seed" not in cls.defaults:
        params.pop("seed", None)
    return cls(dims, **params)


def canonical_params(method: str, dims: int = 2, **params: Any) -> dict[str, Any]:
    """Parameters with defaults filled in, in one canonical form (for cache keys)."""
    return make(method, dims, **params).params
