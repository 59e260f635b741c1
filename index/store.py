"""The vector store: one narrow interface over Qdrant, two real backends.

Every Qdrant import of the project lives in this module; the rest of the code
talks to :class:`Store` with plain Python values and numpy arrays.

- :class:`EdgeStore`: Qdrant Edge (``qdrant-edge-py``), Qdrant's engine running
  in-process; one ``EdgeShard`` per collection, each in its own folder under the
  store root. The default, under the app's data folder.
- :class:`ClientStore`: ``qdrant-client`` talking to a Qdrant server or cluster
  (``QDRANT_URL`` + ``QDRANT_API_KEY``), or ``QdrantClient(":memory:")`` in tests.

:func:`open_store` picks one. Both backends give the same answers to the same
calls (tests/test_store.py runs the same queries on both and compares them):
cosine distance over one named vector ``"embedding"``, scores are cosine
similarities (higher is better), point ids are UUID strings.

Filters are a small dict spec, translated by each backend::

    {"label": "kick"}                      exact match (str, int, bool; a float
                                           matches with an equality range)
    {"label": ["kick", "snare"]}           match any
    {"duration_s": {"gte": 0.5, "lt": 2}}  numeric range (gt, gte, lt, lte)
    {"label": None}                        field missing, null or empty
    several keys                           all must hold (AND)
    {"__not__": {...same spec...}}         the inner spec must not hold (NOT of its AND)

Exact vs approximate search: up to ``EXACT_SEARCH_MAX_POINTS`` points in a
collection every vector query is an exact (brute-force) scan, so results are
exact and the two backends agree point for point. Measured on Qdrant Edge
(2 CPU cores, 20k x 512 float32): an exact top-10 query takes ~2.5 ms, a
batch of 1000 exact queries ~1 s; HNSW after ``optimize()`` took 43 s to build
and its default search found only ~37 % of the true top-10 on random vectors
(82 % with ef=512). Libraries of audio clips sit far below the threshold, so
exactness costs nothing noticeable. Above it, queries ask HNSW with a high
``ef`` (``HNSW_EF``). Edge builds a collection's graph only when asked
(``build_hnsw``): indexing does so for a clip collection that outgrows the
threshold (index/ingest.py). On clustered vectors (closer to real embeddings
than random ones) the graph found 99.9 % (100k) and 98.8 % (1M) of the true
top-10 at 1.4 ms / 5.5 ms vs 4.8 ms / 49 ms exact (benchmarks/query_latency.py).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VECTOR_NAME = "embedding"
EXACT_SEARCH_MAX_POINTS = 200_000
HNSW_EF = 512
UPSERT_CHUNK = 512  # points per update operation / request
QUERY_BATCH_CHUNK = 256  # queries per batch call
LOCAL_SEARCH_MATRIX_MAX_POINTS = 1_000  # qdrant-client local mode: O(n^2) Python above this

_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")
_RANGE_KEYS = ("gt", "gte", "lt", "lte")
_INDEX_TYPES = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid")
_EDGE_CONFIG_FILE = "edge_config.json"

Filter = dict  # the dict spec described in the module docstring


class StoreError(RuntimeError):
    """A one-line, user-facing problem with the vector store (unreachable, missing, in use)."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


@dataclass
class Record:
    """A stored point."""

    id: str
    payload: dict
    vector: np.ndarray | None  # float32 [dim], or None when not requested


@dataclass
class Hit:
    """A scored point; score is a cosine similarity (higher is closer)."""

    id: str
    score: float
    payload: dict
    vector: np.ndarray | None = None  # float32 [dim], or None when not requested


