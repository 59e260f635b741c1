"""Ingest: files -> embedders -> Qdrant, idempotent and resumable.

Per clip and model, the frame points are written first and the clip point last: a clip
point present means that clip is complete for that model. A re-run recomputes only clips
whose clip point is missing (frames get the same ids, so nothing is duplicated).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

import embedders
from embedders.audio import AudioError, decode, is_audio_path, resample
from embedders.base import Embedder, l2_normalise
from embedders.paths import data_dir as resolve_data_dir

from .libraries import Library, LibraryError, get_library, save_library
from .naming import (check_library_name, collection_name, content_hash, frame_point_id,
                     frames_collection_name, point_id, relative_label)
from .store import Store

Progress = Callable[[int, int, str], None]
CLIP_INDEXES = {"label": "keyword", "path": "keyword", "folder": "keyword", "top_tags": "keyword",
                "duration_s": "float"}
FRAME_INDEXES = {"clip_id": "keyword", "label": "keyword", "time_s": "float"}
TOP_TAGS = 5


@dataclass
class IngestReport:
    """What one indexing run did."""

    library: str
    models: list[str]
    files_seen: int = 0
    added: int = 0  # clips newly written (for at least one model)
    unchanged: int = 0  # clips already complete in every model
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, one-line reason)
    audio_s: float = 0.0  # seconds of audio decoded
    wall_s: float = 0.0

    def summary(self) -> str:
        """One line for people."""
        return (f"library '{self.library}': {self.files_seen} files, {self.added} added, "
                f"{self.unchanged} unchanged, {len(self.failed)} skipped")


@dataclass
class _Item:
    path: Path
    rel: str
    label: str | None
    clip_id: str = ""
    sha1: str = ""
    missing: list[str] = field(default_factory=list)  # models lacking this clip
    wave: np.ndarray | None = None
    sr: int = 0
    error: str = ""


def scan_folder(root: str | os.PathLike) -> tuple[list[Path], list[tuple[str, str]]]:
    """Audio files under root (sorted) and files skipped with a reason; links leaving root are not followed."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise LibraryError(f"not a folder: {root}")
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            p = Path(dirpath) / fn
            if not is_audio_path(p):
                continue
            if p.is_symlink():
                target = p.resolve()
                if root not in target.parents:
                    skipped.append((p.relative_to(root).as_posix(), "symlink points outside the library (not followed)"))
                    continue
            files.append(p)
    return files, skipped


