"""Curation at scale (tags, clusters, near-duplicates, export) and near-duplicate quality on real audio.

    python benchmarks/curation_scale.py                                  # both parts, ~15 min on 2 cores
    python benchmarks/curation_scale.py --quick                          # 2k + 10k, 60 real clips, ~5 min
    python benchmarks/curation_scale.py --parts scale --sizes 10000,100000 --dim 512
    python benchmarks/curation_scale.py --parts dups --dup-clips 150 --models dsp,musicnn-msd,vgg-msd

Part 1, scale (synthetic; no audio is embedded). For each size (10k and 100k clips by default)
a library of two model collections (`synth-a`, `synth-b`, `--dim`-d, the ingest's payload indexes)
is written straight into Qdrant Edge on disk: unit vectors around 50 random centres (spread 0.5
per axis, about the structure of real embeddings) plus `--dup-frac` injected near-copies (cosine
about 0.995 to another clip), with the payload the ingest writes. Then, on that library:

  * tag: `CurationService.edit` adding a tag to 10 % and to 100 % of the clips (written to both
    model collections and the edits record); the baseline is the bare `store.set_payload` of one
    key on the same ids in both collections (the floor for any payload edit), and `x_floor` is
    the ratio. The tag counts are checked with a filtered Qdrant count afterwards.
  * near-duplicates: `index.curation.near_duplicates(threshold=0.98)` (the UI default). Its batched
    queries are timed one batch at a time; past `--nd-cap-s` the run is stopped and its total
    estimated from the batches done (marked "est."). The baseline is an exact numpy top-k over the
    same query rows (blocked X @ X.T, in memory), and the table gives ms per query for both. One
    batch is also split into where its time goes (the store's query_batch with payloads and Hit
    objects, the bare Edge query_batch without payloads, and the `shard.info()` call that the
    store makes per query to choose exact search). Recall of the injected pairs is printed. With
    `--nd-hnsw`, at the largest size Edge's HNSW graph is built (timed) and the search repeated
    through it (ef = `index.store.HNSW_EF`), as the app would above `EXACT_SEARCH_MAX_POINTS`.
  * export: `CurationService.export` of 1,000 clips (real 1 s wav files, 44 KB each) to a ZIP, in
    a fresh subprocess: wall time and the growth of its peak RSS (VmHWM; not ru_maxrss, which a
    child inherits from its parent across fork+exec on Linux) over reading the library's vectors
    and payloads (which export's manifest triggers) and over writing the ZIP.
  * clusters: `CurationService.clusters` (HDBSCAN from scikit-learn, `projections/clusters.py`)
    with PCA to 50 dims and without PCA, each in a fresh subprocess whose peak RSS (VmHWM) is
    polled; a run past `--cluster-timeout-s` is stopped and reported as "> N s".

Part 2, duplicate precision/recall on real audio. From the labelled set that
`benchmarks/retrieval_quality.py` builds (608 clips of 15 classes from Debian packages; built
once in `--cache`, installing its Debian packages), `--dup-clips` clips are picked round-robin
over classes and sources, and each gets four TRUE duplicates: MP3 at 128 kbit/s (ffmpeg/LAME,
with its encoder delay), resampled (44.1 -> 22.05 kHz, 48 -> 24 kHz, 96 -> 48 kHz, 22.05 -> 16 kHz,
16 -> 22.05 kHz, 8 -> 16 kHz; soxr), gain +3 dB or -3 dB (alternating; +3 dB clips the peaks of the
0.9-peak-normalised originals, as a louder 16-bit copy would) and the first 5-20 ms trimmed.
Every other clip of the set is in the library too, as a negative: other velocity layers, notes
and takes of the same instrument and kit are the hard negatives. The folder is indexed with
`python app.py index FOLDER --library dups --models ...` into a temporary data folder, and
`near_duplicates` groups are scored per model and threshold: a pair of files in one group is a
predicted duplicate; true pairs are an original with each of its variants and the variants
among themselves (10 per family). The UI default (0.98) is marked; the best F1 per model is
flagged; a second table gives recall per kind of variant and what the false pairs are.

Timings are wall times on this machine; compare the ratios within one run (x_floor, x_numpy).
Nothing is asserted.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LIB = "scale"
MODELS = ("synth-a", "synth-b")
N_CENTRES = 50
DEFAULT_THRESHOLD = 0.98   # the UI's default today
THRESHOLDS = (0.93, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999)
WEIGHTS = os.environ.get("AUDIO_EXPLORER_WEIGHTS") or str(ROOT / "data" / "weights")
T_START = time.perf_counter()


def vm(key: str, pid: int | str = "self") -> float | None:
    """A /proc/PID/status memory line in MB (VmRSS, VmHWM: peak RSS of that process image)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:6.0f} s, RSS {vm('VmRSS'):.0f} MB, peak {vm('VmHWM'):.0f} MB] {msg}",
          file=sys.stderr, flush=True)


def fmt_table(rows: list[dict], cols: list[str], marks: dict[int, str] | None = None) -> str:
    """Plain-text table of rows (dicts) over cols; floats to 3 significant places; marks: row -> suffix."""
    def cell(v) -> str:
        if isinstance(v, float):
            if v != v:
                return "nan"
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].rjust(w[i]) for i in range(len(cols))) for c in cells]
    if marks:
        for i, m in marks.items():
            lines[i + 1] += "  " + m
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