class Store(ABC):
    """A set of named collections of cosine vectors (one named vector ``"embedding"``) with payloads."""

    backend: str  # "edge" | "server" | "memory"

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

    # -- reads -----------------------------------------------------------------------------
    @abstractmethod
    def count(self, name: str, flt: Filter | None = None) -> int:
        """Exact number of points (matching the filter)."""

    @abstractmethod
    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        """Points by id, in the order asked; missing ids are simply absent."""

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        """The subset of ``ids`` stored in the collection."""
        return {r.id for r in self.retrieve(name, ids, with_vectors=False)}

    @abstractmethod
    def scroll(
        self, name: str, flt: Filter | None = None, with_vectors: bool = False, batch: int = 1000
    ) -> Iterator[Record]:
        """Every point (matching the filter), in point-id order, fetched ``batch`` at a time."""

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

    @abstractmethod
    def query_batch(
        self, name: str, vectors: np.ndarray, k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        """``query`` for each row of ``vectors`` [m, dim], in one batched call."""

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

    def build_hnsw(self, name: str) -> None:
        """Build the collection's HNSW graph, used by queries above ``EXACT_SEARCH_MAX_POINTS``
        points. A Qdrant server builds its own (its indexing threshold): nothing to do."""

    def indexed_count(self, name: str) -> int:
        """How many of the collection's vectors are in an HNSW graph."""
        return 0

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
    url = url or os.environ.get("QDRANT_URL") or None
    if url == ":memory:":
        return ClientStore.in_memory()
    if url:
        return ClientStore.connect(url, api_key or os.environ.get("QDRANT_API_KEY") or None)
    return EdgeStore(Path(data_dir) / "qdrant")


# =========================================================================================
# Shared helpers (no Qdrant types)
# =========================================================================================


def _one_line(message: object) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= 400 else text[:397] + "..."


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StoreError(
            f"invalid collection name {name!r}: use letters, digits, '_', '-', '.' "
            "(not first), at most 200 characters"
        )
    return name


def _check_k(k: int) -> int:
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def _as_vector(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError("query vector has non-finite values")
    return v


def _as_matrix(vectors: Any, n: int | None = None) -> np.ndarray:
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


def _check_upsert(ids: Sequence[str], vectors: Any, payloads: Sequence[dict], dim: int) -> np.ndarray:
    if len(ids) != len(payloads):
        raise ValueError(f"got {len(ids)} ids but {len(payloads)} payloads")
    m = _as_matrix(vectors, len(ids))
    if len(ids) and m.shape[1] != dim:
        raise StoreError(f"vectors have dim {m.shape[1]}, the collection holds dim {dim}")
    return m


def _jsonable(value: Any) -> Any:
    """Payload values as plain JSON types (numpy scalars and arrays converted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _norm_id(point_id: Any) -> str:
    return str(point_id)


def _vector_of(raw: Any) -> np.ndarray | None:
    """The "embedding" vector of a returned point as float32, whatever shape the backend used."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        raw = raw.get(VECTOR_NAME)
        if raw is None:
            return None
    return np.asarray(raw, dtype=np.float32)


def _sorted_facet(pairs: Sequence[tuple[Any, int]], limit: int) -> dict[Any, int]:
    ordered = sorted(pairs, key=lambda kv: (-kv[1], type(kv[0]).__name__, kv[0]))
    return dict(ordered[:limit])


def _group_values(payload: dict, key: str) -> list | None:
    """The group ids a point belongs to (str / int values of ``key``), as Qdrant does it:
    a point with a value of another type joins no group."""
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    values = value if isinstance(value, list) else [value]
    if not values or any(type(v) not in (str, int) for v in values):
        return None
    return list(dict.fromkeys(values))


def _assemble_groups(
    hits: Sequence[Hit], group_by: str, groups: int, group_size: int
) -> tuple[list[list[Hit]], bool]:
    """Qdrant's grouping over hits in score order; also says whether every group is full."""
    out: dict[Any, list[Hit]] = {}
    for hit in hits:
        for value in _group_values(hit.payload, group_by) or ():
            if value not in out:
                if len(out) >= groups:
                    continue
                out[value] = []
            if len(out[value]) < group_size:
                out[value].append(hit)
    result = list(out.values())
    complete = len(result) == groups and all(len(g) == group_size for g in result)
    return result, complete


def _graph_from_rows(
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


def _translate_filter(spec: Filter | None, make: _FilterMaker) -> Any:
    """The backend filter object for a dict spec (None for no filter)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"a filter is a dict, got {type(spec).__name__}")
    must: list = []
    must_not: list = []
    for key, value in spec.items():
        if key == "__not__":
            inner = _translate_filter(value, make)
            if inner is not None:
                must_not.append(inner)
            continue
        if not isinstance(key, str) or not key:
            raise ValueError(f"bad filter key {key!r}")
        if value is None:
            must.append(make.is_empty(key))
        elif isinstance(value, dict):
            unknown = set(value) - set(_RANGE_KEYS)
            if unknown or not value:
                raise ValueError(f"filter range for {key!r} takes only {_RANGE_KEYS}, got {sorted(value)}")
            must.append(make.range(key, **{k: float(v) for k, v in value.items() if v is not None}))
        elif isinstance(value, (list, tuple, set)):
            values = [_jsonable(v) for v in value]
            if not all(type(v) is str for v in values) and not all(type(v) is int for v in values):
                raise ValueError(f"filter 'any' values for {key!r} must be all str or all int")
            must.append(make.match_any(key, values))
        else:
            value = _jsonable(value)
            if isinstance(value, float):
                # Equality within a few ulps: Qdrant Edge may return stored payload floats
                # changed in the last bit (measured: ~1 in 9 values, relative error 2e-16).
                tol = abs(value) * 1e-12
                must.append(make.range(key, gte=value - tol, lte=value + tol))
            elif isinstance(value, (str, int, bool)):
                must.append(make.match_value(key, value))
            else:
                raise ValueError(f"cannot filter {key!r} on a {type(value).__name__}")
    if not must and not must_not:
        return None
    return make.filter(must or None, must_not or None)


class _FilterMaker:
    """Builds one backend's filter objects (see ``_translate_filter``)."""

    def match_value(self, key: str, value: Any) -> Any: ...
    def match_any(self, key: str, values: list) -> Any: ...
    def range(self, key: str, **bounds: float) -> Any: ...
    def is_empty(self, key: str) -> Any: ...
    def has_id(self, ids: Sequence[str]) -> Any: ...
    def filter(self, must: list | None, must_not: list | None) -> Any: ...

    def and_not_ids(self, flt: Any, ids: Sequence[str]) -> Any:
        """``flt`` AND NOT (id in ids)."""
        if not ids:
            return flt
        return self.filter([flt] if flt is not None else None, [self.has_id(ids)])

    def and_has_field(self, flt: Any, key: str) -> Any:
        """``flt`` AND (``key`` is not empty)."""
        return self.filter([flt] if flt is not None else None, [self.is_empty(key)])


# =========================================================================================
# Qdrant Edge
# =========================================================================================


class _EdgeFilters(_FilterMaker):
    def __init__(self, qe: Any):
        self.qe = qe

    def match_value(self, key, value):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchValue(value))

    def match_any(self, key, values):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchAny(values))

    def range(self, key, **bounds):
        return self.qe.FieldCondition(key=key, range=self.qe.RangeFloat(**bounds))

    def is_empty(self, key):
        return self.qe.IsEmptyCondition(key)

    def has_id(self, ids):
        return self.qe.HasIdCondition({str(i) for i in ids})

    def filter(self, must, must_not):
        return self.qe.Filter(must=must, must_not=must_not)


class _Shard:
    """One open EdgeShard and the lock that serialises calls on it."""

    def __init__(self, shard: Any, dim: int):
        self.shard = shard
        self.dim = dim
        self.lock = threading.RLock()


class EdgeStore(Store):
    """Qdrant Edge: one ``EdgeShard`` per collection in ``root/<name>/``, opened on first use
    and kept open (the shard holds a lock on its WAL, so one process at a time)."""

    backend = "edge"

    def __init__(self, root: Path):
        import qdrant_edge

        self._qe = qdrant_edge
        self._f = _EdgeFilters(qdrant_edge)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.RLock()  # guards self._shards and collection create/delete
        self._closed = False
        self._sweep()

    def _temp_dir(self, kind: str, name: str) -> Path:
        """A hidden working folder (``.creating-`` / ``.deleting-``) named with this process's pid."""
        return self.root / f".{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"

    def _sweep(self) -> None:
        """Remove working folders left by processes that died mid-create or mid-delete (kill -9):
        invisible to list_collections, but each holds Edge's preallocated files."""
        for path in list(self.root.glob(".creating-*")) + list(self.root.glob(".deleting-*")):
            owner = path.name.split("-")[1]
            if owner.isdigit():
                try:
                    os.kill(int(owner), 0)
                    continue  # its process is alive: still working
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue  # alive, another user's
            else:
                try:
                    if time.time() - path.stat().st_mtime < 3600:
                        continue  # an older naming without pid: only when stale
                except OSError:
                    continue
            shutil.rmtree(path, ignore_errors=True)

    # -- shard handling --------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / _check_name(name)

    def _get(self, name: str) -> _Shard:
        path = self._dir(name)
        with self._lock:
            if self._closed:
                raise StoreError("the vector store is closed")
            entry = self._shards.get(name)
            if entry is not None:
                return entry
            if not (path / _EDGE_CONFIG_FILE).is_file():
                raise StoreError(f"no collection named {name!r}")
            try:
                shard = self._qe.EdgeShard.load(str(path))
            except Exception as exc:  # Edge raises plain Exception
                if "WouldBlock" in str(exc):
                    raise StoreError(
                        f"collection {name!r} is open in another process (Qdrant Edge allows one): {path}"
                    ) from exc
                if "os error 30" in str(exc) or "os error 13" in str(exc):  # EROFS, EACCES
                    raise StoreError(
                        f"cannot open collection {name!r}: the data folder {self.root.parent} is read-only or not "
                        "writable, and Qdrant Edge opens its files for writing even to read (make it writable, "
                        "copy it elsewhere, or use a Qdrant server with QDRANT_URL)"
                    ) from exc
                raise StoreError(f"cannot open collection {name!r} at {path}: {exc}") from exc
            entry = _Shard(shard, self._read_dim(path))
            self._shards[name] = entry
            return entry

    @staticmethod
    def _read_dim(path: Path) -> int:
        config = json.loads((path / _EDGE_CONFIG_FILE).read_text())
        return int(config["vectors"][VECTOR_NAME]["size"])

    @contextmanager
    def _use(self, name: str) -> Iterator[_Shard]:
        entry = self._get(name)
        with entry.lock:
            try:
                yield entry
            except Exception as exc:
                if type(exc) is Exception:  # an error raised by Qdrant Edge itself
                    raise StoreError(f"Qdrant Edge, collection {name!r}: {exc}") from exc
                raise

    def _params(self, entry: _Shard) -> Any:
        if entry.shard.info().points_count <= EXACT_SEARCH_MAX_POINTS:
            return self._qe.SearchParams(exact=True)
        return self._qe.SearchParams(hnsw_ef=HNSW_EF)

    def _request(
        self,
        entry: _Shard,
        vector: np.ndarray,
        limit: int,
        flt: Any,
        with_vectors: bool = False,
        with_payload: bool = True,
    ) -> Any:
        qe = self._qe
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(_as_vector(vector).tolist(), using=VECTOR_NAME),
            filter=flt,
            with_payload=with_payload,
            with_vector=[VECTOR_NAME] if with_vectors else False,
            params=self._params(entry),
        )

    @staticmethod
    def _hit(point: Any, with_vectors: bool = False) -> Hit:
        return Hit(
            id=_norm_id(point.id),
            score=float(point.score),
            payload=dict(point.payload or {}),
            vector=_vector_of(point.vector) if with_vectors else None,
        )

    def _create_indexes(self, entry: _Shard, indexes: dict[str, str]) -> None:
        qe = self._qe
        schema = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
            "bool": qe.PayloadSchemaType.Bool,
            "text": qe.PayloadSchemaType.Text,
            "datetime": qe.PayloadSchemaType.Datetime,
            "uuid": qe.PayloadSchemaType.Uuid,
        }
        existing = set(entry.shard.info().payload_schema)
        for field, kind in indexes.items():
            if field not in existing:
                entry.shard.update(qe.UpdateOperation.create_field_index(field, schema[kind]))

    # -- collections -----------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _NAME_RE.match(p.name) and (p / _EDGE_CONFIG_FILE).is_file()
        )

    def has_collection(self, name: str) -> bool:
        return (self._dir(name) / _EDGE_CONFIG_FILE).is_file()

    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        indexes = _check_indexes(indexes)
        dim = int(dim)
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        path = self._dir(name)
        qe = self._qe
        with self._lock:
            if not (path / _EDGE_CONFIG_FILE).is_file():
                # Built under a hidden temporary name and renamed into place, so a crash
                # never leaves a half-made collection that list_collections would show.
                tmp = self._temp_dir("creating", name)
                try:
                    shard = qe.EdgeShard.create(
                        str(tmp),
                        qe.EdgeConfig(
                            vectors={VECTOR_NAME: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
                        ),
                    )
                    shard.flush()
                    shard.close()
                    if path.exists():  # an empty or broken leftover folder
                        shutil.rmtree(path)
                    os.replace(tmp, path)
                except Exception as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise StoreError(f"cannot create collection {name!r} at {path}: {exc}") from exc
        with self._use(name) as entry:
            if entry.dim != dim:
                raise StoreError(f"collection {name!r} exists with dim {entry.dim}, not {dim}")
            self._create_indexes(entry, indexes)
            entry.shard.flush()

    def collection_dim(self, name: str) -> int:
        return self._get(name).dim

    def delete_collection(self, name: str) -> None:
        path = self._dir(name)
        with self._lock:
            if not path.exists():
                return
            if (path / _EDGE_CONFIG_FILE).is_file():
                self._get(name)  # a StoreError if another process has it open
            entry = self._shards.pop(name, None)
            if entry is not None:
                with entry.lock:
                    entry.shard.close()
            # Renamed away first: the collection disappears at once even if removal is slow.
            trash = self._temp_dir("deleting", name)
            os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def build_hnsw(self, name: str) -> None:
        """Build Qdrant's HNSW graph for a collection (Edge's ``optimize()``: 12 s at 100k x 200-d,
        8 min at 1M on 2 cores; Edge leaves collections under ~20 MB of vectors unindexed).
        Queries use it only above ``EXACT_SEARCH_MAX_POINTS`` points."""
        with self._use(name) as entry:
            entry.shard.optimize()
            entry.shard.flush()

    def indexed_count(self, name: str) -> int:
        with self._use(name) as entry:
            return int(entry.shard.info().indexed_vectors_count or 0)

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        qe = self._qe
        with self._use(name) as entry:
            matrix = _check_upsert(ids, vectors, payloads, entry.dim)
            if not len(ids):
                return
            for start in range(0, len(ids), UPSERT_CHUNK):
                points = [
                    qe.Point(str(ids[i]), {VECTOR_NAME: matrix[i].tolist()}, _jsonable(payloads[i] or {}))
                    for i in range(start, min(len(ids), start + UPSERT_CHUNK))
                ]
                # One operation = one WAL record: replayed whole on the next load, or not at all.
                entry.shard.update(qe.UpdateOperation.upsert_points(points))
            entry.shard.flush()

    def delete(self, name: str, ids: list[str]) -> None:
        if not ids:
            return
        with self._use(name) as entry:
            entry.shard.update(self._qe.UpdateOperation.delete_points([str(i) for i in ids]))
            entry.shard.flush()

    def delete_by_filter(self, name: str, flt: Filter) -> None:
        translated = _translate_filter(flt, self._f)
        if translated is None:
            raise ValueError("delete_by_filter needs a non-empty filter (use delete_collection to drop all)")
        with self._use(name) as entry:
            entry.shard.update(self._qe.UpdateOperation.delete_points_by_filter(translated))
            entry.shard.flush()

    # -- reads -----------------------------------------------------------------------------
    def count(self, name: str, flt: Filter | None = None) -> int:
        translated = _translate_filter(flt, self._f)
        with self._use(name) as entry:
            return int(entry.shard.count(self._qe.CountRequest(exact=True, filter=translated)))

    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        if not ids:
            return []
        with self._use(name) as entry:
            found = entry.shard.retrieve(
                [str(i) for i in ids], with_payload=True, with_vector=[VECTOR_NAME] if with_vectors else False
            )
        by_id = {
            _norm_id(r.id): Record(
                _norm_id(r.id), dict(r.payload or {}), _vector_of(r.vector) if with_vectors else None
            )
            for r in found
        }
        return [by_id[str(i)] for i in dict.fromkeys(ids) if str(i) in by_id]

    def scroll(
        self, name: str, flt: Filter | None = None, with_vectors: bool = False, batch: int = 1000
    ) -> Iterator[Record]:
        translated = _translate_filter(flt, self._f)
        offset = None
        while True:
            with self._use(name) as entry:
                records, offset = entry.shard.scroll(
                    self._qe.ScrollRequest(
                        offset=offset,
                        limit=max(1, int(batch)),
                        filter=translated,
                        with_payload=True,
                        with_vector=[VECTOR_NAME] if with_vectors else False,
                    )
                )
            for r in records:
                yield Record(
                    _norm_id(r.id), dict(r.payload or {}), _vector_of(r.vector) if with_vectors else None
                )
            if offset is None:
                return

    # -- vector queries --------------------------------------------------------------------
    def query(
        self, name: str, vector: np.ndarray, k: int, flt: Filter | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        translated = _translate_filter(flt, self._f)
        with self._use(name) as entry:
            points = entry.shard.query(self._request(entry, vector, _check_k(k), translated, with_vectors))
        return [self._hit(p, with_vectors) for p in points]

    def query_batch(
        self, name: str, vectors: np.ndarray, k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        matrix = _as_matrix(vectors)
        return [
            [self._hit(p) for p in row]
            for row in self._batch(name, matrix, _check_k(k), _translate_filter(flt, self._f))
        ]

    def _batch(
        self, name: str, matrix: np.ndarray, limit: int, translated: Any, with_payload: bool = True
    ) -> list:
        qe = self._qe
        rows: list = []
        for start in range(0, len(matrix), QUERY_BATCH_CHUNK):
            with self._use(name) as entry:
                requests = [
                    self._request(entry, v, limit, translated, with_payload=with_payload)
                    for v in matrix[start : start + QUERY_BATCH_CHUNK]
                ]
                rows.extend(entry.shard.query_batch(qe.QueryBatchRequest(requests)))
        return rows

    def recommend_average(
        self,
        name: str,
        positive_ids: list[str],
        k: int,
        flt: Filter | None = None,
        negative_ids: list[str] | None = None,
    ) -> list[Hit]:
        # Edge has RecommendBestScore / SumScores but no average-vector strategy: it is
        # Qdrant's own formula (mean of positives, plus (mean pos - mean neg) with negatives,
        # the example points excluded) computed here, then one Nearest query in Edge.
        positive_ids = [str(i) for i in positive_ids]
        negative_ids = [str(i) for i in negative_ids or []]
        if not positive_ids:
            raise ValueError("recommend_average needs at least one positive id")
        query = _average_vector(self, name, positive_ids, negative_ids)
        translated = self._f.and_not_ids(_translate_filter(flt, self._f), positive_ids + negative_ids)
        with self._use(name) as entry:
            points = entry.shard.query(self._request(entry, query, _check_k(k), translated))
        return [self._hit(p) for p in points]

    def facet(self, name: str, key: str, limit: int = 1000, flt: Filter | None = None) -> dict[Any, int]:
        qe = self._qe
        translated = _translate_filter(flt, self._f)
        with self._use(name) as entry:
            if key not in entry.shard.info().payload_schema:
                # Qdrant facets read a payload index; make one as the server would need.
                self._create_indexes(entry, {key: self._facet_index_kind(name, key)})
                entry.shard.flush()
            response = entry.shard.facet(
                qe.FacetRequest(key=key, limit=int(limit), exact=True, filter=translated)
            )
        return _sorted_facet([(h.value, int(h.count)) for h in response.hits], int(limit))

    def query_groups(
        self,
        name: str,
        vector: np.ndarray,
        group_by: str,
        groups: int,
        group_size: int = 1,
        flt: Filter | None = None,
    ) -> list[list[Hit]]:
        # Edge has no groups call. Narrowest equivalent on Edge's own query: over-fetch the
        # nearest points that have the field, group them in score order as Qdrant does,
        # and widen the fetch until every group is full or every point has been seen.
        groups, group_size = _check_k(groups), _check_k(group_size)
        translated = self._f.and_has_field(_translate_filter(flt, self._f), group_by)
        limit = max(64, 4 * groups * group_size)
        while True:
            with self._use(name) as entry:
                points = entry.shard.query(self._request(entry, vector, limit, translated))
            result, complete = _assemble_groups([self._hit(p) for p in points], group_by, groups, group_size)
            if complete or len(points) < limit:
                return result
            limit *= 4

    def knn_graph(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        # Edge has no search-matrix call: every point's vector is queried against the same
        # filtered set with Edge's batched query (k + 1 hits, the point itself dropped).
        k = _check_k(k)
        records = sorted(self.scroll(name, flt, with_vectors=True), key=lambda r: r.id)
        ids = [r.id for r in records]
        if len(ids) < 2:
            return ids, np.zeros((len(ids), 0), np.int64), np.zeros((len(ids), 0), np.float32)
        k = min(k, len(ids) - 1)
        matrix = np.stack([r.vector for r in records])
        rows = self._batch(name, matrix, k + 1, _translate_filter(flt, self._f), with_payload=False)
        neighbours, scores = _graph_from_rows(
            ids, [[(_norm_id(p.id), p.score) for p in row] for row in rows], k
        )
        return ids, neighbours, scores

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            entries = list(self._shards.values())
        for entry in entries:
            with entry.lock:
                entry.shard.flush()

    def close(self) -> None:
        with self._lock:
            entries = list(self._shards.values())
            self._shards.clear()
            self._closed = True
        for entry in entries:
            with entry.lock:
                entry.shard.flush()
                entry.shard.close()


def _check_indexes(indexes: dict[str, str] | None) -> dict[str, str]:
    indexes = dict(indexes or {})
    for field, kind in indexes.items():
        if kind not in _INDEX_TYPES:
            raise ValueError(f"unknown payload index type {kind!r} for {field!r}; one of {_INDEX_TYPES}")
    return indexes


def _average_vector(store: Store, name: str, positive_ids: list[str], negative_ids: list[str]) -> np.ndarray:
    """Qdrant's average_vector recommend query: mean(pos) [+ mean(pos) - mean(neg)]."""
    wanted = list(dict.fromkeys(positive_ids + negative_ids))
    found = {r.id: r.vector for r in store.retrieve(name, wanted, with_vectors=True)}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise StoreError(f"{len(missing)} example point(s) not in collection {name!r}, e.g. {missing[0]}")
    mean_pos = np.mean([found[i] for i in positive_ids], axis=0)
    if not negative_ids:
        return mean_pos
    return mean_pos + mean_pos - np.mean([found[i] for i in negative_ids], axis=0)


# =========================================================================================
# qdrant-client (server, cluster, or in-memory)
# =========================================================================================


class _ClientFilters(_FilterMaker):
    def __init__(self, models: Any):
        self.m = models

    def match_value(self, key, value):
        return self.m.FieldCondition(key=key, match=self.m.MatchValue(value=value))

    def match_any(self, key, values):
        return self.m.FieldCondition(key=key, match=self.m.MatchAny(any=values))

    def range(self, key, **bounds):
        return self.m.FieldCondition(key=key, range=self.m.Range(**bounds))

    def is_empty(self, key):
        return self.m.IsEmptyCondition(is_empty=self.m.PayloadField(key=key))

    def has_id(self, ids):
        return self.m.HasIdCondition(has_id=[str(i) for i in ids])

    def filter(self, must, must_not):
        return self.m.Filter(must=must, must_not=must_not)


def _client_call(method: Callable) -> Callable:
    """Turns qdrant-client / transport failures into one-line StoreErrors."""

    @functools.wraps(method)
    def wrapper(self: ClientStore, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            error = self._translate_error(exc)
            if error is None:
                raise
            raise error from exc

    return wrapper


class ClientStore(Store):
    """qdrant-client: a Qdrant server or cluster, or its in-process ``":memory:"`` mode."""

    def __init__(self, client: Any, backend: str, where: str):
        from qdrant_client import models

        self._client = client
        self._m = models
        self._f = _ClientFilters(models)
        self.backend = backend
        self.where = where
        # The local (":memory:") mode is plain Python and not thread-safe: serialise it.
        self._lock: Any = threading.RLock() if backend == "memory" else _NoLock()
        self._counts: dict[str, tuple[float, int]] = {}

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout_s: int = 30) -> ClientStore:
        """A store on the Qdrant server at ``url``; nothing is sent until the first call."""
        from qdrant_client import QdrantClient

        try:
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False)
        except Exception as exc:
            raise StoreError(f"bad Qdrant URL {url!r}: {exc}") from exc
        return cls(client, "server", url)

    @classmethod
    def in_memory(cls) -> ClientStore:
        """A throw-away store in qdrant-client's local in-memory mode."""
        from qdrant_client import QdrantClient

        return cls(QdrantClient(":memory:"), "memory", ":memory:")

    def _translate_error(self, exc: Exception) -> StoreError | None:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, ResponseHandlingException):
            reason = exc.source if getattr(exc, "source", None) is not None else exc
            return StoreError(f"cannot reach Qdrant at {self.where}: {reason}")
        if isinstance(exc, UnexpectedResponse):
            if exc.status_code in (401, 403):
                return StoreError(
                    f"Qdrant at {self.where} refused access (check QDRANT_API_KEY): {exc.reason_phrase}"
                )
            detail = exc.content.decode("utf-8", "replace") if exc.content else exc.reason_phrase
            try:  # Qdrant answers {"status": {"error": "..."}}
                detail = json.loads(detail)["status"]["error"]
            except Exception:
                pass
            return StoreError(f"Qdrant at {self.where} answered {exc.status_code}: {detail}")
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return StoreError(f"cannot reach Qdrant at {self.where}: {exc}")
        try:
            import httpx

            if isinstance(exc, httpx.TransportError):
                return StoreError(f"cannot reach Qdrant at {self.where}: {exc}")
        except ImportError:  # pragma: no cover
            pass
        if isinstance(exc, ValueError) and "not found" in str(exc):  # local mode
            return StoreError(str(exc))
        return None

    def _params(self, name: str) -> Any:
        if self.backend == "memory":
            return None  # local mode always scans exactly (and warns about search params)
        now = time.monotonic()
        cached = self._counts.get(name)
        if cached is None or now - cached[0] > 30:
            cached = (now, int(self._client.count(name, exact=False).count))
            self._counts[name] = cached
        if cached[1] <= EXACT_SEARCH_MAX_POINTS:
            return self._m.SearchParams(exact=True)
        return self._m.SearchParams(hnsw_ef=HNSW_EF)

    def _require(self, name: str) -> None:
        _check_name(name)
        if not self._client.collection_exists(name):
            raise StoreError(f"no collection named {name!r}")

    @staticmethod
    def _hit(point: Any, with_vectors: bool = False) -> Hit:
        return Hit(
            id=_norm_id(point.id),
            score=float(point.score),
            payload=dict(point.payload or {}),
            vector=_vector_of(point.vector) if with_vectors else None,
        )

    # -- collections -----------------------------------------------------------------------
    @_client_call
    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self._client.get_collections().collections)

    @_client_call
    def has_collection(self, name: str) -> bool:
        return bool(self._client.collection_exists(_check_name(name)))

    @_client_call
    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        m = self._m
        indexes = _check_indexes(indexes)
        dim = int(dim)
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        _check_name(name)
        if self._client.collection_exists(name):
            existing = self._dim(name)
            if existing != dim:
                raise StoreError(f"collection {name!r} exists with dim {existing}, not {dim}")
            schema = self._client.get_collection(name).payload_schema or {}
        else:
            self._client.create_collection(
                name, vectors_config={VECTOR_NAME: m.VectorParams(size=dim, distance=m.Distance.COSINE)}
            )
            schema = {}
        for field, kind in indexes.items():
            if field not in schema:
                self._create_index(name, field, kind)

    def _create_index(self, name: str, field: str, kind: str) -> None:
        with warnings.catch_warnings():  # local mode warns that indexes have no effect there
            warnings.simplefilter("ignore")
            self._client.create_payload_index(
                name, field, field_schema=self._m.PayloadSchemaType(kind), wait=True
            )

    def _dim(self, name: str) -> int:
        vectors = self._client.get_collection(name).config.params.vectors
        if isinstance(vectors, dict) and VECTOR_NAME in vectors:
            return int(vectors[VECTOR_NAME].size)
        raise StoreError(f"collection {name!r} has no {VECTOR_NAME!r} vector: not made by this app")

    @_client_call
    def collection_dim(self, name: str) -> int:
        self._require(name)
        return self._dim(name)

    @_client_call
    def indexed_count(self, name: str) -> int:
        self._require(name)
        return int(self._client.get_collection(name).indexed_vectors_count or 0)

    @_client_call
    def delete_collection(self, name: str) -> None:
        _check_name(name)
        self._counts.pop(name, None)
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    # -- writes ----------------------------------------------------------------------------
    @_client_call
    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        self._require(name)
        matrix = _check_upsert(ids, vectors, payloads, self._dim(name))
        self._counts.pop(name, None)
        for start in range(0, len(ids), UPSERT_CHUNK):
            stop = min(len(ids), start + UPSERT_CHUNK)
            points = [
                self._m.PointStruct(
                    id=str(ids[i]),
                    vector={VECTOR_NAME: matrix[i].tolist()},
                    payload=_jsonable(payloads[i] or {}),
                )
                for i in range(start, stop)
            ]
            self._client.upsert(name, points=points, wait=True)

    @_client_call
    def delete(self, name: str, ids: list[str]) -> None:
        self._require(name)
        if ids:
            self._counts.pop(name, None)
            self._client.delete(
                name, points_selector=self._m.PointIdsList(points=[str(i) for i in ids]), wait=True
            )

    @_client_call
    def delete_by_filter(self, name: str, flt: Filter) -> None:
        translated = _translate_filter(flt, self._f)
        if translated is None:
            raise ValueError("delete_by_filter needs a non-empty filter (use delete_collection to drop all)")
        self._require(name)
        self._counts.pop(name, None)
        self._client.delete(name, points_selector=self._m.FilterSelector(filter=translated), wait=True)

    # -- reads -----------------------------------------------------------------------------
    @_client_call
    def count(self, name: str, flt: Filter | None = None) -> int:
        return int(
            self._client.count(
                _check_name(name), count_filter=_translate_filter(flt, self._f), exact=True
            ).count
        )

    @_client_call
    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        if not ids:
            _check_name(name)
            return []
        found = self._client.retrieve(
            _check_name(name),
            [str(i) for i in ids],
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
        )
        by_id = {
            _norm_id(r.id): Record(
                _norm_id(r.id), dict(r.payload or {}), _vector_of(r.vector) if with_vectors else None
            )
            for r in found
        }
        return [by_id[str(i)] for i in dict.fromkeys(ids) if str(i) in by_id]

    def scroll(
        self, name: str, flt: Filter | None = None, with_vectors: bool = False, batch: int = 1000
    ) -> Iterator[Record]:
        translated = _translate_filter(flt, self._f)
        offset = None
        while True:
            records, offset = self._scroll_page(name, translated, with_vectors, max(1, int(batch)), offset)
            for r in records:
                yield Record(
                    _norm_id(r.id), dict(r.payload or {}), _vector_of(r.vector) if with_vectors else None
                )
            if offset is None:
                return

    @_client_call
    def _scroll_page(self, name: str, translated: Any, with_vectors: bool, limit: int, offset: Any) -> tuple:
        return self._client.scroll(
            _check_name(name),
            scroll_filter=translated,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
        )

    # -- vector queries --------------------------------------------------------------------
    @_client_call
    def query(
        self, name: str, vector: np.ndarray, k: int, flt: Filter | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        response = self._client.query_points(
            _check_name(name),
            query=_as_vector(vector).tolist(),
            using=VECTOR_NAME,
            query_filter=_translate_filter(flt, self._f),
            search_params=self._params(name),
            limit=_check_k(k),
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
        )
        return [self._hit(p, with_vectors) for p in response.points]

    @_client_call
    def query_batch(
        self, name: str, vectors: np.ndarray, k: int, flt: Filter | None = None
    ) -> list[list[Hit]]:
        return [
            [self._hit(p) for p in row]
            for row in self._batch(
                _check_name(name), _as_matrix(vectors), _check_k(k), _translate_filter(flt, self._f)
            )
        ]

    def _batch(
        self, name: str, matrix: np.ndarray, limit: int, translated: Any, with_payload: bool = True
    ) -> list:
        params = self._params(name)
        rows: list = []
        for start in range(0, len(matrix), QUERY_BATCH_CHUNK):
            requests = [
                self._m.QueryRequest(
                    query=v.tolist(),
                    using=VECTOR_NAME,
                    filter=translated,
                    params=params,
                    limit=limit,
                    with_payload=with_payload,
                )
                for v in matrix[start : start + QUERY_BATCH_CHUNK]
            ]
            rows.extend(r.points for r in self._client.query_batch_points(name, requests=requests))
        return rows

    @_client_call
    def recommend_average(
        self,
        name: str,
        positive_ids: list[str],
        k: int,
        flt: Filter | None = None,
        negative_ids: list[str] | None = None,
    ) -> list[Hit]:
        m = self._m
        positive_ids = [str(i) for i in positive_ids]
        negative_ids = [str(i) for i in negative_ids or []]
        if not positive_ids:
            raise ValueError("recommend_average needs at least one positive id")
        _check_name(name)
        wanted = list(dict.fromkeys(positive_ids + negative_ids))
        found = {_norm_id(r.id) for r in self._client.retrieve(name, wanted, with_payload=False)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise StoreError(f"{len(missing)} example point(s) not in collection {name!r}, e.g. {missing[0]}")
        response = self._client.query_points(
            name,
            query=m.RecommendQuery(
                recommend=m.RecommendInput(
                    positive=positive_ids,
                    negative=negative_ids or None,
                    strategy=m.RecommendStrategy.AVERAGE_VECTOR,
                )
            ),
            using=VECTOR_NAME,
            query_filter=_translate_filter(flt, self._f),
            search_params=self._params(name),
            limit=_check_k(k),
            with_payload=True,
        )
        return [self._hit(p) for p in response.points]

    @_client_call
    def facet(self, name: str, key: str, limit: int = 1000, flt: Filter | None = None) -> dict[Any, int]:
        from qdrant_client.http.exceptions import UnexpectedResponse

        self._require(name)
        translated = _translate_filter(flt, self._f)

        def ask() -> Any:
            return self._client.facet(name, key, facet_filter=translated, limit=int(limit), exact=True)

        try:
            response = ask()
        except UnexpectedResponse as exc:
            # A server facets only indexed fields: make the index and ask again.
            if exc.status_code != 400 or b"index" not in (exc.content or b""):
                raise
            self._create_index(name, key, self._facet_index_kind(name, key))
            response = ask()
        return _sorted_facet([(h.value, int(h.count)) for h in response.hits], int(limit))

    @_client_call
    def query_groups(
        self,
        name: str,
        vector: np.ndarray,
        group_by: str,
        groups: int,
        group_size: int = 1,
        flt: Filter | None = None,
    ) -> list[list[Hit]]:
        response = self._client.query_points_groups(
            _check_name(name),
            group_by=group_by,
            query=_as_vector(vector).tolist(),
            using=VECTOR_NAME,
            query_filter=_translate_filter(flt, self._f),
            search_params=self._params(name),
            limit=_check_k(groups),
            group_size=_check_k(group_size),
            with_payload=True,
        )
        return [[self._hit(p) for p in g.hits] for g in response.groups]

    @_client_call
    def knn_graph(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        k = _check_k(k)
        self._require(name)
        translated = _translate_filter(flt, self._f)
        n = int(self._client.count(name, count_filter=translated, exact=True).count)
        if n < 2:
            ids = sorted(r.id for r in self.scroll(name, flt))
            return ids, np.zeros((len(ids), 0), np.int64), np.zeros((len(ids), 0), np.float32)
        k = min(k, n - 1)
        if self.backend == "server" or n <= LOCAL_SEARCH_MATRIX_MAX_POINTS:
            try:
                # Qdrant's search matrix with every point as a sample: the full kNN graph.
                result = self._client.search_matrix_offsets(
                    name, query_filter=translated, limit=k, sample=n, using=VECTOR_NAME
                )
                ids = [_norm_id(i) for i in result.ids]
                rows: list[list[tuple[str, float]]] = [[] for _ in ids]
                for r, c, s in zip(result.offsets_row, result.offsets_col, result.scores):
                    rows[r].append((ids[c], float(s)))
                order = sorted(range(len(ids)), key=lambda i: ids[i])
                ids = [ids[i] for i in order]
                rows = [sorted(rows[i], key=lambda t: -t[1]) for i in order]
                neighbours, scores = _graph_from_rows(ids, rows, k)
                return ids, neighbours, scores
            except Exception as exc:
                if self.backend != "server" or self._translate_error(exc) is None:
                    raise
                # An older server without the search matrix: fall through to batched queries.
        # Local mode above LOCAL_SEARCH_MATRIX_MAX_POINTS (its search matrix runs one filtered
        # Python search per point): every vector queried with one batched call instead.
        records = sorted(self.scroll(name, flt, with_vectors=True), key=lambda r: r.id)
        ids = [r.id for r in records]
        matrix = np.stack([r.vector for r in records])
        found = self._batch(name, matrix, k + 1, translated, with_payload=False)
        neighbours, scores = _graph_from_rows(
            ids, [[(_norm_id(p.id), p.score) for p in row] for row in found], k
        )
        return ids, neighbours, scores

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing an unreachable client must not fail
            pass


class _NoLock:
    """A no-op context manager: the HTTP client is thread-safe."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
