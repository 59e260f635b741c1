"""The vector store: one narrow interface over Qdrant, two real backends.

Every Qdrant import of the project lives in this package; the rest of the code talks to
:class:`Store` with plain Python values and numpy arrays.

- ``interface.py``: :class:`Store` (the abstract interface), :class:`Record`, :class:`Hit`
  (the one scored-result type, also ``index.Hit``), :class:`StoreError`, :func:`open_store`,
  and what both backends share (checks, point -> Record / Hit, scroll pagination, batched
  queries, the kNN graph from batched queries).
- ``filters.py``: the :data:`Filter` dict spec and its translation into each backend's objects.
- ``edge.py``: :class:`EdgeStore`, Qdrant Edge (``qdrant-edge-py``), Qdrant's engine running
  in-process; one ``EdgeShard`` per collection, each in its own folder under the store root.
  The default, under the app's data folder.
- ``client.py``: :class:`ClientStore`, ``qdrant-client`` talking to a Qdrant server or cluster
  (``QDRANT_URL`` + ``QDRANT_API_KEY``), or ``QdrantClient(":memory:")`` in tests.

:func:`open_store` picks one. Both backends give the same answers to the same calls
(tests/test_store.py runs the same queries on both and compares them): cosine distance over
one named vector ``"embedding"``, scores are cosine similarities (higher is better), point
ids are UUID strings.

Exact vs approximate search: up to ``EXACT_SEARCH_MAX_POINTS`` (20k) points in a collection every
vector query is an exact (brute-force) scan, so results are exact and the two backends agree
point for point; an exact top-10 at 20k x 512 takes ~2 ms on 2 cores. Above it, queries ask the
HNSW graph with ``ef`` = ``HNSW_EF`` (128). Both were decided from recall measured with
``benchmarks/query_latency.py --tune 100000`` (load average ~16 on 2 cores, so absolute times are
inflated; compare ratios): on 100k x 512-d clustered vectors Edge HNSW ef 128 found 0.991 of the
true top-10 at p50 0.93 ms vs 106 ms exact (ef 64: 0.934, below the 0.95 goal); on 100k jittered
copies of real embeddings (dsp, the benchmark set) ef 64 already gave 0.995 and ef 128 1.000.
Qdrant's int8 scalar quantization (``QUANTIZATION = "int8"``) did not keep recall (0.89 clustered,
0.13 on the real-derived vectors) and is off. Edge builds a collection's graph only when asked
(``build_hnsw``): indexing does so for a clip collection that outgrows the threshold
(index/ingest.py); Edge leaves collections under ~20 MB of vectors unindexed (they are scanned,
exactly). Aspect collections (index/aspects.py, 10-67 dims) are not given a graph: a scan of
100k x 67-d is cheaper than the graph. ``EXACT_SEARCH_MAX_POINTS``, ``HNSW_EF`` and
``QUANTIZATION`` are read from this package at call time, so setting them here (as tests and
benchmarks do) reaches both backends.
"""

from .client import ClientStore
from .edge import EdgeStore
from .filters import Filter
from .interface import (
    EXACT_SEARCH_MAX_POINTS,
    HNSW_EF,
    LOCAL_SEARCH_MATRIX_MAX_POINTS,
    QUANTIZATION,
    QUERY_BATCH_CHUNK,
    UPSERT_CHUNK,
    VECTOR_NAME,
    DamagedCollectionError,
    Hit,
    Record,
    Store,
    StoreError,
    open_store,
)

__all__ = [
    "EXACT_SEARCH_MAX_POINTS",
    "HNSW_EF",
    "LOCAL_SEARCH_MATRIX_MAX_POINTS",
    "QUANTIZATION",
    "QUERY_BATCH_CHUNK",
    "UPSERT_CHUNK",
    "VECTOR_NAME",
    "ClientStore",
    "DamagedCollectionError",
    "EdgeStore",
    "Filter",
    "Hit",
    "Record",
    "Store",
    "StoreError",
    "open_store",
]
