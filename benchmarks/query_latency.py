"""Query-by-example latency: Qdrant Edge, qdrant-client's in-memory backend and a numpy scan.

    python benchmarks/query_latency.py                                   # 10k, 100k, 1M x 200-d and 512-d
    python benchmarks/query_latency.py --sizes 10000,100000 --dims 512 --backends edge,numpy
    python benchmarks/query_latency.py --hnsw 100000 --hnsw-dims 200     # also build Edge's HNSW graph there

For each size and dimension the same random unit vectors (payload: a keyword label of 10
classes, so the filter keeps 10 %) go into each backend through `index/store/`, the code the
app uses. Per backend: load time (upsert, or building the matrix), query-by-example latency p50
and p99 over `--queries` queries (top-10, cosine), the same with a label filter, the filtered /
plain ratio, and recall@10 against the exact answer (numpy). The numpy row is a brute-force
scan of a float32 matrix (matmul + argpartition): the baseline and the memory-bandwidth floor;
each row's `x_numpy` is its p50 over numpy's p50 in the same run.

`--clusters C` draws vectors and queries around C random centres (spread 0.5 per axis, about
the structure of real embeddings) instead of uniformly on the sphere, the hardest case for HNSW.

Edge scans exactly (Qdrant's exact search) up to `EXACT_SEARCH_MAX_POINTS` points, which is
what the app does. With `--hnsw N`, at size N Edge also builds its HNSW graph (`optimize()`,
timed) and is queried through it (ef = `HNSW_EF`): the `edge-hnsw` row.
qdrant-client's local in-memory mode is a pure-Python scan; sizes above `--memory-max`
are skipped for it (said so in the table).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import index.store as store_mod  # noqa: E402
from index.store import ClientStore, EdgeStore  # noqa: E402

K = 10
N_CLASSES = 10
COLLECTION = "bench"


def make_vectors(n: int, dim: int, seed: int = 0, clusters: int = 0) -> np.ndarray:
    """n random unit vectors (float32), generated in chunks to keep the peak low; with
    ``clusters``, drawn around that many random centres (closer to real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim), dtype=np.float32) if clusters else None
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
        if centres is not None:
            block = centres[rng.integers(0, clusters, len(block))] + 0.5 * block
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + len(block)] = block
    return out


