"""How projections scale: wall time, CPU time and peak memory of each method
on synthetic labelled blobs (200-d float32 vectors), plus the time to re-open
a cached map in a fresh process.

    python benchmarks/projection_scale.py                      # 1k, 10k, 100k; every method
    python benchmarks/projection_scale.py --sizes 1000,10000 --methods pca,umap

Methods: pca, lda, umap, tsne (2D) and umap3d, tsne3d (3D).

How it measures: every case runs in its own Python process, so each starts
cold (as a fresh app session does) and its memory is its own. ``fit s`` is the
wall time of ``fit`` (module imports excluded, shown as ``import s``; numba
JIT compilation or cache loading included). ``cpu s`` is user+system CPU time
of that fit: on a shared, busy machine it shows what the fit would take on
idle cores better than the wall time does. Peak memory is the process's peak
resident set size (``getrusage(RUSAGE_SELF).ru_maxrss`` read in the child at
its end): unlike tracemalloc it sees numba's, BLAS's and C++ allocations.
``over data`` subtracts the RSS measured after the vectors were generated.
``reopen s`` is a second fresh process that imports ``projections`` and gets
the stored map from a ``MapCache`` (goal: <= 1 s); ``get s`` is the get alone.
``x PCA`` is the fit time divided by PCA's at the same size in the same run.
Quality (trustworthiness and kNN label agreement in the map, k=10, on <= 3000
sampled points) is computed after timing and not counted.

Goals: UMAP on 100k points <= 60 s on 2 cores; cached re-open <= 1 s.
A case that runs past ``--case-timeout`` seconds is stopped and reported as
skipped.

``--sample-fit S`` compares, per size, UMAP 2D fitted on every point (the
baseline; skipped above ``--full-max``) with UMAP fitted on S random points and
the rest placed by transform (the app's map above ``UMAP_SAMPLE_ABOVE``),
each in its own process: wall time (the sampled one split into fit and
placement, with the placement rate in points/s), trustworthiness and kNN label
agreement in the map (on <= 3000 / 2000 sampled points, as the app computes
them), the share of a point's 10 nearest neighbours in the full space that are
among its 10 nearest in the map ("10-NN kept", 2000 sampled points), and the
overlap of each point's 10 nearest map neighbours in the two maps (within a
blob the data are isotropic noise, so two maps can differ there and be
equally good: read it with the 10-NN kept columns).

    nice -n 10 python benchmarks/projection_scale.py --sample-fit 20000 --sizes 50000,100000,200000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_METHODS = "pca,lda,umap,tsne,umap3d"


def make_blobs(n: int, dim: int, n_classes: int, seed: int = 0):
    """Labelled Gaussian blobs, generated in float32 chunks (no float64 copy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32) * 2.0
    y = rng.integers(0, n_classes, size=n)
    X = np.empty((n, dim), dtype=np.float32)
    step = 20_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        X[start:stop] = centres[y[start:stop]] + rng.standard_normal((stop - start, dim), dtype=np.float32)
    labels = [f"class{c:02d}" for c in y]
    return X, labels


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _key(method: str, dims: int, n: int):
    from projections import MapKey

    return MapKey.build("bench", f"blobs-{n}", method, dims, [f"p{i}" for i in range(n)])