# ============================================================================ part 1: scale

def make_vectors(n: int, dim: int, seed: int, dup_frac: float) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """n clustered unit vectors [n, dim], their centre index, and the injected near-copy pairs (i, j):
    clip j is clip i plus noise of cosine ~0.995."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((N_CENTRES, dim)).astype(np.float32)
    lab = rng.integers(0, N_CENTRES, n)
    X = np.empty((n, dim), np.float32)
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        X[s:e] = centres[lab[s:e]] + 0.5 * rng.standard_normal((e - s, dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    n_dup = int(n * dup_frac)
    pick = rng.choice(n, 2 * n_dup, replace=False)
    pairs = [(int(a), int(b)) for a, b in zip(pick[:n_dup], pick[n_dup:])]
    sigma = 0.1 / np.sqrt(dim)  # |noise|^2 ~ 0.01 -> cosine ~ 1/sqrt(1.01) ~ 0.995
    for a, b in pairs:
        v = X[a] + sigma * rng.standard_normal(dim).astype(np.float32)
        X[b] = v / np.linalg.norm(v)
        lab[b] = lab[a]
    return X, lab, pairs


def clip_ids(n: int) -> list[str]:
    import index

    return [index.point_id(hashlib.sha1(f"synthetic-clip-{i}".encode()).hexdigest()) for i in range(n)]


def clip_path(i: int, lab: int) -> str:
    return f"class_{lab:02d}/clip_{i:06d}.wav"


def build_library(data: Path, audio: Path, n: int, dim: int, dup_frac: float) -> tuple[dict, np.ndarray, np.ndarray,
                                                                                      list]:
    """Write the synthetic library; returns (timings, synth-a's vectors, their centres, injected pairs).
    Both collections share synth-a's payloads (one clip, one payload); synth-b's vectors differ."""
    import index
    from index.ingest import CLIP_INDEXES
    from index.libraries import Library, save_library

    ids = clip_ids(n)
    store = index.open_store(data)
    t = time.perf_counter()
    Xa, lab_a, pairs = None, None, []
    for m_i, model in enumerate(MODELS):
        X, lab, prs = make_vectors(n, dim, seed=m_i, dup_frac=dup_frac)
        if m_i == 0:
            Xa, lab_a, pairs = X, lab, prs
        coll = index.collection_name(LIB, model)
        store.create_collection(coll, dim, indexes=dict(CLIP_INDEXES))
        for s in range(0, n, 16384):
            e = min(n, s + 16384)
            pays = [{"path": clip_path(i, int(lab_a[i])), "label": f"class_{int(lab_a[i]):02d}",
                     "folder": f"class_{int(lab_a[i]):02d}", "duration_s": 1.0, "sample_rate": 22050,
                     "content_hash": hashlib.sha1(f"synthetic-clip-{i}".encode()).hexdigest(),
                     "file_id": ids[i], "start_s": 0.0, "end_s": 1.0} for i in range(s, e)]
            store.upsert(coll, ids[s:e], X[s:e], pays)
    save_library(store, Library(name=LIB, root=str(audio), models=list(MODELS)))
    load_s = time.perf_counter() - t
    store.close()
    return {"load_s": load_s}, Xa, lab_a, pairs


def write_wavs(audio: Path, n_files: int, labels: list[str]) -> float:
    """1 s 22.05 kHz 16-bit wav files at the first n_files clips' paths; returns total MB."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    total = 0
    for i in range(n_files):
        p = audio / clip_path(i, int(labels[i]))
        p.parent.mkdir(parents=True, exist_ok=True)
        x = 0.3 * np.sin(2 * np.pi * (110 + 5 * (i % 200)) * np.arange(22050) / 22050) + 0.02 * rng.standard_normal(22050)
        sf.write(str(p), x.astype(np.float32), 22050, subtype="PCM_16")
        total += p.stat().st_size
    return total / 1e6


def bench_tags(data: Path, n: int) -> list[dict]:
    """Tag 10 % and 100 % of the library through CurationService.edit vs bare set_payload."""
    import index
    from app.services import Services

    store = index.open_store(data)
    svc = Services(data, store=store)
    ids = clip_ids(n)
    rng = np.random.default_rng(3)
    rows = []
    for frac, tag in ((0.1, "pick10"), (1.0, "all")):
        sel = ids if frac == 1.0 else [ids[i] for i in sorted(rng.choice(n, int(n * frac), replace=False))]
        t = time.perf_counter()
        res = svc.curation.edit(LIB, sel, add=[tag])
        edit_s = time.perf_counter() - t
        counts = [store.count(index.collection_name(LIB, m), {"tags": tag}) for m in MODELS]
        t = time.perf_counter()
        for m in MODELS:
            store.set_payload(index.collection_name(LIB, m), sel, {f"raw_{tag}": True})
        floor_s = time.perf_counter() - t
        rows.append({"clips": n, "tagged": len(sel), "share": f"{int(frac * 100)} %", "collections": res.collections,
                     "edit_s": edit_s, "clips/s": len(sel) / edit_s, "floor_s": floor_s, "x_floor": edit_s / floor_s,
                     "check": "ok" if counts == [len(sel)] * len(MODELS) and res.changed == len(sel)
                     else f"counts {counts}, changed {res.changed}"})
        log(f"tag {n}: {rows[-1]}")
    store.close()
    return rows


class _Capped(Exception):
    pass


class TimedStore:
    """Delegates to a store; times scroll and each query_batch call; stops past a cap."""

    def __init__(self, store, cap_s: float):
        self._s, self.cap_s = store, cap_s
        self.batch_s: list[float] = []
        self.batch_rows: list[int] = []
        self.scroll_s = 0.0
        self.t0 = time.perf_counter()

    def __getattr__(self, name):
        return getattr(self._s, name)

    def scroll(self, *a, **k):
        t = time.perf_counter()
        out = list(self._s.scroll(*a, **k))
        self.scroll_s += time.perf_counter() - t
        return iter(out)

    def query_batch(self, name, vectors, k, flt=None):
        if time.perf_counter() - self.t0 > self.cap_s:
            raise _Capped()
        t = time.perf_counter()
        out = self._s.query_batch(name, vectors, k, flt)
        self.batch_s.append(time.perf_counter() - t)
        self.batch_rows.append(len(vectors))
        return out


def numpy_topk(X: np.ndarray, rows: int, k: int, block: int = 256) -> tuple[float, list[np.ndarray]]:
    """Exact top-k (self included) of the first `rows` rows against all of X; (seconds, answers)."""
    t = time.perf_counter()
    XT = np.ascontiguousarray(X.T)
    out = []
    for s in range(0, rows, block):
        S = X[s:min(rows, s + block)] @ XT
        out.append(np.argpartition(S, S.shape[1] - k, axis=1)[:, -k:])
    return time.perf_counter() - t, out


def bench_near_dups(data: Path, n: int, X: np.ndarray, pairs: list, cap_s: float,
                    hnsw: bool = False) -> tuple[list[dict], dict]:
    """near_duplicates at the default threshold (timed, capped) vs numpy; plus one batch split up;
    with `hnsw`, again after building Edge's HNSW graph (queries through it)."""
    import index
    import index.store as store_mod

    store = index.open_store(data)
    coll = index.collection_name(LIB, MODELS[0])
    k = 8
    rows = [_near_dups_row(store, n, X, pairs, cap_s, k, "edge exact")]
    split = _batch_split(store, coll, n, X, k)
    if hnsw:
        t = time.perf_counter()
        store.build_hnsw(coll)
        build_s = time.perf_counter() - t
        saved = store_mod.EXACT_SEARCH_MAX_POINTS
        store_mod.EXACT_SEARCH_MAX_POINTS = 0
        try:
            rows.append(_near_dups_row(store, n, X, pairs, cap_s, k, f"edge hnsw (ef {store_mod.HNSW_EF})",
                                       numpy_too=False))
        finally:
            store_mod.EXACT_SEARCH_MAX_POINTS = saved
        rows[-1]["hnsw_build_s"] = build_s
    store.close()
    log(f"near-dups {n}: {rows} {split}")
    return rows, split


def _near_dups_row(store, n: int, X: np.ndarray, pairs: list, cap_s: float, k: int, backend: str,
                   numpy_too: bool = True) -> dict:
    from index import curation

    ts = TimedStore(store, cap_s)
    t = time.perf_counter()
    groups = None
    try:
        groups = curation.near_duplicates(ts, LIB, MODELS[0], threshold=DEFAULT_THRESHOLD, k=k)
        complete = True
    except _Capped:
        complete = False
    wall = time.perf_counter() - t
    done = sum(ts.batch_rows)
    q_s = sum(ts.batch_s)
    ms_q = 1000 * q_s / max(1, done)
    est = wall if complete else ts.scroll_s + q_s / max(1, done) * n + (wall - ts.scroll_s - q_s)
    row = {"clips": n, "dim": X.shape[1], "backend": backend, "queries_done": done, "scroll_s": ts.scroll_s,
           "query_ms/clip": ms_q, "batch_ms": 1000 * float(np.mean(ts.batch_s)) if ts.batch_s else float("nan"),
           "total_s": f"{est:.0f}" if complete else f"> {wall:.0f} (est. {est:.0f})"}
    if numpy_too:
        np_s, _ = numpy_topk(X, max(done, 1), k + 1)
        np_ms = 1000 * np_s / max(1, done)
        row.update({"numpy_ms/clip": np_ms, "numpy_total_s": np_ms * n / 1000, "x_numpy": ms_q / np_ms})
    if groups is not None:
        ids = clip_ids(n)
        pos = {i: j for j, i in enumerate(ids)}
        grouped = set()
        for g in groups:
            for a, b in combinations(sorted(pos[i] for i in g.ids), 2):
                grouped.add((a, b))
        truth = {tuple(sorted(p)) for p in pairs}
        row["groups"] = len(groups)
        row["injected_recall"] = len(truth & grouped) / max(1, len(truth))
        row["extra_pairs"] = len(grouped - truth)
    return row


def _batch_split(store, coll: str, n: int, X: np.ndarray, k: int) -> dict:
    """Where one batch's time goes (the store's batch size)."""
    import index.store as store_mod

    B = store_mod.QUERY_BATCH_CHUNK
    Q = X[:B]
    t = time.perf_counter()
    store.query_batch(coll, Q, k + 1)
    full = time.perf_counter() - t
    t = time.perf_counter()
    store._batch(coll, Q, k + 1, None, with_payload=False)
    bare = time.perf_counter() - t
    entry = store._get(coll)
    t = time.perf_counter()
    for _ in range(B):
        entry.shard.info()
    info = time.perf_counter() - t
    qe = store._qe
    reqs = [qe.QueryRequest(limit=k + 1, query=qe.Query.Nearest(v.tolist(), using="embedding"),
                            params=qe.SearchParams(exact=True), with_payload=False, with_vector=False) for v in Q]
    t = time.perf_counter()
    entry.shard.query_batch(qe.QueryBatchRequest(reqs))
    edge_only = time.perf_counter() - t
    return {"clips": n, "batch": B, "store.query_batch_ms": 1000 * full, "no_payload_ms": 1000 * bare,
            "edge_query_batch_ms": 1000 * edge_only, "shard.info()x256_ms": 1000 * info,
            "numpy_ms": 1000 * numpy_topk(X, B, k + 1)[0]}


EXPORT_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
def rss(key="VmHWM"):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
from app.services import Services
import index
svc = Services({data!r})
ids = [index.point_id(__import__("hashlib").sha1(f"synthetic-clip-{{i}}".encode()).hexdigest()) for i in range({n_files})]
svc.store
r0 = rss(); t = time.perf_counter()
svc.vectors.read({lib!r}, {model!r})
read_s = time.perf_counter() - t; r1 = rss(); t = time.perf_counter()
res = svc.curation.export({lib!r}, {model!r}, ids, out={out!r})
exp_s = time.perf_counter() - t; r2 = rss()
import os
print(json.dumps({{"read_s": read_s, "export_s": exp_s, "rss0": r0, "rss_read": r1 - r0, "rss_zip": r2 - r1,
                  "files": res["files"], "zip_mb": os.path.getsize({out!r}) / 1e6}}))
"""


def bench_export(data: Path, work: Path, n: int, n_files: int) -> dict:
    out = work / f"export-{n}.zip"
    code = EXPORT_CHILD.format(root=str(ROOT), data=str(data), n_files=n_files, lib=LIB, model=MODELS[0], out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        row = {"library": n, "note": "failed: " + (res.stderr.strip().splitlines() or ["?"])[-1]}
        log(f"export {n}: {row}")
        return row
    r = json.loads(res.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    row = {"library": n, "exported": n_files, "files": r["files"], "zip_MB": r["zip_mb"],
           "read_vectors_s": r["read_s"], "zip_s": r["export_s"], "MB/s": r["zip_mb"] / r["export_s"],
           "RSS_start_MB": r["rss0"], "+RSS_read_MB": r["rss_read"], "+RSS_zip_MB": r["rss_zip"]}
    log(f"export {n}: {row}")
    return row


CLUSTER_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
def rss(key="VmHWM"):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
import projections
from app.services import Services
spent = {{}}
orig = projections.cluster
def timed(*a, **k):
    t = time.perf_counter(); r = orig(*a, **k); spent["hdbscan_s"] = time.perf_counter() - t; return r
projections.cluster = timed
svc = Services({data!r})
t0 = time.perf_counter()
svc.vectors.read({lib!r}, {model!r})
read_s = time.perf_counter() - t0; r1 = rss()
print(json.dumps({{"stage": "read", "rss_read": r1}}), flush=True)
rep = svc.curation.clusters({lib!r}, {model!r}, min_size=5, pca_dims={pca!r})
print(json.dumps({{"stage": "done", "wall_s": time.perf_counter() - t0, "read_s": read_s, "rss_read": r1,
                  "rss_peak": rss(), "clusters": sum(1 for r in rep.rows if r.cluster >= 0),
                  "noise": sum(r.size for r in rep.rows if r.cluster < 0), "purity": rep.purity, "ari": rep.ari,
                  **spent}}), flush=True)
"""


def bench_clusters(data: Path, n: int, pca: int | None, timeout_s: float) -> dict:
    code = CLUSTER_CHILD.format(root=str(ROOT), data=str(data), lib=LIB, model=MODELS[0], pca=pca)
    row: dict = {"clips": n, "pca": pca or "none"}
    if timeout_s <= 5:
        row["wall_s"] = "skipped (budget)"
        return row
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, text=True)
        t, peak = time.perf_counter(), 0.0
        while p.poll() is None and time.perf_counter() - t < timeout_s:
            peak = max(peak, vm("VmHWM", p.pid) or 0.0)
            time.sleep(0.5)
        timed_out = p.poll() is None
        if timed_out:
            peak = max(peak, vm("VmHWM", p.pid) or 0.0)
            p.kill()
        p.wait()
        wall = time.perf_counter() - t
        out.seek(0)
        lines = [json.loads(x) for x in out.read().splitlines() if x.startswith("{")]
    read = next((x for x in lines if x["stage"] == "read"), {})
    done = next((x for x in lines if x["stage"] == "done"), None)
    if done is None:
        why = f"> {wall:.0f}" if timed_out else "failed: " + ((p.stderr.read() or "").strip().splitlines() or ["?"])[-1]
        row.update({"wall_s": why, "hdbscan_s": why if timed_out else "", "RSS_read_MB": read.get("rss_read"),
                    "peak_RSS_MB": peak, "note": "stopped at the timeout; peak so far" if timed_out else ""})
    else:
        row.update({"wall_s": done["wall_s"], "hdbscan_s": done.get("hdbscan_s"), "read_s": done["read_s"],
                    "RSS_read_MB": done["rss_read"], "peak_RSS_MB": max(peak, done["rss_peak"]),
                    "+RSS_MB": max(peak, done["rss_peak"]) - done["rss_read"], "clusters": done["clusters"],
                    "noise": done["noise"], "ARI_vs_centres": done["ari"]})
    log(f"clusters {n} pca={pca}: {row}")
    return row


