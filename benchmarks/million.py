"""A million clips end to end in the store: load, HNSW build, search, class statistics, clusters, a map.

    nice -n 10 python benchmarks/million.py                      # 1M x 200-d (MusiCNN's width), 50 clusters
    python benchmarks/million.py --n 100000 --no-hnsw            # a quick look

The points are CLUSTERED SYNTHETIC vectors, not embeddings of real audio: unit vectors drawn
around `--clusters` random centres (spread 0.5 per axis, `query_latency.make_vectors`, about the
structure of real embeddings; uniform random vectors would be the worst case for HNSW), each
labelled by its cluster (50 classes), with a clip-like payload (path, label, file_id,
duration). 200-d is the MusiCNN embedding width: 1M x 200 float32 is 0.8 GB (512-d would be
2 GB on a machine shared with others). They go into Qdrant Edge on disk through `index.store`,
as a library (`lib__million__bench`), the code the app uses.

Timed, with a baseline measured in the same run where there is one:
- load: upserts of 5000 points (points/s);
- HNSW build: `index.ingest.build_search_index`, what indexing does above
  `EXACT_SEARCH_MAX_POINTS` (Edge's `optimize()`);
- search: query-by-example top-10, p50/p99 over `--queries` queries (vectors of random points,
  each point itself excluded), HNSW vs exact Qdrant scan vs a numpy scan (baseline), recall@10
  against the exact answer;
- class statistics (last: the slowest step at 1M): `index.classes.class_stats` (label counts by facet, agreement@5 on a
  2000-clip random sample: the UI's sampling above 2000 labelled clips, centroids by scroll,
  typical / nearest clips by query);
- clusters: HDBSCAN (`projections.clusters.cluster`, what the Curate view runs) on a random
  sample of `--cluster-sample` points (HDBSCAN on 1M points does not answer in seconds), with
  its agreement with the labels;
- a map of all N points: PCA and UMAP fitted on a `--map-sample` sample, the rest placed with
  `transform` (timed per method; UMAP's transform on all points only with `--umap-all`, else on
  `--umap-transform` points and extrapolated, saying so).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from query_latency import exact_topk, make_vectors  # noqa: E402

LIB, MODEL = "million", "bench"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def save(args, res: dict) -> None:
    """Write what is measured so far (a long run stopped part-way keeps its numbers)."""
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-hnsw", action="store_true", help="skip the HNSW build (exact scans only)")
    ap.add_argument("--cluster-sample", type=int, default=20000)
    ap.add_argument("--map-sample", type=int, default=20000)
    ap.add_argument("--umap-transform", type=int, default=50000, help="points UMAP places with transform (timed)")
    ap.add_argument("--umap-all", action="store_true", help="place all N points with UMAP's transform")
    ap.add_argument("--skip", default="", help="comma list of steps to skip: classes,clusters,map")
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import index
    import index.store as store_mod
    from index.classes import class_stats
    from index.ingest import CLIP_INDEXES, build_search_index
    from index.libraries import Library, save_library
    from index.store import EdgeStore

    n, dim = args.n, args.dim
    res: dict = {"n": n, "dim": dim, "clusters": args.clusters, "cores": os.cpu_count(),
                 "load_start": os.getloadavg()[0]}
    print(f"{n} x {dim}-d clustered vectors ({args.clusters} clusters); {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    t = time.perf_counter()
    X = make_vectors(n, dim, seed=0, clusters=args.clusters)
    # label = the nearest of make_vectors' centres (the one a point was drawn around, but for rare overlaps)
    centres = np.random.default_rng(12345).standard_normal((args.clusters, dim), dtype=np.float32)
    cu = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.concatenate([np.argmax(X[s:s + 100_000] @ cu.T, axis=1) for s in range(0, n, 100_000)])
    res["generate_s"] = time.perf_counter() - t
    ids = [str(uuid.UUID(int=(0xA0D1 << 64) | i)) for i in range(n)]
    work = Path(args.work or tempfile.mkdtemp(prefix="million-"))
    store = EdgeStore(work / "qdrant")
    coll = index.collection_name(LIB, MODEL)
    store.create_collection(coll, dim, indexes=CLIP_INDEXES)
    t = time.perf_counter()
    step = 5000
    for s in range(0, n, step):
        e = min(n, s + step)
        pays = [{"path": f"class_{int(c):02d}/clip_{i:07d}.wav", "label": f"class_{int(c):02d}",
                 "folder": f"class_{int(c):02d}", "file_id": ids[i], "duration_s": 3.0, "start_s": 0.0}
                for i, c in zip(range(s, e), labels[s:e])]
        store.upsert(coll, ids[s:e], X[s:e], pays)
        if s and s % 200_000 == 0:
            print(f"  loaded {s} ({s / (time.perf_counter() - t):.0f} points/s)", file=sys.stderr)
    store.flush()
    res["load_s"] = time.perf_counter() - t
    save_library(store, Library(name=LIB, root=str(work / "audio"), models=[MODEL]))
    print(f"load {res['load_s']:.0f} s", file=sys.stderr)

    qrows = np.random.default_rng(7).choice(n, args.queries, replace=False)
    truth = []
    t = time.perf_counter()
    np_ms = []
    for r in qrows:
        t1 = time.perf_counter()
        top = exact_topk(X, X[r], 11)
        np_ms.append((time.perf_counter() - t1) * 1000)
        truth.append([i for i in top.tolist() if i != r][:10])
    row_of = {u: i for i, u in enumerate(ids)}

    def run_queries() -> tuple[list[float], float]:
        ms, rec = [], []
        for r, tr in zip(qrows, truth):
            t1 = time.perf_counter()
            hits = store.query(coll, X[r], 11)
            ms.append((time.perf_counter() - t1) * 1000)
            got = [row_of[h.id] for h in hits if row_of[h.id] != r][:10]
            rec.append(len(set(got) & set(tr)) / 10)
        return ms, float(np.mean(rec))

    saved = store_mod.EXACT_SEARCH_MAX_POINTS
    store_mod.EXACT_SEARCH_MAX_POINTS = n + 1  # exact Qdrant scan first
    store.query(coll, X[0], 10)
    exact_ms, exact_rec = run_queries()
    store_mod.EXACT_SEARCH_MAX_POINTS = saved
    res.update(numpy_p50_ms=pct(np_ms)[0], numpy_p99_ms=pct(np_ms)[1], exact_p50_ms=pct(exact_ms)[0],
               exact_p99_ms=pct(exact_ms)[1], exact_recall=exact_rec)
    save(args, res)
    print(f"exact: p50 {res['exact_p50_ms']:.1f} ms (numpy {res['numpy_p50_ms']:.1f} ms)", file=sys.stderr)
    if not args.no_hnsw:
        t = time.perf_counter()
        built = build_search_index(store, LIB, [MODEL], lambda m: print("  " + m, file=sys.stderr))
        res["hnsw_build_s"] = time.perf_counter() - t
        res["hnsw_built"] = bool(built)
        store.query(coll, X[0], 10)
        h_ms, h_rec = run_queries()
        res.update(hnsw_p50_ms=pct(h_ms)[0], hnsw_p99_ms=pct(h_ms)[1], hnsw_recall=h_rec,
                   hnsw_indexed=store.indexed_count(coll))
        save(args, res)
        print(f"hnsw: built in {res['hnsw_build_s']:.0f} s; p50 {res['hnsw_p50_ms']:.1f} ms recall {h_rec:.3f}",
              file=sys.stderr)

    if "clusters" not in skip:
        from projections.clusters import agreement as cl_agreement, cluster

        rows = np.sort(np.random.default_rng(1).choice(n, min(n, args.cluster_sample), replace=False))
        t = time.perf_counter()
        cl = cluster(X[rows], min_cluster_size=50)
        res["clusters_s"] = time.perf_counter() - t
        res["clusters_sample"] = len(rows)
        res["clusters_found"] = len(set(cl.labels.tolist()) - {-1})
        res["clusters_vs_labels"] = cl_agreement([f"c{int(c)}" for c in labels[rows]], cl.labels)
        save(args, res)
        print(f"clusters {res['clusters_s']:.1f} s on {len(rows)}: {res['clusters_found']} found", file=sys.stderr)
    if "map" not in skip:
        from projections import methods

        rows = np.random.default_rng(2).choice(n, min(n, args.map_sample), replace=False)
        for method in ("pca", "umap"):
            p = methods.make(method, 2, seed=0) if method == "umap" else methods.make(method, 2)
            t = time.perf_counter()
            p.fit(X[rows])
            fit_s = time.perf_counter() - t
            m = n if (method == "pca" or args.umap_all) else min(n, args.umap_transform)
            t = time.perf_counter()
            for s in range(0, m, 100_000):
                p.transform(X[s:min(m, s + 100_000)])
            tr_s = time.perf_counter() - t
            res[f"map_{method}_fit_s"] = fit_s
            res[f"map_{method}_transform_s"] = tr_s
            res[f"map_{method}_transformed"] = m
            res[f"map_{method}_all_s_est"] = fit_s + tr_s * n / m
            save(args, res)
            print(f"map {method}: fit {fit_s:.1f} s on {len(rows)}, transform {tr_s:.1f} s for {m}", file=sys.stderr)
    if "classes" not in skip:
        t = time.perf_counter()
        st = class_stats(store, LIB, MODEL, k=5)
        res["class_stats_s"] = time.perf_counter() - t
        res["class_stats_sampled"] = st["agreement_sampled"]
        res["class_agreement"] = st["overall_agreement"]
        res["classes"] = len(st["labels"])
        print(f"class stats {res['class_stats_s']:.1f} s (agreement on {st['agreement_sampled']} sampled clips: "
              f"{st['overall_agreement']:.3f})", file=sys.stderr)
    store.close()
    res["peak_rss_mb"] = rss_mb()
    res["load_end"] = os.getloadavg()[0]
    du = sum(f.stat().st_blocks * 512 for f in (work / "qdrant").rglob("*") if f.is_file()) / 1e6
    res["qdrant_disk_mb"] = du

    print(f"\n## A million clips ({n} x {dim}-d clustered synthetic vectors, {args.clusters} labelled clusters; "
          f"Qdrant Edge on disk; {os.cpu_count()} cores, load average {res['load_start']:.1f} -> {res['load_end']:.1f})")
    lines = [("load (upsert)", f"{res['load_s']:.0f} s", f"{n / res['load_s']:.0f} points/s"),
             ("search, numpy exact scan (baseline)", f"p50 {res['numpy_p50_ms']:.1f} ms", f"p99 {res['numpy_p99_ms']:.1f} ms"),
             ("search, Qdrant exact scan", f"p50 {res['exact_p50_ms']:.1f} ms, p99 {res['exact_p99_ms']:.1f} ms",
              f"x{res['exact_p50_ms'] / res['numpy_p50_ms']:.2f} numpy; recall@10 {res['exact_recall']:.3f}")]
    if "hnsw_build_s" in res:
        lines += [("HNSW build", f"{res['hnsw_build_s']:.0f} s", f"{res['hnsw_indexed']} points indexed"),
                  ("search, Qdrant HNSW (ef 512)", f"p50 {res['hnsw_p50_ms']:.1f} ms, p99 {res['hnsw_p99_ms']:.1f} ms",
                   f"x{res['hnsw_p50_ms'] / res['numpy_p50_ms']:.2f} numpy; recall@10 {res['hnsw_recall']:.3f}")]
    if "class_stats_s" in res:
        lines.append(("class statistics (50 classes)", f"{res['class_stats_s']:.1f} s",
                      f"agreement@5 {res['class_agreement']:.3f} on {res['class_stats_sampled']} sampled clips"))
    if "clusters_s" in res:
        lines.append((f"HDBSCAN clusters on a {res['clusters_sample']}-point sample", f"{res['clusters_s']:.1f} s",
                      f"{res['clusters_found']} clusters; vs labels {json.dumps({k: round(v, 3) for k, v in res['clusters_vs_labels'].items()})}"))
    for method in ("pca", "umap"):
        if f"map_{method}_fit_s" in res:
            m = res[f"map_{method}_transformed"]
            lines.append((f"map {method.upper()}: fit on {args.map_sample}, transform",
                          f"fit {res[f'map_{method}_fit_s']:.1f} s, transform {res[f'map_{method}_transform_s']:.1f} s "
                          f"for {m}", f"all {n}: {res[f'map_{method}_all_s_est']:.0f} s"
                          + ("" if m == n else " (extrapolated)")))
    lines.append(("peak memory / Qdrant disk", f"{res['peak_rss_mb']:.0f} MB RSS", f"{du:.0f} MB on disk"))
    w = [max(len(r[i]) for r in lines) for i in range(3)]
    for r in lines:
        print("  ".join(r[i].ljust(w[i]) for i in range(3)))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
