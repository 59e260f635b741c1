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

`--tune N --tune-dim D` (how index/store's HNSW threshold and ef were chosen): at N x D, on
clustered vectors (`--clusters`, default 64 there) and on "real" vectors (`--real MODEL`: jittered
copies, up to N, of the benchmark set's clip embeddings of MODEL from benchmarks/retrieval_quality.py's
cache; its 610 vectors alone are too few for Edge to build a graph), one table per data set: a numpy scan (the baseline),
Edge exact, Edge HNSW at each ef of `--efs` (with and without int8 scalar quantization), and the
in-process peers FAISS `IndexFlatIP` / `IndexHNSWFlat` and hnswlib at the same ef values
(`pip install faiss-cpu hnswlib`; a missing peer is skipped with a message). The "equal recall"
lines give each HNSW engine's fastest setting with recall@10 >= `--target` and its ratio to numpy
and to Edge exact.

`--end-to-end MODELS` times `search_file` (decode + embed + Qdrant query) of a 5 s clip, p50/p99 over
`--e2e-queries` queries, per model, on a library of the benchmark set's clips.
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


# -- --tune: HNSW threshold / ef / quantization, with in-process peers ---------------------------

def _ms(fn, queries: np.ndarray) -> tuple[float, float, list]:
    fn(queries[0])
    times, answers = timed(fn, queries)
    return float(np.median(times)), float(np.percentile(times, 99)), answers


def _edge_rows(vectors, queries, truth, efs, quant: str | None) -> list[dict]:
    n, dim = vectors.shape
    ids = [str(uuid.UUID(int=(0xABCD << 64) | i)) for i in range(n)]
    index_of = {u: i for i, u in enumerate(ids)}
    rows = []
    saved = (store_mod.EXACT_SEARCH_MAX_POINTS, store_mod.HNSW_EF, getattr(store_mod, "QUANTIZATION", None))
    with tempfile.TemporaryDirectory(prefix="qtune-") as tmp:
        store_mod.QUANTIZATION = quant
        try:
            with EdgeStore(Path(tmp) / "qdrant") as store:
                store.create_collection(COLLECTION, dim)
                t = time.perf_counter()
                for s in range(0, n, 4096):
                    store.upsert(COLLECTION, ids[s:s + 4096], vectors[s:s + 4096], [{}] * len(ids[s:s + 4096]))
                load_s = time.perf_counter() - t
                name = "edge" + ("-int8" if quant else "")
                if not quant:
                    store_mod.EXACT_SEARCH_MAX_POINTS = n + 1
                    p50, p99, ans = _ms(lambda q: [index_of[h.id] for h in store.query(COLLECTION, q, K)], queries)
                    rows.append({"engine": "edge-exact", "ef": "", "build_s": load_s, "p50_ms": p50, "p99_ms": p99,
                                 "recall@10": recall(ans, truth)})
                t = time.perf_counter()
                store.build_hnsw(COLLECTION)
                build_s = time.perf_counter() - t
                indexed = store.indexed_count(COLLECTION)
                store_mod.EXACT_SEARCH_MAX_POINTS = 0
                for ef in efs:
                    store_mod.HNSW_EF = ef
                    p50, p99, ans = _ms(lambda q: [index_of[h.id] for h in store.query(COLLECTION, q, K)], queries)
                    rows.append({"engine": name + "-hnsw", "ef": ef, "build_s": build_s, "p50_ms": p50,
                                 "p99_ms": p99, "recall@10": recall(ans, truth), "in_graph": indexed})
        finally:
            store_mod.EXACT_SEARCH_MAX_POINTS, store_mod.HNSW_EF, store_mod.QUANTIZATION = saved
    return rows


def _peer_rows(vectors, queries, truth, efs, m: int = 16, ef_construction: int = 100) -> list[dict]:
    rows = []
    n, dim = vectors.shape
    try:
        import faiss
    except ImportError:
        print("(FAISS rows skipped: pip install faiss-cpu)")
    else:
        t = time.perf_counter()
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        build = time.perf_counter() - t
        p50, p99, ans = _ms(lambda q: flat.search(q[None, :], K)[1][0].tolist(), queries)
        rows.append({"engine": "faiss-flat", "ef": "", "build_s": build, "p50_ms": p50, "p99_ms": p99,
                     "recall@10": recall(ans, truth)})
        t = time.perf_counter()
        hn = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        hn.hnsw.efConstruction = ef_construction
        hn.add(vectors)
        build = time.perf_counter() - t
        for ef in efs:
            hn.hnsw.efSearch = ef
            p50, p99, ans = _ms(lambda q: hn.search(q[None, :], K)[1][0].tolist(), queries)
            rows.append({"engine": "faiss-hnsw", "ef": ef, "build_s": build, "p50_ms": p50, "p99_ms": p99,
                         "recall@10": recall(ans, truth)})
        del flat, hn
    try:
        import hnswlib
    except ImportError:
        print("(hnswlib rows skipped: pip install hnswlib)")
    else:
        t = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=dim)
        h.init_index(max_elements=n, ef_construction=ef_construction, M=m)
        h.add_items(vectors, np.arange(n))
        build = time.perf_counter() - t
        for ef in efs:
            h.set_ef(max(ef, K))
            p50, p99, ans = _ms(lambda q: h.knn_query(q, k=K)[0][0].tolist(), queries)
            rows.append({"engine": "hnswlib", "ef": ef, "build_s": build, "p50_ms": p50, "p99_ms": p99,
                         "recall@10": recall(ans, truth)})
    return rows