def part_scale(args, work: Path) -> dict:
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    out: dict = {"build": [], "tags": [], "nd": [], "nd_split": [], "export": [], "clusters": []}
    for n in sizes:
        data = work / f"scale-{n}"
        audio = data / "audio"
        audio.mkdir(parents=True, exist_ok=True)
        log(f"building {n} clips x {len(MODELS)} collections x {args.dim}-d ...")
        b, X, lab_a, pairs = build_library(data, audio, n, args.dim, args.dup_frac)
        # the export's files sit at the payload paths of the first clips
        mb = write_wavs(audio, min(n, args.export_clips), [int(x) for x in lab_a[:args.export_clips]])
        out["build"].append({"clips": n, "dim": args.dim, "collections": len(MODELS), "load_s": b["load_s"],
                             "points/s": len(MODELS) * n / b["load_s"], "wav_MB": mb})
        log(f"built: {out['build'][-1]}")
        out["tags"] += bench_tags(data, n)
        nd_rows, split = bench_near_dups(data, n, X, pairs, args.nd_cap_s, hnsw=args.nd_hnsw and n == sizes[-1])
        out["nd"] += nd_rows
        out["nd_split"].append(split)
        del X
        out["export"].append(bench_export(data, work, n, min(n, args.export_clips)))
        for pca in (50, None):
            left = args.budget_min * 60 - (time.perf_counter() - T_START) - args.reserve_s
            out["clusters"].append(bench_clusters(data, n, pca, min(args.cluster_timeout_s, left)))
        shutil.rmtree(data, ignore_errors=True)
    # a run stopped at its timeout: what HDBSCAN's O(n^2) minimum spanning tree predicts from the
    # largest finished run with the same PCA setting
    for r in out["clusters"]:
        base = [b for b in out["clusters"] if b["pca"] == r["pca"] and isinstance(b.get("hdbscan_s"), float)
                and b["clips"] < r["clips"]]
        if not isinstance(r.get("hdbscan_s"), float) and base:
            b = max(base, key=lambda x: x["clips"])
            r["est_n2_s"] = b["hdbscan_s"] * (r["clips"] / b["clips"]) ** 2
    return out


