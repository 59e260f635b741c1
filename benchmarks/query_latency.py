"""Query latency of the vector store backends (index/store.py), on random unit vectors.

    python benchmarks/query_latency.py                      # Edge, 20k x 512
    python benchmarks/query_latency.py --n 5000 --backends edge,memory --knn

Prints one table row per backend: time to upsert everything, exact top-k query latency
(median and 95th percentile, unfiltered and filtered on a keyword), batched query cost per
query, and optionally the time of the full kNN graph.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.store import ClientStore, EdgeStore, Store  # noqa: E402


def _make(backend: str, root: Path) -> Store:
    return EdgeStore(root / "qdrant") if backend == "edge" else ClientStore.in_memory()


def _latency_ms(fn, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def run(backend: str, n: int, dim: int, n_queries: int, k: int, knn: bool) -> dict:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [str(uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | i)) for i in range(n)]
    payloads = [{"label": f"class{i % 10}", "start_s": float(i % 30)} for i in range(n)]
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    row: dict = {"backend": backend, "n": n, "dim": dim}
    with tempfile.TemporaryDirectory() as tmp, _make(backend, Path(tmp)) as store:
        store.create_collection("bench", dim, {"label": "keyword", "start_s": "float"})
        t = time.perf_counter()
        for start in range(0, n, 1024):
            store.upsert(
                "bench",
                ids[start : start + 1024],
                vectors[start : start + 1024],
                payloads[start : start + 1024],
            )
        row["upsert_s"] = time.perf_counter() - t
        row["query_p50_ms"], row["query_p95_ms"] = _latency_ms(lambda q: store.query("bench", q, k), queries)
        row["filtered_p50_ms"], _ = _latency_ms(
            lambda q: store.query("bench", q, k, {"label": "class3"}), queries
        )
        t = time.perf_counter()
        store.query_batch("bench", queries, k)
        row["batch_ms_per_query"] = (time.perf_counter() - t) * 1000 / n_queries
        # every answer is exact: check one against numpy
        want = np.argsort(-(vectors @ (queries[0] / np.linalg.norm(queries[0]))))[:k]
        row["exact"] = [h.id for h in store.query("bench", queries[0], k)] == [ids[i] for i in want]
        if knn:
            t = time.perf_counter()
            store.knn_graph("bench", 10)
            row["knn_graph_s"] = time.perf_counter() - t
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="points in the collection")
    parser.add_argument("--dim", type=int, default=512, help="vector size")
    parser.add_argument("--queries", type=int, default=100, help="queries timed")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--backends", default="edge", help="comma-separated: edge, memory")
    parser.add_argument("--knn", action="store_true", help="also time the full kNN graph (k=10)")
    args = parser.parse_args()
    rows = [
        run(b.strip(), args.n, args.dim, args.queries, args.k, args.knn) for b in args.backends.split(",")
    ]
    columns = [
        "backend",
        "n",
        "dim",
        "upsert_s",
        "query_p50_ms",
        "query_p95_ms",
        "filtered_p50_ms",
        "batch_ms_per_query",
        "knn_graph_s",
        "exact",
    ]
    columns = [c for c in columns if any(c in r for r in rows)]
    print(" | ".join(f"{c:>18}" for c in columns))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        print(" | ".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
