"""Ingest at scale: synthetic clips indexed through the real pipeline into Qdrant Edge on disk.

    python benchmarks/ingest_scale.py                                  # dsp and vgg-msd, 1k..10k, 20 min budget
    python benchmarks/ingest_scale.py --sizes 500,1000 --models dsp --budget-min 5 --json out.json

For each model, one library grows in steps (1k, 2k, 5k, 10k clips by default): each step adds
clips to the folder and re-runs `index_folder` in a fresh subprocess, so a step's time is what a
user waits for when a folder grows (the already indexed clips are hashed and found, the new ones
embedded), and its peak memory (ru_maxrss of that subprocess) is that of one indexing run.
After each step: Qdrant's disk size (the library's shards): blocks allocated, and the apparent
size of Edge's sparse files (what a copy that does not keep holes, or a filesystem without them,
such as tmpfs, would take). A step is skipped (and said so) when
its estimated time would overrun the model's share of `--budget-min`.

Then, on the same clips and in the same run: the pipelined ingest (`batch_size=16`: the next
batch is hashed and decoded in a worker thread while the model embeds the current one, and the
model sees a batch) against a one-by-one loop (`batch_size=1`), each into a fresh data folder.

Clips are `app.demo.make_clip` sounds (7 classes, 0.25 to 2 s, 22.05 kHz 16-bit wav), written
to a temporary folder that is deleted afterwards. Descriptors and thumbnails are on (defaults).

`--ray-clips N` (default 400; 0 skips it) adds the Ray engine (`--engine ray`, index/ray_engine.py)
on the same N clips, each run in a fresh subprocess and data folder: the local engine (baseline),
then Ray with 1 and 2 actors on a local Ray cluster the run starts (`ray.init`, 2 CPUs here). It
reports clips/s, the ratio to the local engine, Ray's start-up (cluster + actors loading the model:
the time before the first batch came back), and the driver's share (replaying the actors' writes
into Qdrant Edge). `--skip-growth` runs only this comparison.

`--decode-clips N` (default 400; 0 skips it): the local engine decoding in a child process (the
default, `embedders.isolated`: a decoder crash costs only that child) against decoding in its own
process (`AUDIO_EXPLORER_DECODE_IN_PROCESS=1`), the same N clips, alternated A/B/A/B in fresh
subprocesses (the best of two each); then decoding alone, in this process vs through the child
(files/s and the child's start-up), for these short clips and for 30 s 44.1 kHz clips (where
the wave sent back over the socket is largest).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import index
t0 = time.perf_counter()
store = index.open_store(index.data_dir({data!r}))
stats = {{}}
first = []
engine_options = {{"workers": {workers}, "stats": stats}} if {engine!r} == "ray" else None
rep = index.index_folder(store, {lib!r}, {folder!r}, {models!r}, data_dir={data!r}, batch_size={batch},
                         engine={engine!r}, engine_options=engine_options,
                         progress=lambda d, t, m: first.append(time.perf_counter() - t0) if not first else None)
store.close()
print(json.dumps({{"wall_s": time.perf_counter() - t0, "index_wall_s": rep.wall_s, "added": rep.added,
                   "first_batch_s": first[0] if first else None, "driver_write_s": stats.get("driver_write_s"),
                   "ray_wall_s": stats.get("ray_wall_s"), "workers": stats.get("workers"),
                   "unchanged": rep.unchanged, "failed": len(rep.failed), "audio_s": rep.audio_s,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


THREAD_ENV: dict[str, str] = {}  # set by --blas-threads
# converted weights are shared with the default data folder (converted once, not per step)
WEIGHTS = os.environ.get("AUDIO_EXPLORER_WEIGHTS") or str(ROOT / "data" / "weights")


def write_clips(folder: Path, start: int, stop: int) -> float:
    """Write clips start..stop-1 (deterministic per index); returns their total duration in seconds."""
    import soundfile as sf

    from app.demo import CLASSES, SR, make_clip

    kinds = sorted(CLASSES)
    total = 0.0
    for i in range(start, stop):
        kind = kinds[i % len(kinds)]
        x = make_clip(kind, np.random.default_rng(i))
        sub = folder / kind
        sub.mkdir(parents=True, exist_ok=True)
        sf.write(str(sub / f"{kind}_{i:05d}.wav"), x, SR, subtype="PCM_16")
        total += x.size / SR
    return total


def dir_mb(path: Path, apparent: bool = False) -> float:
    """Bytes under path in MB: allocated blocks, or the files' apparent sizes (Edge's files are sparse)."""
    total = 0
    for p in path.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file() and not p.is_symlink():
            total += st.st_size if apparent else st.st_blocks * 512
    return total / 1e6


def run_index(folder: Path, data: Path, lib: str, models: list[str], batch: int, timeout_s: float,
              engine: str = "local", workers: int = 1, env_extra: dict | None = None) -> dict:
    """Index `folder` in a fresh subprocess; its JSON report plus peak RSS (of the driver)."""
    code = CHILD.format(root=str(ROOT), data=str(data), lib=lib, folder=str(folder), models=models, batch=batch,
                        engine=engine, workers=workers)
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "AUDIO_EXPLORER_WEIGHTS": WEIGHTS,
           **THREAD_ENV, **(env_extra or {})}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "indexing failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def qdrant_mb(data: Path, lib: str, apparent: bool = False) -> float:
    """Disk size of the library's collections (clips + frames)."""
    root = data / "qdrant"
    return sum(dir_mb(p, apparent) for p in root.glob(f"lib__{lib}__*")) if root.is_dir() else 0.0


