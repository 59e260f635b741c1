"""The Ray indexing engine: Ray Data actors hash, decode and embed, the store gets the points.

`index_files(..., engine="ray")` hands the files here: batches of whole clips, and each long file
(streamed as segments) as a unit of its own. The driver lists the folder (with the same guards as the
local engine) and keeps everything that must be global: the library lock, the collections, the
duplicate-content check ("same audio as"), the report and the progress bar. A Ray Data pipeline
sends batches of paths to an actor pool (one actor = one loaded copy of each model; `num_gpus=1`
per actor when the cluster has GPUs); each actor runs the local engine's own code (`_Run.prepare` and
`_Run.process`, or `_Run.index_long` for a long file) on its unit, against one of two stores:

- a Qdrant server or cluster (`QDRANT_URL`): the actor writes to it directly, through its own
  client (frames first, the clip point last, as locally) and sends back only what happened;
- Qdrant Edge (the default; one process owns a shard): the actor's store records the writes,
  and the driver replays them in order (frames, then clip points with the library's user edits
  applied), so the same "a point present is complete" rule holds. A long file that fails part-way
  has its recorded segments dropped in the actor: the driver never writes them.

Resuming: the actors skip points already present (with Edge, from a snapshot of the clip ids the
driver takes at start; with a server, by asking it), so a crashed run, driver or worker, is
resumed by running the same command again. A killed actor is restarted by Ray (`max_restarts=-1`,
Ray Data's default: the pool never shrinks) and its batch is retried (`max_task_retries=RETRIES`);
writes are idempotent (deterministic ids), so a retried batch writes the same points again. Batches
arrive in file order (`preserve_order`): the first path of duplicated content is the one indexed, as
with the local engine.

A poison file (one that kills its worker process on every try: a decoder segfault, an `os._exit` in
native code, an out-of-memory kill) must not stop the run. The actors catch every Python exception
themselves and send it back, so the only blocks Ray Data can lose are batches whose process died
RETRIES + 1 times; the run lets Ray Data drop those (`DataContext.max_errored_blocks = -1`) and goes
on. The files of a dropped batch are then sent again one file per block (a second pass, isolating
the poison file from the good files that shared its batch); a file whose single-file block is
dropped as well is reported ("worker crashed while processing it") and skipped. With Edge nothing of
it was written (the driver never got its writes); with a server, a long file whose worker died
part-way has its segments removed by the driver, as the local engine does for a long file that fails.
Nothing about the file is remembered: the next run tries it again (2 x (RETRIES + 1) crashes at most)
and reports it again.

On a multi-node cluster the library folder and the app must be at the same paths on every node
(a shared file system); spectrogram thumbnails are made on the workers and written by the driver.
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .curation import merge_edits
from .libraries import LibraryError
from .naming import collection_name, frames_collection_name, library_prefix, parse_collection_name

RETRIES = 2  # retries of a batch whose worker process died, before the batch is dropped (and isolated)
CRASHED = "worker crashed while processing it"


def require_ray() -> Any:
    """The `ray` module, or a one-line LibraryError saying how to get it."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise LibraryError("the ray engine needs Ray Data: pip install 'ray[data]==2.60.0' "
                           "(or use the default local engine)") from None
    return ray


