"""A (library, model)'s vectors and payloads, read from Qdrant once until the collection changes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

import numpy as np

import index

if TYPE_CHECKING:
    from app.services import Services

T = TypeVar("T")


class VectorCache:
    """Memoised `index.read_vectors`: one read per (library, model) while its point count (the
    store's `points_count`) holds."""

    def __init__(self, svc: "Services"):
        self._svc = svc
        self._got: dict[tuple[str, str], tuple[int, tuple]] = {}
        self._derived: dict[tuple, tuple[tuple, object]] = {}

    def read(self, library: str, model: str) -> tuple[list[str], np.ndarray, list[dict]]:
        """ids, vectors [n, dim], payloads of (library, model)."""
        store = self._svc.store
        coll = index.collection_name(library, model)
        # the store's points_count: every page load's events ask, and an exact count of 1M points took
        # 0.23-0.42 s each (Qdrant Edge), which held up the page (benchmarks/ui_map_load.py)
        n = store.points_count(coll) if store.has_collection(coll) else 0
        key = (library, model)
        with self._svc.locks(("vectors", *key)):  # a page load's events ask at once: one reads, the rest wait
            hit = self._got.get(key)
            if hit is not None and hit[0] == n:
                return hit[1]
            got = index.read_vectors(store, library, model)
            self._got[key] = (n, got)
            return got

    def cached(self, library: str, model: str) -> tuple[list[str], np.ndarray, list[dict]] | None:
        """The read of (library, model) if one is held and still current, without reading."""
        store = self._svc.store
        coll = index.collection_name(library, model)
        hit = self._got.get((library, model))
        if hit is None or not store.has_collection(coll) or store.points_count(coll) != hit[0]:
            return None
        return hit[1]

    def derived(self, library: str, model: str, name: str, fn: Callable[[list, np.ndarray, list], T]) -> T:
        """``fn(ids, vectors, payloads)`` of the current read, computed once per read: what every page
        load asks of all the payloads (the files, the colour options) costs seconds at 1M points and
        would otherwise be recomputed by each page, beside the map it delays."""
        got = self.read(library, model)
        key = (library, model, name)
        with self._svc.locks(("derived", *key)):
            hit = self._derived.get(key)
            if hit is not None and hit[0] is got:
                return hit[1]  # type: ignore[return-value]
            value = fn(*got)
            self._derived[key] = (got, value)
            return value

    def clear(self) -> None:
        """Forget every read (after indexing or deleting)."""
        self._got.clear()
        self._derived.clear()