@contextlib.contextmanager
def library_lock(data_dir: Path, library: str) -> Iterator[None]:
    """Exclusive indexing lock on a library; LibraryError at once if another process holds it."""
    lock_dir = data_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fh = open(lock_dir / f"{library}.lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LibraryError(f"library '{library}' is being indexed by another process; try again when it finishes") from None
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else ""
    if isinstance(exc, AudioError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def ensure_collections(store: Store, library: str, emb: Embedder) -> None:
    """Create the clip and frame collections of (library, model) if missing."""
    for coll, idx in ((collection_name(library, emb.name), CLIP_INDEXES),
                      (frames_collection_name(library, emb.name), FRAME_INDEXES)):
        if not store.has_collection(coll):
            store.create_collection(coll, emb.dim, indexes=idx)
        elif store.collection_dim(coll) != emb.dim:
            raise LibraryError(f"collection {coll} holds {store.collection_dim(coll)}-d vectors but model "
                               f"'{emb.name}' gives {emb.dim}-d; delete the model from the library first")


def _overrides_clip(emb: Embedder) -> bool:
    return type(emb).embed_clip is not Embedder.embed_clip


def _clip_payload(item: _Item, emb: Embedder, duration_s: float, tags: np.ndarray | None) -> dict:
    p = {"path": item.rel, "label": item.label, "folder": str(Path(item.rel).parent.as_posix()),
         "duration_s": round(duration_s, 4), "sample_rate": item.sr, "content_hash": item.sha1,
         "clip_id": item.clip_id, "start_s": 0.0, "end_s": round(duration_s, 4)}
    if tags is not None and emb.tag_names:
        top = np.argsort(-tags)[:TOP_TAGS]
        p["top_tags"] = [emb.tag_names[i] for i in top]
        p["tag_scores"] = [round(float(tags[i]), 4) for i in top]
    return p


def _embed_and_write(store: Store, library: str, emb: Embedder, items: list[_Item]) -> None:
    """Embed the items' waves with one model and write frames, then clip points."""
    waves = [resample(it.wave, it.sr, emb.sample_rate) for it in items]
    frames_list = emb.embed_frames_batch(waves)
    clip_vecs = (emb.embed_clip_batch(waves) if _overrides_clip(emb)
                 else np.stack([l2_normalise(f.vectors.mean(axis=0)) for f in frames_list]))
    f_coll, c_coll = frames_collection_name(library, emb.name), collection_name(library, emb.name)
    f_ids, f_vecs, f_pay = [], [], []
    c_pay = []
    for it, fr, wave in zip(items, frames_list, waves):
        vecs = l2_normalise(fr.vectors)
        for j, (t, v) in enumerate(zip(fr.times_s, vecs)):
            f_ids.append(frame_point_id(it.clip_id, j))
            f_vecs.append(v)
            f_pay.append({"clip_id": it.clip_id, "frame": j, "time_s": round(float(t), 4),
                          "path": it.rel, "label": it.label})
        duration_s = len(wave) / emb.sample_rate
        c_pay.append(_clip_payload(it, emb, duration_s, emb.clip_tags(fr)))
    if f_ids:
        store.upsert(f_coll, f_ids, np.stack(f_vecs).astype(np.float32), f_pay)
    store.upsert(c_coll, [it.clip_id for it in items], np.asarray(clip_vecs, np.float32), c_pay)


def _decode(item: _Item) -> _Item:
    try:
        item.wave, item.sr = decode(item.path)
    except Exception as exc:  # one bad file never stops a batch
        item.error = _one_line(exc)
    return item


def index_files(store: Store, library: str, root: str | os.PathLike, files: Sequence[Path],
                models: Sequence[str], data_dir: str | os.PathLike | None = None,
                progress: Progress | None = None, batch_size: int = 16, kind: str = "folder",
                pre_skipped: Sequence[tuple[str, str]] = ()) -> IngestReport:
    """Index `files` (under `root`) into `library` with `models`; resumable and idempotent."""
    t0 = time.perf_counter()
    check_library_name(library)
    root = Path(root).resolve()
    ddir = resolve_data_dir(data_dir)
    models = list(dict.fromkeys(models))
    if not models:
        raise LibraryError("no models chosen")
    embs = [embedders.load(m, ddir) for m in models]
    report = IngestReport(library=library, models=models, failed=list(pre_skipped))
    with library_lock(ddir, library):
        try:
            lib = get_library(store, library)
            if Path(lib.root).resolve() != root:
                raise LibraryError(f"library '{library}' is rooted at {lib.root}, not {root}; "
                                   f"choose another library name")
        except LibraryError as exc:
            if "unknown library" not in str(exc):
                raise
            lib = Library(name=library, root=str(root), kind=kind)
        for emb in embs:
            ensure_collections(store, library, emb)
        lib.models = list(dict.fromkeys(lib.models + [e.name for e in embs]))
        save_library(store, lib)

        total = len(files)
        report.files_seen = total
        done = 0
        batches = [list(files[i:i + batch_size]) for i in range(0, total, batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_prepare, store, library, root, batches[0], embs) if batches else None
            for bi in range(len(batches)):
                items = pending.result()
                pending = (pool.submit(_prepare, store, library, root, batches[bi + 1], embs)
                           if bi + 1 < len(batches) else None)
                _process(store, library, embs, items, report)
                done += len(items)
                if progress:
                    progress(done, total, items[-1].rel if items else "")
        store.flush()
    report.wall_s = time.perf_counter() - t0
    return report


def _prepare(store: Store, library: str, root: Path, paths: list[Path], embs: list[Embedder]) -> list[_Item]:
    """Hash, look up what is missing, and decode (runs in a worker, overlapping embedding)."""
    items = []
    for p in paths:
        rel, label = relative_label(root, p)
        it = _Item(path=p, rel=rel, label=label)
        try:
            it.sha1 = content_hash(p)
            it.clip_id = point_id(it.sha1)
        except OSError as exc:
            it.error = f"cannot read file: {exc.strerror or exc}"
        items.append(it)
    ok = [it for it in items if not it.error]
    for emb in embs:
        have = store.existing_ids(collection_name(library, emb.name), [it.clip_id for it in ok])
        for it in ok:
            if it.clip_id not in have:
                it.missing.append(emb.name)
    for it in ok:
        if it.missing:
            _decode(it)
    return items


def _process(store: Store, library: str, embs: list[Embedder], items: list[_Item], report: IngestReport) -> None:
    for it in items:
        if it.error:
            report.failed.append((it.rel, it.error))
        elif not it.missing:
            report.unchanged += 1
    todo = [it for it in items if not it.error and it.missing]
    written: set[str] = set()
    for emb in embs:
        need = [it for it in todo if emb.name in it.missing]
        if not need:
            continue
        try:
            _embed_and_write(store, library, emb, need)
            written.update(it.clip_id for it in need)
        except Exception:
            # The batch failed: retry one by one so one bad clip cannot sink the others.
            for it in need:
                try:
                    _embed_and_write(store, library, emb, [it])
                    written.add(it.clip_id)
                except Exception as exc:
                    it.error = f"{emb.name}: {_one_line(exc)}"
                    report.failed.append((it.rel, it.error))
    for it in todo:
        if it.clip_id in written:
            report.added += 1
            report.audio_s += len(it.wave) / it.sr
        it.wave = None


def index_folder(store: Store, library: str, folder: str | os.PathLike, models: Sequence[str],
                 data_dir: str | os.PathLike | None = None, progress: Progress | None = None,
                 batch_size: int = 16) -> IngestReport:
    """Index every audio file under `folder` (labels from sub-folders) into `library`."""
    check_library_name(library)
    for m in models:
        embedders.get_spec(m, data_dir)
    files, skipped = scan_folder(folder)
    if not files and not skipped:
        raise LibraryError(f"no audio files found in {folder}")
    return index_files(store, library, folder, files, models, data_dir=data_dir, progress=progress,
                       batch_size=batch_size, pre_skipped=skipped)