def fmt_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    """Plain-text table: cols are (key, header)."""
    cells = [[h for _, h in cols]] + [[str(r.get(k, "")) for k, _ in cols] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].rjust(w[i]) for i in range(len(cols))) for c in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,2000,5000,10000", help="library sizes (clips), ascending")
    ap.add_argument("--models", default="dsp,vgg-msd")
    ap.add_argument("--budget-min", type=float, default=20.0, help="total wall budget for the growth steps")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pipeline-clips", type=int, default=200, help="clips for the pipelined vs one-by-one run")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    ap.add_argument("--ray-clips", type=int, default=400, help="clips for the Ray engine comparison (0: skip)")
    ap.add_argument("--skip-growth", action="store_true", help="run only the Ray engine comparison")
    ap.add_argument("--decode-clips", type=int, default=400,
                    help="clips for the child-process vs in-process decode comparison (0: skip)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OPENBLAS/OMP/MKL thread count for the indexing subprocesses (default: the libraries' own)")
    args = ap.parse_args()
    if args.blas_threads:
        THREAD_ENV.update({v: str(args.blas_threads) for v in
                           ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    sizes = sorted(int(s) for s in args.sizes.split(","))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="ingest-scale-"))
    pool = work / "pool"  # every clip once; each model's library folder holds hard links to a prefix
    have = 0

    def grow(n: int) -> None:
        nonlocal have
        if n > have:
            write_clips(pool, have, n)
            have = n

    def fill(dst: Path, n: int) -> None:
        """Make dst hold the first n clips of the pool (hard links)."""
        for p in sorted(pool.rglob("*.wav"), key=lambda q: q.name.rsplit("_", 1)[1])[:n]:
            target = dst / p.relative_to(pool)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(p, target)

    print(f"work folder {work}; cpu cores {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows, skipped = [], []
    t_start = time.perf_counter()
    share_s = args.budget_min * 60 / len(models)
    for m_i, model in enumerate([] if args.skip_growth else models):
        data = work / f"data-{model}"
        folder = work / f"audio-{model}"
        t_model = time.perf_counter()
        prev_n, rate = 0, None
        for n in sizes:
            left = share_s * (m_i + 1) - (time.perf_counter() - t_start)
            if rate is not None and (n - prev_n) / rate * 1.15 > left:
                skipped.append(f"{model} {n}: estimated {(n - prev_n) / rate / 60:.1f} min, {left / 60:.1f} min left")
                break
            t_gen = time.perf_counter()
            grow(n)
            fill(folder, n)
            gen_s = time.perf_counter() - t_gen
            rep = run_index(folder, data, "scale", [model], args.batch_size, timeout_s=max(600, 4 * share_s))
            step = n - prev_n
            rate = step / rep["index_wall_s"]
            disk = qdrant_mb(data, "scale")
            rows.append({"model": model, "clips": n, "added": rep["added"], "unchanged": rep["unchanged"],
                         "failed": rep["failed"], "step_wall_s": round(rep["index_wall_s"], 1),
                         "clips_per_s": round(rate, 2), "x_realtime": round(rep["audio_s"] / rep["index_wall_s"], 2),
                         "peak_rss_mb": round(rep["peak_rss_mb"]), "qdrant_mb": round(disk, 1),
                         "kb_per_clip": round(disk * 1000 / n, 1),
                         "apparent_mb": round(qdrant_mb(data, "scale", apparent=True)), "gen_s": round(gen_s, 1)})
            print(fmt_table(rows[-1:], [(k, k) for k in rows[-1]]), file=sys.stderr)
            prev_n = n
        print(f"{model}: {time.perf_counter() - t_model:.0f} s", file=sys.stderr)

    # pipelined (batched, decode overlapping embed) vs one-by-one, same clips, fresh data folders
    pipe_rows = []
    sub = work / "pipeline-audio"
    n_p = min(args.pipeline_clips, have) if have else args.pipeline_clips
    grow(n_p)
    fill(sub, n_p)
    for model in [] if args.skip_growth else models:
        res = {}
        for batch in (args.batch_size, 1):
            d = work / f"pipe-{model}-{batch}"
            res[batch] = run_index(sub, d, "pipe", [model], batch, timeout_s=1800)
            shutil.rmtree(d, ignore_errors=True)
        fast, slow = res[args.batch_size], res[1]
        pipe_rows.append({"model": model, "clips": n_p,
                          f"batch{args.batch_size}_s": round(fast["index_wall_s"], 1),
                          "batch1_s": round(slow["index_wall_s"], 1),
                          f"batch{args.batch_size}_clips_per_s": round(n_p / fast["index_wall_s"], 2),
                          "batch1_clips_per_s": round(n_p / slow["index_wall_s"], 2),
                          "speedup": round(slow["index_wall_s"] / fast["index_wall_s"], 2)})

    ray_rows = ray_engine_rows(args, models, work, grow, fill, lambda: have) if args.ray_clips else []
    dec_rows, dec_only = decode_rows(args, models, work, grow, fill) if args.decode_clips else ([], [])

    print("\n## Ingest at scale (one library per model, grown in steps; Qdrant Edge on disk)")
    cols = [("model", "model"), ("clips", "clips"), ("added", "added"), ("step_wall_s", "step s"),
            ("clips_per_s", "clips/s"), ("x_realtime", "x real time"), ("peak_rss_mb", "peak RSS MB"),
            ("qdrant_mb", "Qdrant MB"), ("kb_per_clip", "KB/clip"), ("apparent_mb", "apparent MB")]
    print(fmt_table(rows, cols))
    for model in models:
        mr = [r for r in rows if r["model"] == model]
        if len(mr) >= 2:
            a, b = mr[0], mr[-1]
            f = b["clips"] / a["clips"]
            print(f"{model}: {a['clips']} -> {b['clips']} clips (x{f:.1f}): disk x{b['qdrant_mb'] / a['qdrant_mb']:.2f} "
                  f"(linear would be x{f:.1f}); throughput {a['clips_per_s']} -> {b['clips_per_s']} clips/s; "
                  f"peak RSS {a['peak_rss_mb']} -> {b['peak_rss_mb']} MB")
    for s in skipped:
        print(f"skipped (budget): {s}")
    print(f"\n## Pipelined ingest (batch {args.batch_size}, decode in a worker thread) vs one-by-one (batch 1)")
    print(fmt_table(pipe_rows, [(k, k) for k in pipe_rows[0]]) if pipe_rows else "(none)")
    if ray_rows:
        print(f"\n## Ray engine vs the local engine ({args.ray_clips} clips, batch {args.batch_size}; a local Ray "
              f"cluster on this machine; each run in a fresh process and data folder)")
        print(fmt_table(ray_rows, [(k, k) for k in ray_rows[0]]))
    if dec_rows:
        print(f"\n## Decoding in a child process (default) vs in the indexing process ({args.decode_clips} clips, "
              f"batch {args.batch_size}; fresh subprocess and data folder per run, best of 2, alternated; "
              f"load average before {dec_rows[0]['load_before']})")
        print(fmt_table(dec_rows, [(k, k) for k in dec_rows[0] if k != "load_before"]))
        print("\n## Decoding alone: in this process vs through the decoder child (same files, same run)")
        print(fmt_table(dec_only, [(k, k) for k in dec_only[0]]))
    print(f"\ntotal {(time.perf_counter() - t_start) / 60:.1f} min; {os.cpu_count()} cores; "
          f"load average now {os.getloadavg()[0]:.1f}; threads: {THREAD_ENV or 'library defaults'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"growth": rows, "pipeline": pipe_rows, "skipped": skipped,
                                               "ray": ray_rows, "decode": dec_rows, "decode_only": dec_only},
                                              indent=1))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def ray_engine_rows(args, models: list[str], work: Path, grow, fill, have) -> list[dict]:
    """The local engine, then Ray with 1 and 2 actors, on the same clips (fresh data folders)."""
    n = args.ray_clips
    grow(n)
    sub = work / "ray-audio"
    fill(sub, n)
    out = []
    for model in models:
        base = None
        for engine, workers in (("local", 1), ("ray", 1), ("ray", 2)):
            d = work / f"ray-{model}-{engine}-{workers}"
            r = run_index(sub, d, "ray", [model], args.batch_size, timeout_s=3600, engine=engine, workers=workers)
            shutil.rmtree(d, ignore_errors=True)
            wall = r["index_wall_s"]
            base = base or wall
            row = {"model": model, "engine": engine, "workers": workers if engine == "ray" else "-",
                   "added": r["added"], "wall_s": round(wall, 1), "clips_per_s": round(r["added"] / wall, 2),
                   "vs_local": round(base / wall, 2), "first_batch_s": round(r["first_batch_s"] or 0, 1)}
            if engine == "ray":
                steady = wall - (r["first_batch_s"] or 0)
                row.update(steady_clips_per_s=round((r["added"] * (1 - args.batch_size / n)) / steady, 2) if steady > 0 else "",
                           driver_write_s=round(r["driver_write_s"], 2),
                           driver_share=f"{100 * r['driver_write_s'] / r['ray_wall_s']:.1f} %")
            else:
                steady = wall - (r["first_batch_s"] or 0)
                row.update(steady_clips_per_s=round((r["added"] * (1 - args.batch_size / n)) / steady, 2) if steady > 0 else "",
                           driver_write_s="", driver_share="")
            row["peak_rss_mb"] = round(r["peak_rss_mb"])
            out.append(row)
            print(fmt_table(out[-1:], [(k, k) for k in out[-1]]), file=sys.stderr)
    return out