class _RecordingStore:
    """What a Ray actor gives the local engine as its store.

    With `inner` (a Qdrant server) every call goes to it. Without (Edge, owned by the driver):
    `has_collection` / `existing_ids` answer from the driver's snapshot (the library's collections,
    and the ids of its clip and aspect collections), `create_collection` and `upsert` are recorded
    for the driver to replay in order, and the user-edits collection reads as empty (the driver
    applies the edits when it replays). Clip ids written are noted either way."""

    def __init__(self, inner: Any | None, existing: dict[str, set[str]], clip_colls: set[str],
                 collections: set[str] | None = None):
        self.inner, self.existing, self.clip_colls = inner, existing, clip_colls
        self.known = frozenset(collections or ())
        self.collections = set(self.known)
        self.ops: list[tuple] = []
        self.written: set[str] = set()

    def start_batch(self) -> None:
        """Forget the last batch's writes, creations included: each batch's ops stand alone, so the
        driver can apply any batch (retried on a restarted actor, in any order) by itself."""
        self.ops, self.written, self.collections = [], set(), set(self.known)

    def existing_ids(self, name: str, ids: list[str]) -> set[str]:
        if self.inner is not None:
            return self.inner.existing_ids(name, ids)
        have = self.existing.get(name, set())
        return {i for i in ids if i in have}

    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        if self.inner is not None:
            self.inner.upsert(name, ids, vectors, payloads)
        else:
            self.ops.append(("upsert", name, list(ids), np.asarray(vectors, np.float32), list(payloads)))
        if name in self.clip_colls:
            self.written.update(ids)

    def has_collection(self, name: str) -> bool:
        return self.inner.has_collection(name) if self.inner is not None else name in self.collections

    def _drop(self, name: str, keep: Callable[[str, dict], bool]) -> None:
        ops = []
        for op in self.ops:
            if op[0] == "upsert" and op[1] == name:
                js = [j for j, (i, p) in enumerate(zip(op[2], op[4])) if keep(i, p)]
                if not js:
                    continue
                op = (op[0], op[1], [op[2][j] for j in js], op[3][js], [op[4][j] for j in js])
            ops.append(op)
        self.ops = ops

    def delete(self, name: str, ids: list[str]) -> None:
        """Recorded writes of `ids` are dropped (a long file that failed part-way)."""
        if self.inner is not None:
            return self.inner.delete(name, ids)
        gone = set(ids)
        self._drop(name, lambda i, p: i not in gone)
        self.written -= gone if name in self.clip_colls else set()

    def delete_by_filter(self, name: str, flt: dict) -> None:
        """Only {"point_id": ids} (a failed long file's frames) is needed here."""
        if self.inner is not None:
            return self.inner.delete_by_filter(name, flt)
        if set(flt) != {"point_id"}:
            raise AttributeError(f"delete_by_filter({flt}) is not available to a Ray worker")
        gone = set(flt["point_id"]) if isinstance(flt["point_id"], (list, tuple, set)) else {flt["point_id"]}
        self._drop(name, lambda i, p: p.get("point_id") not in gone)

    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        if self.inner is not None:
            return self.inner.create_collection(name, dim, indexes)
        self.collections.add(name)
        self.ops.append(("create", name, int(dim), dict(indexes or {})))

    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list:
        if self.inner is not None:
            return self.inner.retrieve(name, ids, with_vectors)
        if parse_collection_name(name) and parse_collection_name(name)[2] == "edits":
            return []  # the driver applies the user edits when it replays
        raise AttributeError(f"retrieve({name}) is not available to a Ray worker writing through the driver")

    def __getattr__(self, attr: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is not None:
            return getattr(inner, attr)
        raise AttributeError(f"'{attr}' is not available to a Ray worker writing through the driver")


class EmbedWorker:
    """A Ray Data actor: loads the models once, then indexes batches of paths."""

    def __init__(self, cfg: dict, existing: Any = None):
        import embedders
        from embedders.paths import data_dir as resolve_data_dir

        from .ingest import IngestOptions, IngestReport, _Run
        from .labels import make_labeler

        self.cfg = cfg
        self.library = cfg["library"]
        ddir = resolve_data_dir(cfg["data_dir"])
        embs = [embedders.load(m, ddir) for m in cfg["models"]]
        if isinstance(existing, list) and existing:  # a Ray object ref passed inside a list stays a ref
            import ray

            existing = ray.get(existing[0])
        existing = existing or {"collections": set(), "ids": {}}
        inner = None
        if cfg.get("url"):
            from .store import ClientStore

            inner = ClientStore.connect(cfg["url"], os.environ.get("QDRANT_API_KEY") or None)
        clip_colls = {collection_name(self.library, e.name) for e in embs}
        self.store = _RecordingStore(inner, existing["ids"], clip_colls, existing["collections"])
        root = Path(cfg["root"])
        self.report = IngestReport(library=self.library, models=list(cfg["models"]))
        # thumbnails are made in memory (`_Run.thumb_sink`) and sent with each batch: nothing is written here
        self.run = _Run(self.store, self.library, root, embs, Path(tempfile.gettempdir()),
                        IngestOptions(**cfg["options"]), make_labeler(cfg["options"].get("labels"), root), self.report)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Index one unit; a Python exception comes back as the result (only a process that dies
        makes Ray Data lose a block, and only those blocks are dropped and isolated)."""
        from .store import StoreError

        try:
            return self._index(batch)
        except (LibraryError, StoreError) as exc:  # the run stops (disk full, store unreachable)
            err: Exception = exc
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            err = LibraryError(f"the Ray run stopped ({type(exc).__name__}{': ' + text if text else ''}); what "
                               f"is written is whole: run the same command again to resume")
        try:
            blob = pickle.dumps({"error": err}, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            blob = pickle.dumps({"error": LibraryError(str(err))}, protocol=pickle.HIGHEST_PROTOCOL)
        return {"result": np.array([blob], dtype=object)}

    def _index(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        run, rep = self.run, self.report
        rep.failed, rep.added, rep.unchanged, rep.audio_s = [], 0, 0, 0.0
        self.store.start_batch()
        run.copies = {}
        # copies across batches are the driver's to settle (`_apply`, in the file order); an actor that
        # remembered earlier batches would report a re-sent earlier path as the copy of a later one
        run.seen = {}
        run.thumb_sink = {}
        paths = [Path(str(p)) for p in batch["paths"][0]]
        if bool(batch["long"][0]):
            return self._long(paths[0])
        items = run.prepare(paths)
        dur = {it.rel: (len(it.wave) / it.sr if it.wave is not None else 0.0) for it in items}
        run.process(items)
        rows = []
        for it in items:
            written = bool(it.id) and it.id in self.store.written
            rows.append((it.rel, it.id, it.error, bool(it.missing), written, dur[it.rel]))
        # thumbnails made in memory (run.thumb_sink) go back with the batch: nothing is written on this node
        thumbs = {pid: png for pid, png in run.thumb_sink.items() if pid in self.store.written}
        out = {"items": rows, "failed": rep.failed, "ops": self.store.ops, "thumbs": thumbs,
               "copies": {k: sorted(v) for k, v in run.copies.items()}, "pid": os.getpid()}
        return {"result": np.array([pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}

    def _long(self, path: Path) -> dict[str, np.ndarray]:
        """One long file, streamed as segments (`_Run.index_long`); its counts go back whole."""
        run, rep = self.run, self.report
        before = set(run.seen)
        run.index_long(path)
        rel = path.relative_to(run.root).as_posix()
        new = [fid for fid, r in run.seen.items() if fid not in before and r == rel]
        out = {"items": [], "long": (rel, new[0] if new else "", rep.added, rep.unchanged, rep.audio_s),
               "failed": rep.failed, "ops": self.store.ops, "thumbs": {}, "copies": {}, "pid": os.getpid()}
        return {"result": np.array([pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}


def _snapshot(store: Any, library: str) -> dict:
    """What the actors need to know of the library in Edge (a server is asked directly): its
    collections, and the ids in its clip and aspect collections (what is already indexed)."""
    colls = {c for c in store.list_collections() if c.startswith(library_prefix(library))}
    ids = {}
    for c in sorted(colls):
        kind = parse_collection_name(c)
        if kind and kind[2] in ("clips", "aspect") and store.count(c):
            ids[c] = {r.id for r in store.scroll(c, batch=10000)}
    return {"collections": colls, "ids": ids}


def _init_ray(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    repo = str(Path(__file__).resolve().parent.parent)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)}
    for var in ("AUDIO_EXPLORER_DATA", "QDRANT_API_KEY", "HF_HOME"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, runtime_env={"env_vars": env})
    except Exception as exc:
        raise LibraryError(f"cannot start or reach Ray{' at ' + address if address else ''}: "
                           f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}") from None
    return True


class _QuietDroppedBlocks(logging.Filter):
    """Keeps Ray Data's "Ignoring this exception" traceback of a dropped block off the console (it
    stays in Ray's ray-data.log); the run reports the file in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Ignoring this exception" not in record.getMessage()


def _console_handlers() -> list[logging.Handler]:
    """Ray Data's console handlers (not its ray-data.log file handler); none if its layout changed."""
    try:
        from ray.data._internal.logging import SessionFileHandler
    except ImportError:
        return []
    return [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, SessionFileHandler)]