def run_case(method: str, dims: int, n: int, dim: int, classes: int, cache_dir: str, quality: bool) -> dict:
    """Child process: fit one map, store it, report numbers as JSON."""
    t0 = time.perf_counter()
    import sklearn.decomposition  # noqa: F401  (every method's first import, not timed as fit)
    import sklearn.discriminant_analysis  # noqa: F401
    import sklearn.manifold  # noqa: F401

    import projections
    from projections import MapCache, make, map_quality

    if method == "umap":
        from projections.umap_projector import import_umap

        import_umap()
        import pynndescent  # noqa: F401
    elif method == "tsne":
        import openTSNE  # noqa: F401
        import openTSNE.affinity  # noqa: F401
    import_s = time.perf_counter() - t0

    X, labels = make_blobs(n, dim, classes)
    base_rss = _rss_mb()
    projector = make(method, dims)
    cpu0, t0 = _cpu_s(), time.perf_counter()
    coords = projector.fit_transform(X, labels if method == "lda" else None)
    fit_s = time.perf_counter() - t0
    cpu_s = _cpu_s() - cpu0
    peak = _peak_rss_mb()

    cache = MapCache(cache_dir)
    key = _key(method, dims, n)
    cache.put(key, projector.to_projection(), projector)

    t0 = time.perf_counter()
    placed = projector.transform(X[:100])
    place_s = time.perf_counter() - t0
    assert placed.shape == (100, dims)

    out = {
        "import_s": import_s,
        "fit_s": fit_s,
        "cpu_s": cpu_s,
        "place100_s": place_s,
        "peak_rss_mb": peak,
        "over_data_mb": peak - base_rss,
        "params": projector.params,
        "version": projections.__name__,
    }
    if quality:
        q = map_quality(X, coords, labels, k=10)
        out["trust"] = q["trustworthiness"]
        out["agree_map"] = q["agreement_map"]
        out["agree_full"] = q["agreement_full"]
    return out


def run_sampled_case(n: int, dim: int, classes: int, sample: int, out_dir: str) -> dict:
    """Child process: UMAP 2D of n blobs, on every point (sample 0) or fitted on `sample` points and
    the rest placed by transform; the coordinates go to out_dir for the comparison."""
    import numpy as np

    from projections import make, map_quality
    from projections.umap_projector import import_umap

    import_umap()
    X, labels = make_blobs(n, dim, classes)
    marks: dict[str, float] = {}
    projector = make("umap", 2, **({"fit_sample": sample} if sample else {}))
    t0 = time.perf_counter()
    projector.progress = lambda done, total, msg: marks.setdefault("fitted", time.perf_counter()) if done == 0 else None
    cpu0 = _cpu_s()
    coords = projector.fit_transform(X)
    fit_s = time.perf_counter() - t0
    cpu_s = _cpu_s() - cpu0
    np.save(Path(out_dir) / f"umap-{n}-{sample}.npy", coords)
    q = map_quality(X, coords, labels, k=10)
    out = {"fit_s": fit_s, "cpu_s": cpu_s, "peak_rss_mb": _peak_rss_mb(), "trust": q["trustworthiness"],
           "agree_map": q["agreement_map"], "agree_full": q["agreement_full"],
           "nn_preserved": neighbours_preserved(X, coords)}
    if "fitted" in marks:
        out["sample_fit_s"] = marks["fitted"] - t0
        out["place_s"] = fit_s - out["sample_fit_s"]
        out["place_rate"] = (n - sample) / out["place_s"]
    return out


def neighbours_preserved(X, coords, k: int = 10, n_query: int = 2000) -> float:
    """Mean fraction of a point's k nearest neighbours in the full space (cosine) that are among
    its k nearest in the map (n_query points drawn at random, seed 0)."""
    import numpy as np

    from projections.knn import ExactNeighbors
    from projections.quality import sample_rows

    rows = sample_rows(X.shape[0], n_query, 0)
    full, _ = ExactNeighbors(X, "cosine").query(X[rows], k, self_index=rows)
    mapped, _ = ExactNeighbors(coords, "euclidean").query(coords[rows], k, self_index=rows)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(full.tolist(), mapped.tolist())]))


def map_neighbour_overlap(a, b, k: int = 10, n_query: int = 2000) -> float:
    """Mean fraction of a point's k nearest neighbours in map `a` that are among its k nearest in
    map `b` (n_query points drawn at random, seed 0)."""
    import numpy as np

    from projections.knn import ExactNeighbors
    from projections.quality import sample_rows

    rows = sample_rows(a.shape[0], n_query, 0)
    na, _ = ExactNeighbors(a, "euclidean").query(a[rows], k, self_index=rows)
    nb, _ = ExactNeighbors(b, "euclidean").query(b[rows], k, self_index=rows)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na.tolist(), nb.tolist())]))


