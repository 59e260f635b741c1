"""The store interface: :class:`Store`, its value types, the factory, and what both backends share.

Nothing here imports Qdrant: the backends (``edge.py``, ``client.py``) do, lazily. Shared here,
written once: the checks of names, vectors and ids; turning a returned Qdrant point into a
:class:`Record` or a :class:`Hit`; the scroll pagination loop; batched queries; and the kNN graph
built from one batched query per point (for backends without Qdrant's search matrix).
"""

from __future__ import annotations

import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .filters import Filter, FilterMaker, translate_filter

VECTOR_NAME = "embedding"
# Decided from benchmarks/query_latency.py --tune (100k x 512-d clustered, 100k x 123-d real+jitter):
# HNSW ef 128 found 0.991 / 1.000 of the true top-10 at ~1 ms, ~100x faster than the exact scan;
# an exact scan of 20k x 512 takes ~2 ms, so above 20k points the graph is built and used.
EXACT_SEARCH_MAX_POINTS = 20_000  # read through exact_search_max_points(): tunable on index.store
HNSW_EF = 128  # read through hnsw_ef()
QUANTIZATION: str | None = None  # "int8": Qdrant scalar quantization for new collections (kept off: see index.store)
UPSERT_CHUNK = 512  # points per update operation / request
QUERY_BATCH_CHUNK = 256  # queries per batch call
LOCAL_SEARCH_MATRIX_MAX_POINTS = 1_000  # qdrant-client local mode: O(n^2) Python above this

NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")
INDEX_TYPES = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid")
HIT_DETAIL_KEYS = ("start_s", "end_s", "duration_s", "top_tags")


def hnsw_ef() -> int:
    """``HNSW_EF`` as set on the ``index.store`` package now (benchmarks sweep it there)."""
    return sys.modules[__package__].HNSW_EF


def quantization() -> str | None:
    """``QUANTIZATION`` as set on the ``index.store`` package now: None, or "int8" (Qdrant scalar
    quantization, originals kept for rescoring) for collections created from then on."""
    return getattr(sys.modules[__package__], "QUANTIZATION", None)


def exact_search_max_points() -> int:
    """``EXACT_SEARCH_MAX_POINTS`` as set on the ``index.store`` package now (tests and benchmarks
    lower it there to send queries through the HNSW graph)."""
    return sys.modules[__package__].EXACT_SEARCH_MAX_POINTS


class StoreError(RuntimeError):
    """A one-line, user-facing problem with the vector store (unreachable, missing, in use)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class DamagedCollectionError(StoreError):
    """A collection whose files are damaged (truncated, corrupt, missing parts): it cannot be
    opened or read. ``collection`` names it; ``detail`` is what the engine said, shortened."""

    def __init__(self, collection: str, detail: str, message: str | None = None):
        self.collection, self.detail = collection, detail
        super().__init__(message or f"collection {collection!r}: its Qdrant data is damaged ({detail})")


MIN_FREE_ENV = "AUDIO_EXPLORER_MIN_FREE_MB"
DEFAULT_MIN_FREE_MB = 64.0


def min_free_mb() -> float:
    """Free space (MB) that writes keep on the data folder's disk (`$AUDIO_EXPLORER_MIN_FREE_MB`)."""
    try:
        return max(0.0, float(os.environ.get(MIN_FREE_ENV, "") or DEFAULT_MIN_FREE_MB))
    except ValueError:
        return DEFAULT_MIN_FREE_MB


@dataclass
class Record:
    """A stored point."""

    id: str
    payload: dict
    vector: np.ndarray | None  # float32 [dim], or None when not requested


@dataclass
class Hit:
    """A scored point: what every vector query returns, from the store up to the app.

    ``score`` is a cosine similarity (higher is closer). ``path`` (relative to the library
    root; "" when the payload has none) and ``label`` (None when unlabelled) are read from
    ``payload``.
    """

    id: str
    score: float
    payload: dict = field(default_factory=dict)
    vector: np.ndarray | None = None  # float32 [dim], or None when not requested
    aspects: dict[str, float] | None = None  # per-aspect similarities of a steered search (index.aspects)

    @property
    def path(self) -> str:
        """The clip's path relative to its library root."""
        return self.payload.get("path", "")

    @property
    def label(self) -> str | None:
        """The clip's label, None when unlabelled."""
        return self.payload.get("label")

    def to_dict(self, detail: bool = True) -> dict:
        """JSON-ready dict: id, score (6 decimals), path, label, plus (with ``detail``) the
        payload's start_s, end_s, duration_s and top_tags where present, and the per-aspect
        similarities (``aspects``) of a steered search."""
        d = {"id": self.id, "score": round(float(self.score), 6), "path": self.path, "label": self.label}
        if self.aspects is not None:
            d["aspects"] = dict(self.aspects)
        if detail:
            for key in HIT_DETAIL_KEYS:
                if key in self.payload:
                    d[key] = self.payload[key]
        return d


