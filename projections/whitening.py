"""Library-adapted vectors: mean-centering and PCA-whitening with shrinkage (arrays in, arrays out).

Fitted on a library's own vectors, without labels. Embeddings of one model share a few
dominant directions (loudness, recording chain, the model's own bias) that make every clip
look alike under cosine; centering removes the common mean and whitening rescales the
principal directions so no direction dominates. Shrinkage (`alpha`) adds `alpha` times the
mean eigenvalue to every eigenvalue before the inverse square root, so the many small,
noisy directions are not blown up (alpha -> inf: centering only; alpha = 0: full whitening).

The transform keeps the model's dimension: y = W (x - mean) with
W = V diag((lambda + s)^-1/2) V^T + (I - V V^T) s^-1/2 (s = alpha * mean(lambda)), so a
vector outside the fitted span (a new upload) keeps its residual at the shrinkage scale.
It is applied row-wise to any vectors of the same model (library clips, uploaded query
clips, text-tower vectors), and returns unit-length rows for cosine search.

`method="diag"` whitens each dimension on its own (per-dimension standardisation with the
same shrinkage: y = (x - mean) / sqrt(var + alpha * mean(var))): measured on the project's
two real sets (benchmarks/retrieval_quality.py --adapt) it beats full PCA-whitening, which
over-amplifies the many weak directions of a 1506-d embedding fitted on a few hundred clips.

`blocks` (a fused model's parts: (start, end, weight) column ranges) fits and applies the "diag"
transform to each part on its own and re-weights the adapted parts, so the cosine of two adapted
vectors stays the weighted mean of the parts' adapted cosines (whitening the concatenation as one
vector gives every dimension unit variance and so undoes the fusion's weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ALPHA = 0.1
DEFAULT_METHOD = "diag"
METHODS = ("diag", "pca", "center")
MIN_FIT = 8  # fewer vectors than this: no adaptation (identity)


@dataclass
class Whitening:
    """A fitted transform: mean [d], components V [d, r], per-component scale [r], residual scale."""

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    residual_scale: float
    alpha: float
    n_fit: int
    diag: np.ndarray | None = None  # method "diag": per-dimension scale [d] (components unused)
    method: str = "pca"
    blocks: list[tuple[int, int, float]] | None = None  # per-part transform: (start, end, weight), weights sum^2 = 1

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Adapted, L2-normalised copy of [n, d] (or [d]) vectors."""
        x = np.asarray(x, np.float64)
        one = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.dim:
            raise ValueError(f"whitening was fitted on {self.dim}-d vectors, got {x.shape[1]}-d")
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # as in the fit (and as Qdrant stores them)
        if self.blocks:
            y = np.empty_like(x)
            for a, b, wt in self.blocks:
                part = x[:, a:b] / np.maximum(np.linalg.norm(x[:, a:b], axis=1, keepdims=True), 1e-12)
                c = (part - self.mean[a:b]) * self.diag[a:b]
                y[:, a:b] = wt * c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
            y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
            y = y.astype(np.float32)
            return y[0] if one else y
        c = x - self.mean
        if self.diag is not None:
            y = c * self.diag
        else:
            coef = c @ self.components  # [n, r]
            y = (coef * self.scale) @ self.components.T + (c - coef @ self.components.T) * self.residual_scale
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        y = y.astype(np.float32)
        return y[0] if one else y

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for np.savez)."""
        return {"mean": self.mean, "components": self.components, "scale": self.scale,
                "residual_scale": np.float64(self.residual_scale), "alpha": np.float64(self.alpha),
                "n_fit": np.int64(self.n_fit), "method": np.str_(self.method),
                "diag": self.diag if self.diag is not None else np.zeros(0),
                "blocks": np.asarray(self.blocks or np.zeros((0, 3)), np.float64)}

    @classmethod
    def from_arrays(cls, a) -> "Whitening":
        """Inverse of `to_arrays` (accepts an np.load result)."""
        diag = np.asarray(a["diag"], np.float64) if "diag" in a else np.zeros(0)
        bl = np.asarray(a["blocks"]) if "blocks" in a else np.zeros((0, 3))
        blocks = [(int(r[0]), int(r[1]), float(r[2])) for r in bl] or None
        return cls(np.asarray(a["mean"], np.float64), np.asarray(a["components"], np.float64),
                   np.asarray(a["scale"], np.float64), float(a["residual_scale"]), float(a["alpha"]),
                   int(a["n_fit"]), diag if diag.size else None, str(a["method"]) if "method" in a else "pca", blocks)


def check_blocks(blocks, d: int) -> list[tuple[int, int, float]]:
    """Validated part ranges covering [0, d) in order, weights normalised to sum of squares 1."""
    out, at = [], 0
    for a, b, wt in blocks:
        a, b, wt = int(a), int(b), float(wt)
        if a != at or b <= a or wt <= 0:
            raise ValueError(f"blocks must cover 0..{d} in order with positive weights, got {list(blocks)}")
        out.append((a, b, wt))
        at = b
    if at != d:
        raise ValueError(f"blocks cover 0..{at}, the vectors have {d} dimensions")
    norm = float(np.sqrt(sum(w * w for _, _, w in out)))
    return [(a, b, w / norm) for a, b, w in out]


def fit_whitening(x: np.ndarray, alpha: float = DEFAULT_ALPHA, method: str = DEFAULT_METHOD,
                  max_components: int | None = None, blocks=None) -> Whitening:
    """Fit centering + shrunk whitening ("diag", "pca" or "center" only) on [n, d] vectors
    (rows L2-normalised first); with `blocks`, "diag" per part (module docstring)."""
    if blocks:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise ValueError("fit_whitening needs a finite [n, d] matrix")
        if method != "diag":
            raise ValueError("per-part (blocks) whitening is 'diag' only")
        bl = check_blocks(blocks, x.shape[1])
        if len(x) < MIN_FIT:
            return fit_whitening(x, alpha, method)
        fits = [fit_whitening(x[:, a:b], alpha, method) for a, b, _ in bl]
        return Whitening(np.concatenate([f.mean for f in fits]), np.zeros((x.shape[1], 0)), np.zeros(0), 1.0,
                         alpha, len(x), np.concatenate([f.diag for f in fits]), method, bl)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("fit_whitening needs a finite [n, d] matrix")
    n, d = x.shape
    if alpha < 0:
        raise ValueError("alpha must be >= 0")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = x.mean(axis=0)
    if n < MIN_FIT:
        return Whitening(np.zeros(d), np.zeros((d, 0)), np.zeros(0), 1.0, alpha, n, None, "identity")
    c = x - mean
    if method in ("diag", "center"):
        var = c.var(axis=0)
        diag = 1.0 / np.sqrt(var + max(alpha * float(var.mean()), 1e-12)) if method == "diag" else np.ones(d)
        return Whitening(mean, np.zeros((d, 0)), np.zeros(0), 1.0, alpha, n, diag / diag.max(), method)
    _, sv, vt = np.linalg.svd(c, full_matrices=False)
    lam = sv ** 2 / max(n - 1, 1)
    keep = lam > lam.max() * 1e-10 if lam.size else np.zeros(0, bool)
    if max_components:
        keep[max_components:] = False
    lam, comps = lam[keep], vt[keep].T
    shrink = max(alpha * float(lam.mean()) if lam.size else 1.0, 1e-12)
    scale = 1.0 / np.sqrt(lam + shrink)
    # normalise so the overall scale is comparable across models (cosine does not care)
    top = float(scale.max()) if scale.size else 1.0
    return Whitening(mean, comps, scale / top, (1.0 / np.sqrt(shrink)) / top, alpha, n, None, "pca")