def run_files(run: Any, files: Sequence[Path], long_files: Sequence[Path], batch_size: int,
              progress: Callable | None, total: int, address: str | None = None, workers: int | None = None,
              direct: bool | None = None, stats: dict | None = None) -> int:
    """Index `files` (whole clips, in batches of `batch_size`) and `long_files` (segments, one file per
    unit) of a prepared local run (`index.ingest._Run`) with Ray Data actors; returns how many files
    were handled. A file that kills its worker process on every try is reported (`CRASHED`) and
    skipped, the others are indexed (see the module docstring). `workers`: actors (default: the
    cluster's CPUs, or its GPUs when the cluster has them); `direct`: actors write to the Qdrant server
    themselves (default: when the store is a server); `stats` (a dict) gets timings: driver write time,
    wall time, actors' pids, `isolated` (files sent again one per block)."""
    ray = require_ray()
    from .ingest import printable, thumbnail_path
    from .store import ClientStore, StoreError

    store, library = run.store, run.library
    if direct is None:
        direct = isinstance(store, ClientStore) and store.backend == "server"
    if direct and not (isinstance(store, ClientStore) and store.backend == "server"):
        raise LibraryError("direct writes from Ray workers need a Qdrant server (QDRANT_URL)")
    started = _init_ray(address)
    t0 = time.perf_counter()
    write_s = 0.0
    pids: set[int] = set()
    isolated = 0
    closers: list[Callable] = []
    quiet = _QuietDroppedBlocks()
    ctx = saved = None
    try:
        res = ray.cluster_resources()
        gpu = res.get("GPU", 0) >= 1  # the cluster's GPUs (the driver's machine may have none)
        if workers is None:
            workers = max(1, int(res["GPU"]) if gpu else int(res.get("CPU", 1)))
        clip_colls = [collection_name(library, e.name) for e in run.embs]
        existing = None if direct else [ray.put(_snapshot(store, library))]
        opts = asdict(run.opts)
        cfg = {"library": library, "root": str(run.root), "models": [e.name for e in run.embs],
               "data_dir": str(run.ddir), "options": opts, "url": store.where if direct else None}
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start,
                 ctx.max_errored_blocks)
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.max_errored_blocks = -1  # a batch whose process died on every try is dropped; the run goes on
        for h in _console_handlers():
            h.addFilter(quiet)

        def stream(units: list[dict], in_flight: int | None = None):
            ds = ray.data.from_items(units, override_num_blocks=max(1, len(units)))
            # a killed actor is restarted (always: the pool keeps its size) and its batch retried RETRIES
            # times; after that Ray Data drops the block (max_errored_blocks) and the driver isolates it.
            # `in_flight=1`: one task per actor at a time, so a crash fails no task queued behind it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Ray 2.60 flags max_restarts / max_task_retries as deprecated
                pool = ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=in_flight)
                ds = ds.map_batches(EmbedWorker, fn_constructor_kwargs={"cfg": cfg, "existing": existing},
                                    batch_size=1, compute=pool,
                                    num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, zero_copy_batch=True,
                                    max_restarts=-1, max_task_retries=RETRIES)
            rows = iter(ds.iter_rows())
            closers.append(getattr(rows, "close", lambda: None))  # a driver stopped mid-run stops the pipeline
            return rows

        done = 0
        handled: set[str] = set()

        def consume(units: list[dict], in_flight: int | None = None) -> None:
            nonlocal done, write_s
            for row in stream(units, in_flight):
                out = pickle.loads(row["result"])
                if "error" in out:
                    raise out["error"]
                pids.add(out["pid"])
                w0 = time.perf_counter()
                done += _apply(run, out, set(clip_colls), thumbnail_path, None if direct else order)
                write_s += time.perf_counter() - w0
                handled.update(r[0] for r in out["items"])
                if out.get("long"):
                    handled.add(out["long"][0])
                if progress:
                    progress(done, total, printable(out["items"][-1][0] if out["items"]
                                                    else (out.get("long") or ("",))[0]))

        def rel(p: str | Path) -> str:
            return Path(p).relative_to(run.root).as_posix()

        order = {rel(p): i for i, p in enumerate([*files, *long_files])}  # the local engine's order
        units = [{"paths": [str(p) for p in files[i:i + batch_size]], "long": False}
                 for i in range(0, len(files), batch_size)]
        units += [{"paths": [str(p)], "long": True} for p in long_files]
        consume(units)
        if not handled and len(units) > 2:  # not a bad file: the workers die on everything (model, GPU, memory)
            raise LibraryError(f"every batch killed its Ray worker process ({len(units)} batches, {RETRIES + 1} tries "
                               f"each): the workers' environment crashes (model, GPU, memory), not one file; nothing "
                               f"was written: see Ray's worker logs, or try --engine local")
        # the files of dropped blocks again, one per block and one block per actor at a time: a poison
        # file can take down neither the good files of its batch nor a block queued behind it (a task
        # waiting on an actor that dies is failed with it)
        again = [{"paths": [p], "long": u["long"]} for u in units for p in u["paths"] if rel(p) not in handled]
        isolated = len(again)
        if again:
            consume(again, in_flight=1)
        lost = [u for u in again if rel(u["paths"][0]) not in handled]
        for u in lost:
            r = rel(u["paths"][0])
            if u["long"] and direct:
                _remove_file_points(run, Path(u["paths"][0]))
            run.fail(r, f"{CRASHED} (its Ray worker process died each time, {RETRIES + 1} tries on its own: a decoder or "
                        f"model crash, or out of memory); skipped, nothing of it written")
            handled.add(r)
            done += 1
            if progress:
                progress(done, total, printable(r))
        return done
    except (LibraryError, StoreError):
        raise
    except Exception as exc:
        raise LibraryError(_stopped(exc)) from None
    finally:
        for close in closers:
            close()
        for h in _console_handlers():
            h.removeFilter(quiet)
        if ctx is not None and saved is not None:
            (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start,
             ctx.max_errored_blocks) = saved
        if stats is not None:
            stats.update(driver_write_s=write_s, ray_wall_s=time.perf_counter() - t0, worker_pids=sorted(pids),
                         workers=workers, isolated=isolated)
        if started:
            ray.shutdown()