def print_scale(res: dict) -> None:
    print("\n## 1a. Synthetic libraries (Qdrant Edge on disk, written directly; 2 model collections)")
    print(fmt_table(res["build"], ["clips", "dim", "collections", "load_s", "points/s", "wav_MB"]))
    print("\n## 1b. Tag a selection: CurationService.edit (both collections + edits record) vs bare "
          "set_payload of one key in both collections (floor)")
    print(fmt_table(res["tags"], ["clips", "tagged", "share", "collections", "edit_s", "clips/s", "floor_s",
                                  "x_floor", "check"]))
    print(f"\n## 1c. near_duplicates(threshold={DEFAULT_THRESHOLD}, k=8) vs exact numpy top-k on the same rows "
          "(\"est.\": stopped at --nd-cap-s, total extrapolated from the batches done)")
    print(fmt_table(res["nd"], ["clips", "dim", "backend", "queries_done", "scroll_s", "batch_ms", "query_ms/clip",
                                "total_s", "numpy_ms/clip", "numpy_total_s", "x_numpy", "groups", "injected_recall",
                                "extra_pairs", "hnsw_build_s"]))
    print("\n   one batch of queries, split: the store's query_batch (payloads + Hit objects) | the store "
          "without payloads | Edge's query_batch alone | 256 shard.info() calls (one per query in the store) | numpy")
    print(fmt_table(res["nd_split"], ["clips", "batch", "store.query_batch_ms", "no_payload_ms",
                                      "edge_query_batch_ms", "shard.info()x256_ms", "numpy_ms"]))
    print("\n## 1d. Export 1,000 clips to a ZIP (CurationService.export, fresh process): peak RSS growth "
          "over reading the library's vectors (export's manifest does) and over the ZIP")
    print(fmt_table(res["export"], ["library", "exported", "files", "zip_MB", "read_vectors_s", "zip_s", "MB/s",
                                    "RSS_start_MB", "+RSS_read_MB", "+RSS_zip_MB", "note"]))
    print("\n## 1e. Clusters: CurationService.clusters (scikit-learn HDBSCAN, min_size 5), fresh process each; "
          "peak RSS polled (VmHWM)")
    print(fmt_table(res["clusters"], ["clips", "pca", "wall_s", "hdbscan_s", "RSS_read_MB", "peak_RSS_MB",
                                      "+RSS_MB", "clusters", "noise", "ARI_vs_centres", "est_n2_s", "note"]))
    print("   est_n2_s: for a stopped run, the finished smaller run's hdbscan_s x (n / n_small)^2 (scikit-learn's "
          "HDBSCAN builds its minimum spanning tree with Prim's algorithm over all pairs: O(n^2))")