def exact_topk(matrix: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best cosine scores (unit rows), best first; mask keeps rows."""
    scores = matrix @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]


def timed(fn, queries: np.ndarray) -> tuple[list[float], list]:
    times, answers = [], []
    for q in queries:
        t = time.perf_counter()
        answers.append(fn(q))
        times.append((time.perf_counter() - t) * 1000)
    return times, answers


def recall(answers: list[list[int]], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(a) & set(t.tolist())) / len(t) for a, t in zip(answers, truth)]))


def bench_store(kind: str, vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray,
                truth: list, truth_f: list, hnsw: bool = False) -> dict:
    n, dim = vectors.shape
    ids = [str(uuid.UUID(int=(0xABCD << 64) | i)) for i in range(n)]
    index_of = {u: i for i, u in enumerate(ids)}
    row: dict = {"backend": kind + ("-hnsw" if hnsw else ""), "n": n, "dim": dim}
    with tempfile.TemporaryDirectory(prefix="qlat-") as tmp:
        store = EdgeStore(Path(tmp) / "qdrant") if kind == "edge" else ClientStore.in_memory()
        with store:
            store.create_collection(COLLECTION, dim, {"label": "keyword"})
            t = time.perf_counter()
            step = 4096
            for s in range(0, n, step):
                e = min(n, s + step)
                store.upsert(COLLECTION, ids[s:e], vectors[s:e],
                             [{"label": f"class{int(c)}"} for c in labels[s:e]])
            row["load_s"] = time.perf_counter() - t
            saved = store_mod.EXACT_SEARCH_MAX_POINTS
            if hnsw:
                t = time.perf_counter()
                store.build_hnsw(COLLECTION)
                row["hnsw_build_s"] = time.perf_counter() - t
                store_mod.EXACT_SEARCH_MAX_POINTS = 0  # every query goes through the graph
            try:
                store.query(COLLECTION, queries[0], K)  # warm
                plain_ms, plain = timed(lambda q: [index_of[h.id] for h in store.query(COLLECTION, q, K)], queries)
                filt_ms, filt = timed(
                    lambda q: [index_of[h.id] for h in store.query(COLLECTION, q, K, {"label": "class3"})], queries)
            finally:
                store_mod.EXACT_SEARCH_MAX_POINTS = saved
    row.update(_summary(plain_ms, filt_ms))
    row["recall@10"] = recall(plain, truth)
    row["recall@10_f"] = recall(filt, truth_f)
    return row


def bench_numpy(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, truth: list, truth_f: list) -> dict:
    n, dim = vectors.shape
    t = time.perf_counter()
    matrix = np.ascontiguousarray(vectors)
    mask = labels == 3
    row: dict = {"backend": "numpy", "n": n, "dim": dim, "load_s": time.perf_counter() - t}
    exact_topk(matrix, queries[0], K)
    plain_ms, plain = timed(lambda q: exact_topk(matrix, q, K).tolist(), queries)
    filt_ms, filt = timed(lambda q: exact_topk(matrix, q, K, mask).tolist(), queries)
    row.update(_summary(plain_ms, filt_ms))
    row["recall@10"] = recall(plain, truth)
    row["recall@10_f"] = recall(filt, truth_f)
    return row


def _summary(plain_ms: list[float], filt_ms: list[float]) -> dict:
    p50, f50 = float(np.median(plain_ms)), float(np.median(filt_ms))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(plain_ms, 99)), "filt_p50_ms": f50,
            "filt_p99_ms": float(np.percentile(filt_ms, 99)), "filt/plain": f50 / p50}


COLUMNS = ["backend", "n", "dim", "load_s", "hnsw_build_s", "p50_ms", "p99_ms", "filt_p50_ms", "filt_p99_ms",
           "filt/plain", "x_numpy", "recall@10", "recall@10_f", "note"]


def print_table(rows: list[dict]) -> None:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [COLUMNS] + [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    for j, line in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(line, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="points per collection")
    parser.add_argument("--dims", default="200,512", help="vector sizes")
    parser.add_argument("--backends", default="edge,memory,numpy", help="comma-separated: edge, memory, numpy")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per cell")
    parser.add_argument("--memory-max", type=int, default=100_000,
                        help="largest size run on qdrant-client's in-memory backend")
    parser.add_argument("--memory-queries", type=int, default=50,
                        help="queries timed on the in-memory backend (slow: a Python scan)")
    parser.add_argument("--hnsw", default="", help="sizes at which Edge also builds and uses HNSW")
    parser.add_argument("--hnsw-dims", default="200", help="dims for the --hnsw runs")
    parser.add_argument("--clusters", type=int, default=0,
                        help="draw vectors (and queries) around this many centres instead of uniformly")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dims = [int(d) for d in args.dims.split(",") if d]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    hnsw_sizes = {int(s) for s in args.hnsw.split(",") if s}
    hnsw_dims = {int(d) for d in args.hnsw_dims.split(",") if d}
    rows: list[dict] = []
    for dim in dims:
        for n in sizes:
            vectors = make_vectors(n, dim, clusters=args.clusters)
            labels = np.arange(n) % N_CLASSES
            queries = make_vectors(args.queries, dim, seed=1, clusters=args.clusters)
            truth = [exact_topk(vectors, q, K) for q in queries]
            truth_f = [exact_topk(vectors, q, K, labels == 3) for q in queries]
            cell_rows = []
            for b in backends:
                if b == "numpy":
                    cell_rows.append(bench_numpy(vectors, labels, queries, truth, truth_f))
                elif b == "memory" and n > args.memory_max:
                    cell_rows.append({"backend": "memory", "n": n, "dim": dim,
                                      "note": f"skipped: pure-Python scan above --memory-max {args.memory_max}"})
                elif b == "memory":
                    m = args.memory_queries
                    cell_rows.append(bench_store(b, vectors, labels, queries[:m], truth[:m], truth_f[:m]))
                else:
                    cell_rows.append(bench_store(b, vectors, labels, queries, truth, truth_f))
                gc.collect()
            if "edge" in backends and n in hnsw_sizes and dim in hnsw_dims:
                cell_rows.append(bench_store("edge", vectors, labels, queries, truth, truth_f, hnsw=True))
            base = next((r["p50_ms"] for r in cell_rows if r["backend"] == "numpy"), None)
            for r in cell_rows:
                if base and "p50_ms" in r:
                    r["x_numpy"] = r["p50_ms"] / base
            rows.extend(cell_rows)
            print_table(rows)
            print(f"(peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)\n")
            del vectors
            gc.collect()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