def _remove_file_points(run: Any, path: Path) -> None:
    """Remove what a worker writing to a server left of a long file before its process died: its
    segments (by file id, from every model's clip and frame collections) and their aspect vectors."""
    from .aspects import delete_aspects
    from .naming import hash_file, point_id

    try:
        fid = point_id(hash_file(path)[0])
    except Exception:
        return  # unreadable now: nothing can be matched to it
    store, lib = run.store, run.library
    for emb in run.embs:
        coll = collection_name(lib, emb.name)
        if not store.has_collection(coll):
            continue
        ids = [r.id for r in store.scroll(coll, flt={"file_id": fid})]
        delete_aspects(store, lib, ids)
        store.delete_by_filter(frames_collection_name(lib, emb.name), {"file_id": fid})
        store.delete_by_filter(coll, {"file_id": fid})


def _stopped(exc: BaseException) -> str:
    """One line for a Ray pipeline that failed (Ray's own messages run to paragraphs)."""
    text = " ".join(str(exc).split())
    first = text.split(". ")[0][:300] if text else ""
    return (f"the Ray run stopped ({type(exc).__name__}: {first}); what is written is whole: run the same "
            f"command again to resume")


def _apply(run: Any, out: dict, clip_colls: set[str], thumbnail_path: Callable, order: dict[str, int] | None = None) -> int:
    """Fold one actor batch into the driver's run: report, duplicate check, writes (replayed), thumbnails.
    `order` ({path: position in the file order}; only with replayed writes): a clip re-sent after its
    batch was dropped may come after a later path of the same content; it wins, as in the local engine
    (its point is rewritten with its path, or was already stored so by an earlier run; the other path
    is reported as the copy)."""
    from .ingest import check_free_space, printable

    rep, store = run.report, run.store
    rep.failed.extend(out["failed"])
    for pid, paths in out["copies"].items():
        run.copies.setdefault(pid, set()).update(paths)
    dup: set[str] = set()
    dup_files: set[str] = set()
    if out.get("long"):  # a long file: its segments' counts, unless its content reached another actor first
        rel, fid, added, unchanged, audio_s = out["long"]
        first = run.seen.setdefault(fid, rel) if fid else rel
        if first != rel:
            dup_files.add(fid)
            run.fail(rel, f"same audio as {printable(first)} (indexed once)")
        else:
            rep.added, rep.unchanged, rep.audio_s = rep.added + added, rep.unchanged + unchanged, rep.audio_s + audio_s
    for rel, pid, error, missing, written, dur in out["items"]:
        if error:
            continue
        first = run.seen.setdefault(pid, rel)
        if first != rel and (written or not missing) and order and order.get(rel, 1 << 62) < order.get(first, 1 << 62):
            run.seen[pid] = rel  # the earlier path (re-sent after a dropped batch) wins; counted once already
            run.copies.setdefault(pid, set()).add(first)
            run.copies[pid].discard(rel)
            run.fail(first, f"same audio as {printable(rel)} (indexed once)")
            continue
        if first != rel:  # the same content reached another actor first: one point, the first path
            dup.add(pid)
            run.copies.setdefault(pid, set()).add(rel)
            run.fail(rel, f"same audio as {printable(first)} (indexed once)")
            continue
        if not missing:
            rep.unchanged += 1
        elif written:
            rep.added += 1
            rep.audio_s += dur
    if out["ops"]:
        check_free_space(run.ddir)  # the driver's disk guard, between batches as locally
    for op in out["ops"]:
        if op[0] == "create":
            if not store.has_collection(op[1]):
                store.create_collection(op[1], op[2], indexes=op[3])
            continue
        _, coll, ids, vecs, pays = op
        if dup_files:
            keep = [j for j, p in enumerate(pays) if p.get("file_id") not in dup_files]
            ids, vecs, pays = [ids[j] for j in keep], vecs[keep], [pays[j] for j in keep]
            if not ids:
                continue
        if coll in clip_colls:
            keep = [j for j, i in enumerate(ids) if i not in dup]
            ids2 = [ids[j] for j in keep]
            if ids2:
                store.upsert(coll, ids2, vecs[keep], merge_edits(store, run.library, ids2, [pays[j] for j in keep]))
        else:  # frames (point_id in payload) and anything else keyed by clip id (aspects)
            keep = [j for j, (i, p) in enumerate(zip(ids, pays)) if i not in dup and p.get("point_id") not in dup]
            if keep:
                store.upsert(coll, [ids[j] for j in keep], vecs[keep], [pays[j] for j in keep])
    if run.opts.thumbnails:
        for pid, png in out["thumbs"].items():
            if pid in dup:
                continue
            path = thumbnail_path(run.ddir, run.library, pid)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.png")
            tmp.write_bytes(png)
            tmp.replace(path)
    return len(out["items"]) + (1 if out.get("long") else 0)