def decode_rows(args, models: list[str], work: Path, grow, fill) -> tuple[list[dict], list[dict]]:
    """Indexing with the decoder child vs in-process (A/B/A/B), then decoding alone both ways."""
    from embedders import audio
    from embedders.isolated import IsolatedDecoder

    n = args.decode_clips
    grow(n)
    sub = work / "decode-audio"
    fill(sub, n)
    load_before = f"{os.getloadavg()[0]:.1f}"
    out = []
    for model in models:
        best: dict[str, dict] = {}
        for rep_i in range(2):
            for mode, env in (("child process", {}), ("in-process", {"AUDIO_EXPLORER_DECODE_IN_PROCESS": "1"})):
                d = work / f"decode-{model}-{rep_i}-{mode[:5]}"
                r = run_index(sub, d, "dec", [model], args.batch_size, timeout_s=3600, env_extra=env)
                shutil.rmtree(d, ignore_errors=True)
                if mode not in best or r["index_wall_s"] < best[mode]["index_wall_s"]:
                    best[mode] = r
        base = best["in-process"]["index_wall_s"]
        for mode in ("in-process", "child process"):
            r = best[mode]
            out.append({"model": model, "decode": mode, "added": r["added"], "wall_s": round(r["index_wall_s"], 2),
                        "clips_per_s": round(r["added"] / r["index_wall_s"], 1),
                        "vs_in_process": round(base / r["index_wall_s"], 3), "peak_rss_mb": round(r["peak_rss_mb"]),
                        "load_before": load_before})
            print(fmt_table(out[-1:], [(k, k) for k in out[-1]]), file=sys.stderr)

    long_dir = work / "decode-30s"
    long_dir.mkdir(exist_ok=True)
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(40):
        p = long_dir / f"song_{i:02d}.wav"
        if not p.exists():
            sf.write(p, (0.1 * rng.standard_normal((30 * 44100, 2))).astype(np.float32), 44100, subtype="PCM_16")
    only = []
    for label, files in ((f"{n} short clips (0.25-2 s, 22.05 kHz)", sorted(sub.rglob("*.wav"))),
                         ("40 clips of 30 s (44.1 kHz stereo)", sorted(long_dir.glob("*.wav")))):
        t0 = time.perf_counter()
        for p in files:
            audio.decode(p)
        inproc = time.perf_counter() - t0
        t0 = time.perf_counter()
        with IsolatedDecoder() as dec:
            dec.decode(files[0])
            start = time.perf_counter() - t0
            t1 = time.perf_counter()
            for p in files:
                dec.decode(p)
            child = time.perf_counter() - t1
        only.append({"files": label, "in_process_files_per_s": round(len(files) / inproc, 1),
                     "child_files_per_s": round(len(files) / child, 1), "ratio": round(inproc / child, 3),
                     "child_start_s": round(start, 3), "load": f"{os.getloadavg()[0]:.1f}"})
        print(fmt_table(only[-1:], [(k, k) for k in only[-1]]), file=sys.stderr)
    return out, only


if __name__ == "__main__":
    sys.exit(main())