# ============================================================================ part 2: duplicates

VARIANTS = ("mp3", "resample", "gain+3", "gain-3", "trim")
KIND_COLS = ("mp3", "resample", "gain+3", "gain-3", "trim/perc", "trim/tonal")
PERCUSSIVE = {"kick", "snare", "hihat", "tom", "cymbal", "clap", "hand_drum", "shaker"}
COPY_CORR = 0.98  # originals of the set whose first second correlates above this are one family
RESAMPLE_TO = {44100: 22050, 48000: 24000, 96000: 48000, 22050: 16000, 16000: 22050, 8000: 16000}


def pick_clips(labels: list[str], sources: list[str], n: int) -> list[int]:
    """n clip indices, round-robin over labels, within a label over its sources."""
    by: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (lab, src) in enumerate(zip(labels, sources)):
        by[lab][src].append(i)
    queues = {lab: [list(v) for _s, v in sorted(srcs.items())] for lab, srcs in sorted(by.items())}
    turn = {lab: 0 for lab in queues}
    out: list[int] = []
    while len(out) < n and any(any(q) for q in queues.values()):
        for lab, qs in queues.items():
            if len(out) >= n:
                break
            for _ in range(len(qs)):
                q = qs[turn[lab] % len(qs)]
                turn[lab] += 1
                if q:
                    out.append(q.pop(0))
                    break
    return sorted(out)