def sample_fit_table(args) -> int:
    """--sample-fit: full UMAP fit vs fit on a sample + transform, per size (see the docstring)."""
    import numpy as np

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"# projection_scale --sample-fit {args.sample_fit}: {args.dim}-d blobs, {args.classes} classes, "
          f"cores={len(os.sched_getaffinity(0))}; uptime: {os.popen('uptime').read().strip()}", flush=True)
    header = ("n", "full fit s", f"sample {args.sample_fit:,}: fit s", "+ place s", "place points/s", "total s",
              "x full", "trust full", "trust sampled", "agree map full", "agree map sampled",
              "10-NN kept full", "10-NN kept sampled", "maps' 10-NN overlap", "peak RSS MB full / sampled", "load")
    if not args.json:  # rows are printed as they are measured (a long run stopped part-way keeps them)
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="projection-bench-") as out_dir:
        for n in sizes:
            got = {}
            for sample in (0, args.sample_fit):
                if sample == 0 and n > args.full_max:
                    got[0] = (None, f"not run (above --full-max {args.full_max:,})")
                    continue
                if sample and n <= sample:
                    continue
                result, note = _child(["--dim", str(args.dim), "--classes", str(args.classes),
                                       "--_sampled", str(n), str(sample), out_dir], args.case_timeout)
                got[sample] = (result, note)
                print(f"#   n={n:,} {'full' if not sample else f'sample {sample:,}'}: "
                      f"{(result or {}).get('fit_s', float('nan')):.1f} s {note} (load {os.getloadavg()[0]:.1f})",
                      file=sys.stderr, flush=True)
            full, sampled = got.get(0, (None, ""))[0], got.get(args.sample_fit, (None, ""))[0]
            overlap = None
            if full and sampled:
                overlap = map_neighbour_overlap(np.load(Path(out_dir) / f"umap-{n}-0.npy"),
                                                np.load(Path(out_dir) / f"umap-{n}-{args.sample_fit}.npy"))
            r = {"n": n, "full": full, "full_note": got.get(0, (None, ""))[1], "sampled": sampled,
                 "sampled_note": got.get(args.sample_fit, (None, ""))[1], "overlap": overlap, "load": os.getloadavg()[0]}
            rows.append(r)
            if args.json:
                continue
            f, sm = r["full"] or {}, r["sampled"] or {}
            ratio = sm["fit_s"] / f["fit_s"] if f and sm else None
            cells = (f"{r['n']:,}", fmt(f.get("fit_s"), ".1f") if f else r["full_note"] or "-",
                     fmt(sm.get("sample_fit_s"), ".1f"), fmt(sm.get("place_s"), ".1f"),
                     fmt(sm.get("place_rate"), ",.0f"), fmt(sm.get("fit_s"), ".1f") if sm else r["sampled_note"] or "-",
                     fmt(ratio, ".2f"), fmt(f.get("trust"), ".3f"), fmt(sm.get("trust"), ".3f"),
                     fmt(f.get("agree_map"), ".3f"), fmt(sm.get("agree_map"), ".3f"),
                     fmt(f.get("nn_preserved"), ".3f"), fmt(sm.get("nn_preserved"), ".3f"), fmt(r["overlap"], ".3f"),
                     f"{fmt(f.get('peak_rss_mb'), '.0f')} / {fmt(sm.get('peak_rss_mb'), '.0f')}", f"{r['load']:.1f}")
            print("| " + " | ".join(cells) + " |", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"# uptime at the end: {os.popen('uptime').read().strip()}")
    return 0


def run_reopen(method: str, dims: int, n: int, cache_dir: str) -> dict:
    """Child process: re-open a stored map (a restart)."""
    t0 = time.perf_counter()
    from projections import MapCache

    cache = MapCache(cache_dir)
    key = _key(method, dims, n)
    t1 = time.perf_counter()
    projection = cache.get(key)
    get_s = time.perf_counter() - t1
    assert projection is not None and cache.stats.hits == 1, "cached map not found"
    assert projection.coords.shape == (n, dims)
    return {"reopen_s": time.perf_counter() - t0, "get_s": get_s}


