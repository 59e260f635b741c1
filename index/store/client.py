"""qdrant-client: a Qdrant server or cluster (``QDRANT_URL`` + ``QDRANT_API_KEY``), or its
in-process ``":memory:"`` mode (tests; the same client code path as a server).

Every public call goes through :func:`_client_call`, which serialises the (not thread-safe)
local mode and turns transport and server failures into one-line StoreErrors.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .filters import ClientFilters, Filter, jsonable
from .interface import (
    LOCAL_SEARCH_MATRIX_MAX_POINTS,
    QUERY_BATCH_CHUNK,
    UPSERT_CHUNK,
    VECTOR_NAME,
    Hit,
    Record,
    Store,
    StoreError,
    as_vector,
    check_indexes,
    check_k,
    check_name,
    check_upsert,
    exact_search_max_points,
    graph_from_rows,
    hnsw_ef,
    point_hit,
    records_in_order,
    sorted_facet,
)


CLUSTER_ENV = {"shard_number": "QDRANT_SHARDS", "replication_factor": "QDRANT_REPLICAS",
               "write_consistency_factor": "QDRANT_WRITE_CONSISTENCY"}


def cluster_options(env: dict[str, str] | None = None) -> dict[str, int]:
    """Qdrant cluster settings of new collections from the environment ($QDRANT_SHARDS,
    $QDRANT_REPLICAS, $QDRANT_WRITE_CONSISTENCY; unset ones keep the server's defaults);
    StoreError (one line) for a value that is not a positive whole number."""
    import os

    env = os.environ if env is None else env
    out: dict[str, int] = {}
    for key, var in CLUSTER_ENV.items():
        raw = (env.get(var) or "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise StoreError(f"${var} must be a whole number of at least 1 (got {raw!r})")
        out[key] = value
    if out.get("write_consistency_factor", 1) > out.get("replication_factor", out.get("write_consistency_factor", 1)):
        raise StoreError(f"$QDRANT_WRITE_CONSISTENCY ({out['write_consistency_factor']}) cannot exceed "
                         f"$QDRANT_REPLICAS ({out['replication_factor']})")
    return out


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

    def __init__(self, client: Any, backend: str, where: str, cluster: dict[str, int] | None = None):
        from qdrant_client import models

        self._client = client
        self._m = models
        self._f = ClientFilters(models)
        self.backend = backend
        self.where = where
        # The local (":memory:") mode is plain Python and not thread-safe: serialise it.
        self._lock: Any = threading.RLock() if backend == "memory" else _NoLock()
        self._counts: dict[str, tuple[float, int]] = {}
        # how new collections spread over a Qdrant cluster (`cluster_options`); {} = the server's defaults
        self.cluster = dict(cluster or {})

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout_s: int = 30,
                cluster: dict[str, int] | None = None) -> ClientStore:
        """A store on the Qdrant server at ``url``; nothing is sent until the first call. ``cluster``:
        shard_number / replication_factor / write_consistency_factor of new collections (default:
        from $QDRANT_SHARDS / $QDRANT_REPLICAS / $QDRANT_WRITE_CONSISTENCY, see `cluster_options`)."""
        from qdrant_client import QdrantClient

        cluster = cluster_options() if cluster is None else cluster
        try:
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False)
        except Exception as exc:
            raise StoreError(f"bad Qdrant URL {url!r}: {exc}") from exc
        return cls(client, "server", url, cluster)

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
        if cached[1] <= exact_search_max_points():
            return self._m.SearchParams(exact=True)
        return self._m.SearchParams(hnsw_ef=hnsw_ef())

    def _require(self, name: str) -> None:
        check_name(name)
        if not self._client.collection_exists(name):
            raise StoreError(f"no collection named {name!r}")

    # -- collections -----------------------------------------------------------------------
    @_client_call
    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self._client.get_collections().collections)

    @_client_call
    def has_collection(self, name: str) -> bool:
        return bool(self._client.collection_exists(check_name(name)))

    @_client_call
    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        m = self._m
        indexes = check_indexes(indexes)
        dim = int(dim)
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        check_name(name)
        if self._client.collection_exists(name):
            existing = self._dim(name)
            if existing != dim:
                raise StoreError(f"collection {name!r} exists with dim {existing}, not {dim}")
            schema = self._client.get_collection(name).payload_schema or {}
        else:
            self._client.create_collection(
                name, vectors_config={VECTOR_NAME: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                **self.cluster,
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
        check_name(name)
        self._counts.pop(name, None)
        if self._client.collection_exists(name):
            self._client.delete_collection(name)

    # -- writes ----------------------------------------------------------------------------
    @_client_call
    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        self._require(name)
        matrix = check_upsert(ids, vectors, payloads, self._dim(name))
        self._counts.pop(name, None)
        for start in range(0, len(ids), UPSERT_CHUNK):
            stop = min(len(ids), start + UPSERT_CHUNK)
            points = [
                self._m.PointStruct(
                    id=str(ids[i]),
                    vector={VECTOR_NAME: matrix[i].tolist()},
                    payload=jsonable(payloads[i] or {}),
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
        translated = self._translate(flt)
        if translated is None:
            raise ValueError("delete_by_filter needs a non-empty filter (use delete_collection to drop all)")
        self._require(name)
        self._counts.pop(name, None)
        self._client.delete(name, points_selector=self._m.FilterSelector(filter=translated), wait=True)

    @_client_call
    def set_payload(self, name: str, ids: list[str], payload: dict) -> None:
        self._require(name)
        body = jsonable(payload)
        for start in range(0, len(ids), UPSERT_CHUNK):
            chunk = [str(i) for i in ids[start:start + UPSERT_CHUNK]]
            self._client.set_payload(name, payload=body, points=chunk, wait=True)

    @_client_call
    def delete_payload(self, name: str, ids: list[str], keys: list[str]) -> None:
        self._require(name)
        if not keys:
            return
        for start in range(0, len(ids), UPSERT_CHUNK):
            chunk = [str(i) for i in ids[start:start + UPSERT_CHUNK]]
            self._client.delete_payload(name, keys=list(keys), points=chunk, wait=True)

    @_client_call
    def ensure_index(self, name: str, key: str, kind: str) -> None:
        self._require(name)
        check_indexes({key: kind})
        schema = self._client.get_collection(name).payload_schema or {}
        if key not in schema:
            self._create_index(name, key, kind)

    # -- reads -----------------------------------------------------------------------------
    @_client_call
    def count(self, name: str, flt: Filter | None = None) -> int:
        return int(
            self._client.count(
                check_name(name), count_filter=self._translate(flt), exact=True
            ).count
        )

    @_client_call
    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        if not ids:
            check_name(name)
            return []
        found = self._client.retrieve(
            check_name(name),
            [str(i) for i in ids],
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
        )
        return records_in_order(ids, found, with_vectors)

    @_client_call
    def _scroll_page(self, name: str, translated: Any, with_vectors: bool, limit: int, offset: Any) -> tuple:
        return self._client.scroll(
            check_name(name),
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
            check_name(name),
            query=as_vector(vector).tolist(),
            using=VECTOR_NAME,
            query_filter=self._translate(flt),
            search_params=self._params(name),
            limit=check_k(k),
            with_payload=True,
            with_vectors=[VECTOR_NAME] if with_vectors else False,
        )
        return [point_hit(p, with_vectors) for p in response.points]

    @_client_call
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
        check_name(name)
        wanted = list(dict.fromkeys(positive_ids + negative_ids))
        found = {str(r.id) for r in self._client.retrieve(name, wanted, with_payload=False)}
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
            query_filter=self._translate(flt),
            search_params=self._params(name),
            limit=check_k(k),
            with_payload=True,
        )
        return [point_hit(p) for p in response.points]

    @_client_call
    def facet(self, name: str, key: str, limit: int = 1000, flt: Filter | None = None) -> dict[Any, int]:
        from qdrant_client.http.exceptions import UnexpectedResponse

        self._require(name)
        translated = self._translate(flt)

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
        return sorted_facet([(h.value, int(h.count)) for h in response.hits], int(limit))

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
            check_name(name),
            group_by=group_by,
            query=as_vector(vector).tolist(),
            using=VECTOR_NAME,
            query_filter=self._translate(flt),
            search_params=self._params(name),
            limit=check_k(groups),
            group_size=check_k(group_size),
            with_payload=True,
        )
        return [[point_hit(p) for p in g.hits] for g in response.groups]

    @_client_call
    def knn_graph(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        k = check_k(k)
        self._require(name)
        translated = self._translate(flt)
        n = int(self._client.count(name, count_filter=translated, exact=True).count)
        if n >= 2 and (self.backend == "server" or n <= LOCAL_SEARCH_MATRIX_MAX_POINTS):
            k = min(k, n - 1)
            try:
                # Qdrant's search matrix with every point as a sample: the full kNN graph.
                result = self._client.search_matrix_offsets(
                    name, query_filter=translated, limit=k, sample=n, using=VECTOR_NAME
                )
                ids = [str(i) for i in result.ids]
                rows: list[list[tuple[str, float]]] = [[] for _ in ids]
                for r, c, s in zip(result.offsets_row, result.offsets_col, result.scores):
                    rows[r].append((ids[c], float(s)))
                order = sorted(range(len(ids)), key=lambda i: ids[i])
                ids = [ids[i] for i in order]
                rows = [sorted(rows[i], key=lambda t: -t[1]) for i in order]
                neighbours, scores = graph_from_rows(ids, rows, k)
                return ids, neighbours, scores
            except Exception as exc:
                if self.backend != "server" or self._translate_error(exc) is None:
                    raise
                # An older server without the search matrix: fall through to batched queries.
        # Local mode above LOCAL_SEARCH_MATRIX_MAX_POINTS (its search matrix runs one filtered
        # Python search per point), or fewer than 2 points: batched queries instead.
        return self._knn_graph_by_queries(name, k, flt)

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
