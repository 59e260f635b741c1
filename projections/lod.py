"""Level of detail for big 2-D maps: which points to draw, and a density grid of all of them.

The way Embedding Atlas and datashader handle millions of points: the browser draws a capped
subset and a density image (counts on a grid) shows where the rest are. The subset is stratified
over a grid of the map's own coordinates, so sparse regions and outliers keep every point and
only dense cells are thinned (a uniform random sample would drop the few points of a sparse
region first)."""
from __future__ import annotations

import numpy as np

__all__ = ["cells", "stratified_subset", "density_grid"]


def _extent(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = coords.min(axis=0)
    span = coords.max(axis=0) - lo
    return lo, np.where(span > 0, span, 1.0)


def cells(coords: np.ndarray, bins: int) -> np.ndarray:
    """The grid cell (row-major index in a bins x bins grid over the extent) of each 2-D point."""
    c = np.asarray(coords, np.float64)[:, :2]
    lo, span = _extent(c)
    ij = np.minimum(((c - lo) / span * bins).astype(np.int64), bins - 1)
    return ij[:, 0] * bins + ij[:, 1]


def stratified_subset(coords: np.ndarray, cap: int, bins: int = 256, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``cap`` points: every occupied cell of a bins x bins grid keeps
    min(its count, q) points, q the largest per-cell quota that fits the cap (water filling), so
    every occupied cell keeps at least one point when there are no more occupied cells than
    ``cap``. Which points a dense cell keeps is random (fixed seed: the same map draws the same)."""
    n = len(coords)
    if n <= cap:
        return np.arange(n)
    cell = cells(coords, bins)
    counts = np.bincount(cell, minlength=bins * bins)
    occupied = counts[counts > 0]
    if len(occupied) >= cap:  # more occupied cells than the cap: one point per cell, then a random cap of those
        q = 1
    else:
        lo, hi = 1, int(occupied.max())  # the largest q with sum(min(count, q)) <= cap
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if np.minimum(occupied, mid).sum() <= cap:
                lo = mid
            else:
                hi = mid - 1
        q = lo
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(cell[order], kind="stable")]  # by cell, random within a cell
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(n) - starts[cell[order]]
    keep = order[rank < q]
    if len(keep) > cap:
        keep = np.random.default_rng(seed).choice(keep, cap, replace=False)
    return np.sort(keep)


def density_grid(coords: np.ndarray, bins: int = 200, exclude: np.ndarray | None = None) -> dict:
    """Counts of points on a bins x bins grid over the extent of ``coords`` (all points), leaving
    out the rows in ``exclude`` (the drawn ones): ``{x, y, z}`` with cell centres and z[row j][col i]
    the count at (x[i], y[j]), as a heatmap takes it."""
    c = np.asarray(coords, np.float64)[:, :2]
    lo, span = _extent(c)
    keep = np.ones(len(c), bool)
    if exclude is not None:
        keep[exclude] = False
    h, xe, ye = np.histogram2d(c[keep, 0], c[keep, 1], bins=bins,
                               range=[[lo[0], lo[0] + span[0]], [lo[1], lo[1] + span[1]]])
    return {"x": ((xe[:-1] + xe[1:]) / 2).tolist(), "y": ((ye[:-1] + ye[1:]) / 2).tolist(),
            "z": h.T.astype(np.int64).tolist()}