class Store(ABC):
    """A set of named collections of cosine vectors (one named vector ``"embedding"``) with payloads."""

    backend: str  # "edge" | "server" | "memory"
    _f: FilterMaker  # the backend's filter objects
    # (collection, engine detail) -> the one-line message of a DamagedCollectionError; set by
    # whoever knows what the collections hold (index.libraries.open_store names library and fix)
    describe_damage: Callable[[str, str], str] | None = None

    def check_space(self) -> None:
        """StoreError (one line) when the store's disk is too full to write: checked once before a
        group of writes that must land together (an edit of every model collection). Only Qdrant
        Edge writes here; a server reports its own disk."""

    def damaged(self, name: str) -> DamagedCollectionError | None:
        """The error of a collection found damaged in this process (files truncated or corrupt),
        else None. Only Qdrant Edge keeps files here; a server reports its own failures."""
        return None

    # -- collections -----------------------------------------------------------------------
    @abstractmethod
    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""

    @abstractmethod
    def has_collection(self, name: str) -> bool:
        """Whether the collection exists."""

    @abstractmethod
    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        """Create a cosine collection of ``dim``-d vectors with payload indexes
        (``{"label": "keyword", "start_s": "float", ...}``). Idempotent: an existing
        collection of the same dim gets any missing indexes; another dim is a StoreError."""

    @abstractmethod
    def collection_dim(self, name: str) -> int:
        """Vector size of the collection."""

    @abstractmethod
    def delete_collection(self, name: str) -> None:
        """Delete the collection and its data; nothing happens if it does not exist."""

    # -- writes ----------------------------------------------------------------------------
    @abstractmethod
    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        """Insert or replace points (ids are UUID strings, vectors float32 [n, dim]).
        Durable when it returns. Applied in chunks of ``UPSERT_CHUNK`` points, each
        chunk all-or-nothing: a process killed mid-call leaves a prefix of whole chunks."""

    @abstractmethod
    def delete(self, name: str, ids: list[str]) -> None:
        """Delete points by id; unknown ids are ignored."""

    @abstractmethod
    def delete_by_filter(self, name: str, flt: Filter) -> None:
        """Delete every point that matches the filter."""

    @abstractmethod
    def set_payload(self, name: str, ids: list[str], payload: dict) -> None:
        """Set these payload keys (others are kept) on the points; unknown ids are ignored. Applied
        in chunks of ``UPSERT_CHUNK`` ids, durable when it returns."""

    @abstractmethod
    def delete_payload(self, name: str, ids: list[str], keys: list[str]) -> None:
        """Remove these payload keys from the points."""

    def update_payloads(self, name: str, updates: Sequence[tuple[list[str], dict, list[str]]]) -> None:
        """Several payload updates at once: for each (ids, keys to set, keys to remove). A backend
        may apply them with one flush (Edge: one fsync instead of one per update)."""
        for ids, to_set, to_remove in updates:
            if to_set:
                self.set_payload(name, ids, to_set)
            if to_remove:
                self.delete_payload(name, ids, to_remove)

    @abstractmethod
    def ensure_index(self, name: str, key: str, kind: str) -> None:
        """A payload index on ``key`` (keyword, integer, float, ...) unless it has one."""

    # -- reads -----------------------------------------------------------------------------
    @abstractmethod
    def count(self, name: str, flt: Filter | None = None) -> int:
        """Exact number of points (matching the filter)."""

    def points_count(self, name: str) -> int:
        """The collection's point count as its info reports it, to tell that it changed (what the
        app's caches check on every request): ``count`` here; O(1) where the backend keeps it."""
        return self.count(name)

    @abstractmethod
    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        """Points by id, in the order asked; missing ids are simply absent."""

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        """The subset of ``ids`` stored in the collection."""
        return {r.id for r in self.retrieve(name, ids, with_vectors=False)}

    def scroll(
        self, name: str, flt: Filter | None = None, with_vectors: bool = False, batch: int = 1000
    ) -> Iterator[Record]:
        """Every point (matching the filter), in point-id order, fetched ``batch`` at a time."""
        translated = self._translate(flt)
        offset = None
        while True:
            points, offset = self._scroll_page(name, translated, with_vectors, max(1, int(batch)), offset)
            for point in points:
                yield point_record(point, with_vectors)
            if offset is None:
                return

    @abstractmethod
    def _scroll_page(self, name: str, translated: Any, with_vectors: bool, limit: int, offset: Any) -> tuple:
        """One page of a scroll: (backend points, next offset or None)."""

    # -- vector queries --------------------------------------------------------------------
    @abstractmethod
    def query(
        self, name: str, vector: np.ndarray, k: int, flt: Filter | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        """The ``k`` nearest points to ``vector`` by cosine similarity, best first."""

    def query_by_id(self, name: str, point_id: str, k: int, flt: Filter | None = None) -> list[Hit]:
        """The ``k`` nearest points to a stored point. The point itself is included when it
        passes the filter: query-by-example returns the example first (score ~1.0)."""
        found = self.retrieve(name, [point_id], with_vectors=True)
        if not found:
            raise StoreError(f"no point {point_id} in collection {name!r}")
        return self.query(name, found[0].vector, k, flt)

    def query_batch(
        self, name: str, vectors: np.ndarray, k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """``query`` for each row of ``vectors`` [m, dim], in batched calls."""
        rows = self._batch(check_name(name), as_matrix(vectors), check_k(k), self._translate(flt))
        return [[point_hit(p) for p in row] for row in rows]

    @abstractmethod
    def _batch(
        self, name: str, matrix: np.ndarray, limit: int, translated: Any, with_payload: bool = True
    ) -> list[list[Any]]:
        """Nearest-``limit`` backend points of each row of ``matrix``, ``QUERY_BATCH_CHUNK`` queries
        per backend call."""

    @abstractmethod
    def recommend_average(
        self,
        name: str,
        positive_ids: list[str],
        k: int,
        flt: Filter | None = None,
        negative_ids: list[str] | None = None,
    ) -> list[Hit]:
        """Qdrant recommend with the average-vector strategy: nearest to
        ``mean(pos)`` (or ``2*mean(pos) - mean(neg)`` with negatives), the example
        points themselves excluded (as Qdrant does). A class centroid query."""

    def _facet_index_kind(self, name: str, key: str) -> str:
        """The payload index type a facet on ``key`` needs, judged from one stored value."""
        for record in self.scroll(name, {"__not__": {key: None}}, batch=1):
            value: Any = record.payload
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            value = value[0] if isinstance(value, list) and value else value
            if type(value) is bool:
                return "bool"
            if type(value) is int:
                return "integer"
            break
        return "keyword"

    @abstractmethod
    def facet(self, name: str, key: str, limit: int = 1000, flt: Filter | None = None) -> dict[Any, int]:
        """Exact counts of the values of payload field ``key`` (points counted once per
        distinct value), sorted by count descending then value. Only str, int and bool
        values are counted. Qdrant facets read a payload index: a keyword (or integer /
        bool, after the stored values) index is created on first use when missing."""

    @abstractmethod
    def query_groups(
        self,
        name: str,
        vector: np.ndarray,
        group_by: str,
        groups: int,
        group_size: int = 1,
        flt: Filter | None = None,
    ) -> list[list[Hit]]:
        """Qdrant groups: the best ``group_size`` hits of each of the ``groups`` best groups
        (one group per value of payload field ``group_by``, str or int; a list value puts
        the point in each group; points without the field are skipped). Best group first."""

    @abstractmethod
    def knn_graph(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The exact k-nearest-neighbour graph of the points matching the filter (Qdrant's
        search matrix): ``ids`` [n] sorted by point id, ``neighbours`` int64 [n, k] row
        indices into ``ids`` (self excluded, best first), ``scores`` float32 [n, k].
        ``k`` is capped at n - 1; a row short of neighbours is padded with -1 / nan."""

    def _knn_graph_by_queries(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``knn_graph`` without a search matrix: every point's vector is queried against the
        same filtered set in batched calls (k + 1 hits, the point itself dropped)."""
        k = check_k(k)
        records = sorted(self.scroll(name, flt, with_vectors=True), key=lambda r: r.id)
        ids = [r.id for r in records]
        if len(ids) < 2:
            return ids, np.zeros((len(ids), 0), np.int64), np.zeros((len(ids), 0), np.float32)
        k = min(k, len(ids) - 1)
        matrix = np.stack([r.vector for r in records])
        rows = self._batch(name, matrix, k + 1, self._translate(flt), with_payload=False)
        neighbours, scores = graph_from_rows(ids, [[(str(p.id), p.score) for p in row] for row in rows], k)
        return ids, neighbours, scores

    def build_hnsw(self, name: str) -> None:
        """Build the collection's HNSW graph, used by queries above ``EXACT_SEARCH_MAX_POINTS``
        points. A Qdrant server builds its own (its indexing threshold): nothing to do."""

    def indexed_count(self, name: str) -> int:
        """How many of the collection's vectors are in an HNSW graph."""
        return 0

    def _translate(self, flt: Filter | None) -> Any:
        """The backend's filter object for a filter spec (None for none)."""
        return translate_filter(flt, self._f)

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        """Make every write so far durable."""

    def close(self) -> None:
        """Flush and release every resource; the store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(data_dir: Path, url: str | None = None, api_key: str | None = None) -> Store:
    """The store the app uses: a Qdrant server when ``url`` (or ``$QDRANT_URL``, with
    ``api_key`` or ``$QDRANT_API_KEY``) is given, qdrant-client's in-memory mode for
    ``":memory:"``, else Qdrant Edge under ``data_dir / "qdrant"``."""
    from .client import ClientStore
    from .edge import EdgeStore

    url = url or os.environ.get("QDRANT_URL") or None
    if url == ":memory:":
        return ClientStore.in_memory()
    if url:
        return ClientStore.connect(url, api_key or os.environ.get("QDRANT_API_KEY") or None)
    return EdgeStore(Path(data_dir) / "qdrant")


# =========================================================================================
# Shared helpers (no Qdrant types)
# =========================================================================================


def one_line(message: object) -> str:
    """``message`` on one line of at most 400 characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= 400 else text[:397] + "..."


def check_name(name: str) -> str:
    """The collection name itself, or a StoreError when Qdrant could not use it."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StoreError(
            f"invalid collection name {name!r}: use letters, digits, '_', '-', '.' "
            "(not first), at most 200 characters"
        )
    return name


def check_k(k: int) -> int:
    """``k`` as an int, at least 1."""
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def check_indexes(indexes: dict[str, str] | None) -> dict[str, str]:
    """Payload index specs ``{field: type}``, each type one of ``INDEX_TYPES``."""
    indexes = dict(indexes or {})
    for name, kind in indexes.items():
        if kind not in INDEX_TYPES:
            raise ValueError(f"unknown payload index type {kind!r} for {name!r}; one of {INDEX_TYPES}")
    return indexes


def as_vector(vector: Any) -> np.ndarray:
    """A query vector as float32 [dim], finite."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError("query vector has non-finite values")
    return v


def as_matrix(vectors: Any, n: int | None = None) -> np.ndarray:
    """Vectors as float32 [n, dim], finite (one vector becomes one row)."""
    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2:
        raise ValueError(f"vectors must be 2-d [n, dim], got shape {m.shape}")
    if n is not None and m.shape[0] != n:
        raise ValueError(f"got {n} ids but {m.shape[0]} vectors")
    if not np.all(np.isfinite(m)):
        raise ValueError("vectors have non-finite values")
    return m


def check_upsert(ids: Sequence[str], vectors: Any, payloads: Sequence[dict], dim: int) -> np.ndarray:
    """The upsert's vectors as float32 [n, dim] after checking ids, payloads and dim agree."""
    if len(ids) != len(payloads):
        raise ValueError(f"got {len(ids)} ids but {len(payloads)} payloads")
    m = as_matrix(vectors, len(ids))
    if len(ids) and m.shape[1] != dim:
        raise StoreError(f"vectors have dim {m.shape[1]}, the collection holds dim {dim}")
    return m


def vector_of(raw: Any) -> np.ndarray | None:
    """The "embedding" vector of a returned point as float32, whatever shape the backend used."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        raw = raw.get(VECTOR_NAME)
        if raw is None:
            return None
    return np.asarray(raw, dtype=np.float32)


def point_record(point: Any, with_vectors: bool = False) -> Record:
    """A backend's returned point (Edge or qdrant-client: same attribute names) as a Record."""
    return Record(str(point.id), dict(point.payload or {}), vector_of(point.vector) if with_vectors else None)


def point_hit(point: Any, with_vectors: bool = False) -> Hit:
    """A backend's scored point as a Hit."""
    return Hit(
        id=str(point.id),
        score=float(point.score),
        payload=dict(point.payload or {}),
        vector=vector_of(point.vector) if with_vectors else None,
    )


def records_in_order(ids: Sequence[str], points: Sequence[Any], with_vectors: bool) -> list[Record]:
    """Retrieved points as Records in the order of ``ids`` (duplicates once, missing ones absent)."""
    by_id = {str(p.id): point_record(p, with_vectors) for p in points}
    return [by_id[str(i)] for i in dict.fromkeys(ids) if str(i) in by_id]


def sorted_facet(pairs: Sequence[tuple[Any, int]], limit: int) -> dict[Any, int]:
    """Facet counts by count descending, then value; at most ``limit``."""
    ordered = sorted(pairs, key=lambda kv: (-kv[1], type(kv[0]).__name__, kv[0]))
    return dict(ordered[:limit])


def graph_from_rows(
    ids: list[str], rows: Sequence[Sequence[tuple[str, float]]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour index and score matrices from per-point (id, score) lists (self dropped)."""
    index = {pid: i for i, pid in enumerate(ids)}
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    scores = np.full((len(ids), k), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        j = 0
        for pid, score in row:
            col = index.get(pid)
            if col is None or col == i:
                continue
            if j == k:
                break
            neighbours[i, j] = col
            scores[i, j] = score
            j += 1
    return neighbours, scores
