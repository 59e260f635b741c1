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

Exact vs approximate search: up to ``EXACT_SEARCH_MAX_POINTS`` points in a collection every
vector query is an exact (brute-force) scan, so results are exact and the two backends agree
point for point. Measured on Qdrant Edge (2 CPU cores, 20k x 512 float32): an exact top-10
query takes ~2.5 ms, a batch of 1000 exact queries ~1 s; HNSW after ``optimize()`` took 43 s
to build and its default search found only ~37 % of the true top-10 on random vectors (82 %
with ef=512). Libraries of audio clips sit far below the threshold, so exactness costs nothing
noticeable. Above it, queries ask HNSW with a high ``ef`` (``HNSW_EF``). Edge builds a
collection's graph only when asked (``build_hnsw``): indexing does so for a clip collection
that outgrows the threshold (index/ingest.py). On clustered vectors (closer to real
embeddings than random ones) the graph found 99.9 % (100k) and 98.8 % (1M) of the true top-10
at 1.4 ms / 5.5 ms vs 4.8 ms / 49 ms exact (benchmarks/query_latency.py).
``EXACT_SEARCH_MAX_POINTS`` is read from this package at call time, so setting it here (as
tests and benchmarks do) reaches both backends.
"""

from .client import ClientStore
from .edge import EdgeStore
from .filters import Filter
from .interface import (
    EXACT_SEARCH_MAX_POINTS,
    HNSW_EF,
    LOCAL_SEARCH_MATRIX_MAX_POINTS,
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