def make_variants(src: Path, dest: Path, stem: str, fam: int, rng) -> dict[str, Path]:
    """The four true duplicates of one clip; {kind: path}."""
    import librosa
    import soundfile as sf

    x, sr = sf.read(str(src), dtype="float32", always_2d=False)
    out = {}
    p = dest / f"{stem}__mp3.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-codec:a", "libmp3lame",
                    "-b:a", "128k", str(p)], check=True)
    out["mp3"] = p
    sr2 = RESAMPLE_TO.get(sr, 22050 if sr > 22050 else 16000)
    y = librosa.resample(x, orig_sr=sr, target_sr=sr2, res_type="soxr_hq")
    p = dest / f"{stem}__sr{sr2}.wav"
    sf.write(str(p), np.clip(y, -1, 1), sr2, subtype="PCM_16")
    out["resample"] = p
    db = 3.0 if fam % 2 == 0 else -3.0
    p = dest / f"{stem}__gain{db:+.0f}dB.wav"
    sf.write(str(p), np.clip(x * 10 ** (db / 20), -1, 1), sr, subtype="PCM_16")
    out[f"gain{db:+.0f}"] = p
    ms = float(rng.uniform(5, 20))
    p = dest / f"{stem}__trim{ms:.0f}ms.wav"
    sf.write(str(p), x[int(round(ms / 1000 * sr)):], sr, subtype="PCM_16")
    out["trim"] = p
    return out


def copies_in_set(paths: list[Path], labels: list[str], max_lag_s: float = 0.05) -> list[tuple[int, int]]:
    """Pairs of clips of the set (same label) that are the same recording: the peak of the normalised
    cross-correlation of their first half second (at 44.1 kHz, lags up to `max_lag_s`: the set trims
    each clip's leading silence, so copies can be a few samples apart) above COPY_CORR. The set drops
    such copies only within one (label, source) and at lag 0, and some packages share samples."""
    import librosa
    import soundfile as sf

    sr, n = 44100, 22050
    lag = int(max_lag_s * sr)
    M = np.zeros((len(paths), n), np.float32)
    for i, p in enumerate(paths):
        x, r = sf.read(str(p), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if r != sr:
            x = librosa.resample(x, orig_sr=r, target_sr=sr, res_type="soxr_hq")
        M[i, :min(n, len(x))] = x[:n]
    M /= np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-9)
    out = []
    by: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by[lab].append(i)
    for idx in by.values():
        F = np.fft.rfft(M[idx], n=2 * n, axis=1)
        for a in range(len(idx) - 1):
            c = np.fft.irfft(F[a][None, :] * np.conj(F[a + 1:]), n=2 * n, axis=1)
            peak = np.maximum(c[:, :lag + 1].max(axis=1), c[:, -lag:].max(axis=1))
            out += [(idx[a], idx[a + 1 + j]) for j in np.flatnonzero(peak > COPY_CORR)]
    return out