def _child(args: list[str], timeout: float) -> tuple[dict | None, str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"skipped: over {timeout:.0f} s"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed: {tail[:120]}"
    return json.loads(lines[-1][len("RESULT "):]), ""


def parse_method(token: str) -> tuple[str, int]:
    token = token.strip().lower()
    if token.endswith("3d"):
        return token[:-2], 3
    if token.endswith("2d"):
        return token[:-2], 2
    return token, 2


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated point counts")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--dim", type=int, default=200, help="vector dimension")
    parser.add_argument("--classes", type=int, default=20, help="number of labelled blobs")
    parser.add_argument("--case-timeout", type=float, default=600, help="seconds before a case is skipped")
    parser.add_argument("--no-quality", action="store_true", help="skip the quality columns")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--sample-fit", type=int, default=0,
                        help="compare UMAP fitted on every point with UMAP fitted on this many + transform")
    parser.add_argument("--full-max", type=int, default=200_000, help="--sample-fit: no full fit above this size")
    parser.add_argument("--_case", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--_sampled", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_reopen", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._case:
        method, dims, n, cache_dir, quality = args._case
        result = run_case(method, int(dims), int(n), args.dim, args.classes, cache_dir, quality == "1")
        print("RESULT " + json.dumps(result))
        return 0
    if args._sampled:
        n, sample, out_dir = args._sampled
        print("RESULT " + json.dumps(run_sampled_case(int(n), args.dim, args.classes, int(sample), out_dir)))
        return 0
    if args.sample_fit:
        return sample_fit_table(args)
    if args._reopen:
        method, dims, n, cache_dir = args._reopen
        print("RESULT " + json.dumps(run_reopen(method, int(dims), int(n), cache_dir)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [parse_method(m) for m in args.methods.split(",") if m.strip()]
    if ("pca", 2) in methods:  # PCA first: the other rows are compared with it
        methods.remove(("pca", 2))
        methods.insert(0, ("pca", 2))
    rows = []
    print(f"# projection_scale: {args.dim}-d blobs, {args.classes} classes, cores={len(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="projection-bench-") as cache_dir:
        for n in sizes:
            pca_fit = None
            for method, dims in methods:
                t0 = time.perf_counter()
                result, note = _child(
                    ["--dim", str(args.dim), "--classes", str(args.classes),
                     "--_case", method, str(dims), str(n), cache_dir, "0" if args.no_quality else "1"],
                    args.case_timeout,
                )
                row = {"method": method, "dims": dims, "n": n, "note": note}
                if result is not None:
                    row.update(result)
                    reopen, rnote = _child(["--_reopen", method, str(dims), str(n), cache_dir], 60)
                    row.update(reopen or {})
                    row["note"] = rnote
                    if (method, dims) == ("pca", 2):
                        pca_fit = result["fit_s"]
                    row["x_pca"] = result["fit_s"] / pca_fit if pca_fit else None
                row["case_wall_s"] = time.perf_counter() - t0
                rows.append(row)
                print(f"#   {method} {dims}D n={n}: {row.get('fit_s', float('nan')):.1f} s {row['note']}",
                      file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ("method", "dims", "n", "fit s", "cpu s", "x PCA", "import s", "place100 s", "peak RSS MB",
              "over data MB", "reopen s", "get s", "trust", "agree map", "note")
    table = [header]
    for r in rows:
        table.append((
            r["method"], str(r["dims"]), f"{r['n']:,}", fmt(r.get("fit_s"), ".2f"), fmt(r.get("cpu_s"), ".2f"),
            fmt(r.get("x_pca"), ".1f"), fmt(r.get("import_s"), ".1f"), fmt(r.get("place100_s"), ".2f"),
            fmt(r.get("peak_rss_mb"), ".0f"), fmt(r.get("over_data_mb"), ".0f"), fmt(r.get("reopen_s"), ".2f"),
            fmt(r.get("get_s"), ".3f"), fmt(r.get("trust"), ".3f"), fmt(r.get("agree_map"), ".3f"), r["note"],
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("| " + " | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