TUNE_COLUMNS = ["data", "n", "dim", "engine", "ef", "build_s", "in_graph", "p50_ms", "p99_ms", "recall@10", "x_numpy",
                "x_edge_exact"]


def _print_rows(rows: list[dict], columns: list[str]) -> None:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [columns] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for j, line in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(line, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def tune(data: str, vectors: np.ndarray, queries: np.ndarray, efs: list[int], target: float,
         quant: bool = True, peers: bool = True) -> list[dict]:
    """One table: numpy, Edge exact / HNSW (/ int8) per ef, peers per ef; then equal-recall lines."""
    n, dim = vectors.shape
    truth = [exact_topk(vectors, q, K) for q in queries]
    matrix = np.ascontiguousarray(vectors)
    p50, p99, ans = _ms(lambda q: exact_topk(matrix, q, K).tolist(), queries)
    rows = [{"engine": "numpy", "ef": "", "build_s": 0.0, "p50_ms": p50, "p99_ms": p99, "recall@10": recall(ans, truth)}]
    rows += _edge_rows(vectors, queries, truth, efs, None)
    gc.collect()
    if quant:
        rows += _edge_rows(vectors, queries, truth, efs, "int8")
        gc.collect()
    if peers:
        rows += _peer_rows(vectors, queries, truth, efs)
        gc.collect()
    base = rows[0]["p50_ms"]
    exact = next(r["p50_ms"] for r in rows if r["engine"] == "edge-exact")
    for r in rows:
        r.update(data=data, n=n, dim=dim, x_numpy=r["p50_ms"] / base, x_edge_exact=r["p50_ms"] / exact)
    _print_rows(rows, TUNE_COLUMNS)
    print(f"equal recall (fastest setting with recall@10 >= {target}):")
    for engine in dict.fromkeys(r["engine"] for r in rows):
        ok = [r for r in rows if r["engine"] == engine and r["recall@10"] >= target]
        if ok:
            best = min(ok, key=lambda r: r["p50_ms"])
            print(f"  {engine:16s} ef={best['ef']!s:4s} recall {best['recall@10']:.3f}  p50 {best['p50_ms']:.3f} ms  "
                  f"x_numpy {best['x_numpy']:.2f}  x_edge_exact {best['x_edge_exact']:.2f}")
        else:
            print(f"  {engine:16s} never reaches {target}")
    print()
    return rows


def real_vectors(model: str, n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the benchmark set's clip embeddings of `model` [m, d], jittered copies up to n [n, d], queries):
    copies are real vectors plus Gaussian noise of a third of the median nearest-neighbour distance,
    so the data keep the real embeddings' structure at a size the set does not have."""
    import retrieval_quality as rq

    import hashlib

    manifest = rq.DEFAULT_CACHE / "dataset" / "manifest.csv"
    paths, _labels, _sources = rq.read_manifest(manifest)
    got = rq.embed_all(model, paths, hashlib.sha1(manifest.read_bytes()).hexdigest(), rq.DEFAULT_CACHE, 5.0, {})
    real = np.array(got["vectors"], np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    sims = real @ real.T
    np.fill_diagonal(sims, -1)
    nn_dist = np.sqrt(np.maximum(2 - 2 * sims.max(axis=1), 0))
    scale = float(np.median(nn_dist)) / 3 / np.sqrt(real.shape[1])
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(real), n + n_queries)
    big = real[src] + rng.standard_normal((n + n_queries, real.shape[1])).astype(np.float32) * scale
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    return real, big[:n], big[n:]


def end_to_end(models: list[str], n_queries: int, n_clips: int) -> None:
    """search_file latency (decode + embed + query) of a 5 s clip, per model, on a library of real clips."""
    import soundfile as sf

    import index
    import retrieval_quality as rq
    from embedders.audio import decode

    paths, _l, _s = rq.read_manifest(rq.DEFAULT_CACHE / "dataset" / "manifest.csv")
    paths = paths[:: max(1, len(paths) // n_clips)][:n_clips]
    rows = []
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        for i, p in enumerate(paths):
            wave, sr = decode(p)
            sf.write(str(lib / f"c{i:04d}.wav"), np.resize(wave, 5 * sr) if len(wave) < 5 * sr else wave[:5 * sr], sr)
        store = index.open_store(Path(tmp) / "data")
        for model in models:
            t = time.perf_counter()
            index.index_folder(store, "bench", lib, [model], data_dir=Path(tmp) / "data")
            idx_s = time.perf_counter() - t
            qs = sorted(lib.glob("*.wav"))[:n_queries]
            index.search_file(store, "bench", model, qs[0], k=10, data_dir=Path(tmp) / "data")  # warm (model load)
            times = []
            for q in qs:
                t = time.perf_counter()
                index.search_file(store, "bench", model, q, k=10, data_dir=Path(tmp) / "data")
                times.append((time.perf_counter() - t) * 1000)
            rows.append({"model": model, "clips": len(paths), "index_s": idx_s, "queries": len(times),
                         "p50_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99))})
            _print_rows(rows, ["model", "clips", "index_s", "queries", "p50_ms", "p99_ms"])
        store.close()


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
    parser.add_argument("--tune", type=int, default=0, help="size of the HNSW tuning run (see above)")
    parser.add_argument("--tune-dim", type=int, default=512)
    parser.add_argument("--efs", default="16,32,64,128,256", help="ef values of the tuning run")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 the tuning run asks for")
    parser.add_argument("--real", default="", help="tuning run on this model's embeddings of the benchmark set")
    parser.add_argument("--no-quant", action="store_true", help="tuning run without the int8 rows")
    parser.add_argument("--end-to-end", default="", help="models whose search_file latency to time")
    parser.add_argument("--e2e-queries", type=int, default=30)
    parser.add_argument("--e2e-clips", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.tune or args.end_to_end:
        efs = [int(e) for e in args.efs.split(",") if e]
        rows = []
        if args.tune:
            clusters = args.clusters or 64
            vecs = make_vectors(args.tune, args.tune_dim, clusters=clusters)
            qs = make_vectors(args.queries, args.tune_dim, seed=1, clusters=clusters)
            rows += tune(f"clustered{clusters}", vecs, qs, efs, args.target, quant=not args.no_quant)
            del vecs
            gc.collect()
            if args.real:
                # (the set's 610 real vectors alone are too few: Edge builds no graph under ~20 MB of vectors)
                _real, big, qs = real_vectors(args.real, args.tune, args.queries)
                rows += tune(f"real+jitter:{args.real}", big, qs, efs, args.target, quant=not args.no_quant)
        if args.end_to_end:
            end_to_end([m for m in args.end_to_end.split(",") if m], args.e2e_queries, args.e2e_clips)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"(peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
        return
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