def build_dup_folder(cache: Path, folder: Path, n_clips: int, install: bool) -> dict:
    """Originals (every clip of the set) + 4 variants of n_clips; returns the ground truth."""
    import retrieval_quality as rq

    manifest = rq.build_dataset(cache, install=install)
    paths, labels, sources = rq.read_manifest(manifest)
    chosen = set(pick_clips(labels, sources, n_clips))
    copies = copies_in_set(paths, labels)
    parent = list(range(len(paths)))  # families: copies already in the set are one family

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in copies:
        parent[find(b)] = find(a)
    rng = np.random.default_rng(11)
    info: dict[str, dict] = {}  # rel path -> {family, kind, label, source}
    for i, (p, lab, src) in enumerate(zip(paths, labels, sources)):
        d = folder / lab
        d.mkdir(parents=True, exist_ok=True)
        stem = f"{'f' if i in chosen else 'n'}{i:04d}"
        dst = d / f"{stem}__orig{p.suffix}"
        shutil.copyfile(p, dst)
        info[f"{lab}/{dst.name}"] = {"family": find(i), "clip": i, "kind": "orig", "label": lab, "source": src}
        if i in chosen:
            for kind, vp in make_variants(p, d, stem, i, rng).items():
                info[f"{lab}/{vp.name}"] = {"family": find(i), "clip": i, "kind": kind, "label": lab, "source": src}
    return {"info": info, "chosen": len(chosen), "labels": len({labels[i] for i in chosen}),
            "sources": len({sources[i] for i in chosen}), "negatives": len(paths) - len(chosen),
            "copies": [(str(paths[a].name), str(paths[b].name)) for a, b in copies],
            "cross_source_copies": sum(sources[a] != sources[b] for a, b in copies)}


def score(groups, info: dict) -> dict:
    """Pairwise precision/recall of near_duplicates groups against the families."""
    pred = set()
    for g in groups:
        files = sorted(set(g.paths))
        pred.update(combinations(files, 2))
    fam: dict[int, list[str]] = defaultdict(list)
    for rel, d in info.items():
        fam[d["family"]].append(rel)
    truth = set()
    for members in fam.values():
        truth.update(combinations(sorted(members), 2))
    tp = pred & truth
    fp = pred - truth
    p = len(tp) / len(pred) if pred else float("nan")
    r = len(tp) / len(truth) if truth else float("nan")
    f1 = 2 * p * r / (p + r) if pred and tp else 0.0
    by_kind = {}
    for col in KIND_COLS:
        kind, _, cls = col.partition("/")
        want = {(a, b) for a, b in truth if info[a]["clip"] == info[b]["clip"]
                and {info[a]["kind"], info[b]["kind"]} == {"orig", kind}
                and (not cls or (info[a]["label"] in PERCUSSIVE) == (cls == "perc"))}
        by_kind[col] = len(want & tp) / max(1, len(want))
    fp_kinds = Counter({"same label+source": 0, "same label": 0, "other label": 0})
    for a, b in fp:
        da, db = info[a], info[b]
        if da["label"] == db["label"] and da["source"] == db["source"]:
            fp_kinds["same label+source"] += 1
        elif da["label"] == db["label"]:
            fp_kinds["same label"] += 1
        else:
            fp_kinds["other label"] += 1
    return {"pred_pairs": len(pred), "true_pairs": len(truth), "tp": len(tp), "precision": p, "recall": r,
            "f1": f1, "groups": len(groups), "largest": max((len(g.paths) for g in groups), default=0),
            "by_kind": by_kind, "fp_kinds": dict(fp_kinds)}


def part_dups(args, work: Path) -> dict:
    folder = work / "dups-audio"
    data = work / "dups-data"
    t = time.perf_counter()
    truth = build_dup_folder(Path(args.cache).expanduser(), folder, args.dup_clips, not args.no_install)
    make_s = time.perf_counter() - t
    n_files = len(truth["info"])
    log(f"dups: {n_files} files ({truth['chosen']} families x 5, {truth['negatives']} negatives) in {make_s:.0f} s")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cmd = [sys.executable, str(ROOT / "app.py"), "index", str(folder), "--library", "dups", "--models",
           ",".join(models), "--data-dir", str(data), "--json"]
    env = {**os.environ, "AUDIO_EXPLORER_WEIGHTS": WEIGHTS}
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    index_s = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError("indexing failed: " + (res.stderr.strip().splitlines() or ["?"])[-1])
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    log(f"dups: indexed in {index_s:.0f} s: {rep['added']} added, {len(rep['skipped'])} skipped")
    from app.services import Services

    svc = Services(data)
    rows = []
    for model in models:
        for th in args.thresholds:
            t = time.perf_counter()
            groups = svc.curation.duplicates("dups", model, threshold=th)
            s = score(groups, truth["info"])
            rows.append({"model": model, "threshold": th, "seconds": time.perf_counter() - t, **s})
    svc.store.close()
    return {"rows": rows, "files": n_files, "copies": truth["copies"],
            "cross_source_copies": truth["cross_source_copies"], "families": truth["chosen"], "labels": truth["labels"],
            "sources": truth["sources"], "negatives": truth["negatives"], "make_s": make_s, "index_s": index_s,
            "models": models, "skipped": rep["skipped"], "cmd": " ".join(cmd[1:])}


