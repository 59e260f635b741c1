"""Linear maps: PCA and LDA. Both end as ``coords = (X - offset_) @ components_.T``,
so placing new points is exact and the fitted map is two small arrays (no
pickles, no training vectors)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import ProjectionError, Projector


class _LinearProjector(Projector):
    """A fitted affine map; subclasses set ``offset_`` [d] and ``components_`` [dims, d]."""

    def _transform(self, X_new: np.ndarray) -> np.ndarray:
        out = np.empty((X_new.shape[0], self.components_.shape[0]))
        step = 16_384  # float64 arithmetic, in chunks: no full float64 copy of X
        for start in range(0, X_new.shape[0], step):
            block = X_new[start : start + step].astype(np.float64) - self.offset_
            out[start : start + step] = block @ self.components_.T
        return out

    def get_state(self) -> dict[str, np.ndarray]:
        return {"offset": self.offset_, "components": self.components_}

    def _set_state(self, state: dict[str, np.ndarray], X: np.ndarray | None) -> None:
        self.offset_ = np.asarray(state["offset"], dtype=np.float64)
        self.components_ = np.asarray(state["components"], dtype=np.float64)


class PCAProjector(_LinearProjector):
    """Principal components (scikit-learn's PCA; deterministic, signs fixed by svd_flip).

    No parameters besides ``dims``. Learned: ``offset_`` (the mean),
    ``components_`` [dims, d], ``explained_variance_ratio_`` [dims].
    """

    method = "pca"
    defaults: dict[str, Any] = {}
    min_points = 2

    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        from sklearn.decomposition import PCA

        n, d = X.shape
        k = min(self.dims, n, d)  # fewer points than dims: pad the missing axes with 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-identical vectors: 0/0 explained variance
            pca = PCA(n_components=k, random_state=0).fit(X)
        comps = np.zeros((self.dims, d))
        comps[:k] = pca.components_
        ratio = np.zeros(self.dims)
        ratio[:k] = np.nan_to_num(pca.explained_variance_ratio_)
        self.offset_ = pca.mean_.astype(np.float64)
        self.components_ = comps
        self.explained_variance_ratio_ = ratio
        self.embedding_ = self._transform(X)


class LDAProjector(_LinearProjector):
    """Linear discriminant analysis (scikit-learn, SVD solver), fitted on the
    labelled points only; unlabelled points are placed with the learned map
    and never influence it.

    Needs at least ``dims + 1`` labelled classes (LDA gives at most
    ``classes - 1`` axes) and raises :class:`ProjectionError` otherwise rather
    than padding with empty axes. Learned: ``offset_``, ``components_``,
    ``classes_``, ``labelled_mask_`` [n] bool, ``explained_variance_ratio_``.
    """

    method = "lda"
    defaults: dict[str, Any] = {}
    min_points = 2
    uses_labels = True

    def _fit(self, X: np.ndarray, labels: list[str | None] | None) -> None:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        mask = np.array([lab is not None for lab in labels], dtype=bool) if labels else np.zeros(len(X), bool)
        y = np.array([lab for lab in (labels or []) if lab is not None], dtype=object)
        classes = sorted(set(y.tolist()))
        if mask.sum() < 2 or len(classes) < 2:
            raise ProjectionError(
                f"LDA needs at least 2 labelled classes (found {len(classes)}, "
                f"{int(mask.sum())} labelled points): use PCA"
            )
        if len(classes) < self.dims + 1:
            alternative = "LDA in 2D or PCA" if len(classes) >= 3 else "PCA"
            raise ProjectionError(
                f"LDA in {self.dims}D needs at least {self.dims + 1} labelled classes "
                f"(found {len(classes)}): use {alternative}"
            )
        if mask.sum() <= len(classes):
            raise ProjectionError(
                f"LDA needs more labelled points than classes (found {int(mask.sum())} points "
                f"in {len(classes)} classes): label more clips or use PCA"
            )
        Xl = X[mask]  # float32: half the time and memory of float64 on big sets
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "variables are collinear" when n_labelled < d
                lda = LinearDiscriminantAnalysis(solver="svd", n_components=None).fit(Xl, y.astype(str))
        except (ValueError, IndexError, np.linalg.LinAlgError):
            raise ProjectionError(
                "LDA cannot separate these labelled points (are their vectors identical?): use PCA"
            ) from None
        scalings = np.asarray(lda.scalings_)
        if scalings.ndim != 2 or scalings.shape[1] < self.dims:
            raise ProjectionError(
                f"LDA found only {0 if scalings.ndim != 2 else scalings.shape[1]} discriminant axes "
                f"in these labelled points, {self.dims} needed: label more clips or use PCA"
            )
        self.offset_ = np.asarray(lda.xbar_, dtype=np.float64)
        self.components_ = scalings[:, : self.dims].T.copy()
        self.classes_ = np.array(classes, dtype=object)
        self.labelled_mask_ = mask
        ratio = np.asarray(getattr(lda, "explained_variance_ratio_", np.full(self.dims, np.nan)))
        self.explained_variance_ratio_ = ratio[: self.dims]
        self.embedding_ = self._transform(X)
