"""projections: vectors -> 2D/3D coordinates (PCA, LDA, UMAP, t-SNE), cached.

Arrays in, arrays out: nothing here imports Qdrant, Gradio or the other rooms.

    >>> from projections import make
    >>> proj = make("umap", 2, n_neighbors=15, seed=0)
    >>> coords = proj.fit_transform(X)          # [n, 2] float32, proj.embedding_
    >>> frames_xy = proj.transform(frames)      # place a trajectory; the map does not move

LDA is fitted on labelled points only (labels: None / "" = unlabelled); the
other methods ignore labels. Errors a user can cause raise ProjectionError
with a one-line message. See cache.MapCache for caching and quality for the
quality numbers.
"""

from .base import Projection, ProjectionError, Projector
from . import clusters
from .clusters import ClusterCache, Clustering, cluster
from .cache import CacheStats, MapCache, MapKey, ids_hash, labels_hash
from .linear import LDAProjector, PCAProjector
from .lod import density_grid, stratified_subset
from .methods import METHODS, canonical_params, make, normalize_method
from .quality import (AGREEMENT_SAMPLE, LabelAgreement, knn_agreement, knn_agreement_per_class, knn_label_agreement,
                      map_quality, sample_rows, trustworthiness)
from .tsne_projector import TSNEProjector
from .umap_projector import UMAPProjector


def preload() -> None:
    """Import the fitting library that PCA / LDA maps need (scikit-learn: ~1.7 s on a cold
    process), so that the first map drawn does not wait for it."""
    import sklearn.decomposition  # noqa: F401
    import sklearn.discriminant_analysis  # noqa: F401

__all__ = [
    "density_grid",
    "stratified_subset",
    "AGREEMENT_SAMPLE",
    "ClusterCache",
    "Clustering",
    "cluster",
    "clusters",
    "METHODS",
    "CacheStats",
    "LDAProjector",
    "LabelAgreement",
    "MapCache",
    "MapKey",
    "PCAProjector",
    "Projection",
    "ProjectionError",
    "Projector",
    "TSNEProjector",
    "UMAPProjector",
    "canonical_params",
    "ids_hash",
    "knn_agreement",
    "knn_agreement_per_class",
    "knn_label_agreement",
    "labels_hash",
    "make",
    "map_quality",
    "normalize_method",
    "preload",
    "sample_rows",
    "trustworthiness",
]