def print_dups(res: dict) -> None:
    print(f"\n## 2. Near-duplicate precision/recall on real audio ({res['files']} files: {res['families']} clips "
          f"from {res['labels']} classes and {res['sources']} sources, each + 4 true duplicates "
          f"(mp3 128k, resampled, +/-3 dB, 5-20 ms trimmed); {res['negatives']} other clips of the set as "
          f"negatives; made in {res['make_s']:.0f} s, indexed with {len(res['models'])} models in {res['index_s']:.0f} s)")
    print("   pairwise over files: a pair in one group = predicted duplicate; 10 true pairs per family. "
          f"* = UI default ({DEFAULT_THRESHOLD}); <- best F1 of the model")
    print(f"   ground truth: {len(res['copies'])} pairs of clips of the set are already the same recording "
          f"(peak cross-correlation of the first 0.5 s > {COPY_CORR}, lags up to 50 ms; {res['cross_source_copies']} across sources) and count as one family")
    rows = res["rows"]
    marks = {}
    for model in res["models"]:
        mr = [(i, r) for i, r in enumerate(rows) if r["model"] == model]
        best = max(mr, key=lambda x: (x[1]["f1"], x[1]["threshold"]))[0]
        for i, r in mr:
            m = []
            if r["threshold"] == DEFAULT_THRESHOLD:
                m.append("* default")
            if i == best:
                m.append("<- best F1")
            if m:
                marks[i] = " ".join(m)
    table = [{**r, "threshold": f"{r['threshold']}{'*' if r['threshold'] == DEFAULT_THRESHOLD else ''}"}
             for r in rows]
    print(fmt_table(table, ["model", "threshold", "groups", "largest", "pred_pairs", "tp", "precision", "recall",
                            "f1", "seconds"], marks))
    print("\n   recall of original+variant pairs by kind (trim split into percussive one-shots and tonal clips), "
          "and the false pairs by what they are")
    kr = []
    for r in rows:
        kr.append({"model": r["model"], "threshold": r["threshold"],
                   **{f"r_{k}": r["by_kind"][k] for k in KIND_COLS},
                   "fp": r["pred_pairs"] - r["tp"], **{f"fp_{k}": v for k, v in r["fp_kinds"].items()}})
    print(fmt_table(kr, ["model", "threshold", *[f"r_{k}" for k in KIND_COLS], "fp", "fp_same label+source",
                         "fp_same label", "fp_other label"]))
    best = []
    for model in res["models"]:
        r = max((x for x in rows if x["model"] == model), key=lambda x: (x["f1"], x["threshold"]))
        d = next((x for x in rows if x["model"] == model and x["threshold"] == DEFAULT_THRESHOLD), None)
        best.append(f"{model} {r['threshold']} (F1 {r['f1']:.3f}, P {r['precision']:.3f}, R {r['recall']:.3f}"
                    + (f"; at {DEFAULT_THRESHOLD}: F1 {d['f1']:.3f})" if d else ")"))
    print("   best F1 per model: " + "; ".join(best))
    if res["skipped"]:
        print(f"   skipped at indexing: {len(res['skipped'])} files, e.g. {res['skipped'][0]}")


# ============================================================================ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring for what each table measures.")
    ap.add_argument("--parts", default="scale,dups", help="comma-separated: scale, dups")
    ap.add_argument("--sizes", default="10000,100000", help="library sizes for part 1")
    ap.add_argument("--dim", type=int, default=200, help="vector size of the synthetic collections")
    ap.add_argument("--dup-frac", type=float, default=0.01, help="share of injected near-copies (part 1)")
    ap.add_argument("--nd-cap-s", type=float, default=45.0, help="stop near_duplicates after this long; extrapolate")
    ap.add_argument("--cluster-timeout-s", type=float, default=120.0, help="stop one HDBSCAN run after this long")
    ap.add_argument("--nd-hnsw", action="store_true",
                    help="at the largest size, also build Edge's HNSW graph and run near_duplicates through it")
    ap.add_argument("--export-clips", type=int, default=1000)
    ap.add_argument("--budget-min", type=float, default=15.0,
                    help="whole-run budget: cluster runs get at most what is left of it (minus --reserve-s)")
    ap.add_argument("--reserve-s", type=float, default=300.0, help="time kept for part 2 out of the budget")
    ap.add_argument("--dup-clips", type=int, default=150, help="real clips given 4 true duplicates each (part 2)")
    ap.add_argument("--models", default="dsp,musicnn-msd,vgg-msd", help="models for part 2")
    ap.add_argument("--thresholds", default=",".join(str(t) for t in THRESHOLDS))
    ap.add_argument("--cache", default=str(Path("~/.cache/audio-explorer-bench")),
                    help="retrieval_quality.py's cache folder (its labelled set)")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get (part 2's data set)")
    ap.add_argument("--quick", action="store_true", help="2k + 10k clips, 60 real clips, short timeouts")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.dup_clips, args.cluster_timeout_s, args.nd_cap_s = "2000,10000", 60, 60.0, 20.0
        args.budget_min = min(args.budget_min, 6.0)
    args.thresholds = [float(t) for t in str(args.thresholds).split(",") if t]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if "dups" not in parts:
        args.reserve_s = 0.0
    work = Path(args.work or tempfile.mkdtemp(prefix="curation-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work folder {work}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    results: dict = {}
    try:
        if "scale" in parts:
            results["scale"] = part_scale(args, work)
        if "dups" in parts:
            results["dups"] = part_dups(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if "scale" in results:
        print_scale(results["scale"])
    if "dups" in results:
        print_dups(results["dups"])
    print(f"\ntotal {(time.perf_counter() - T_START) / 60:.1f} min; {os.cpu_count()} cores; "
          f"load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
