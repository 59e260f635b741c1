"""Ingest: files -> embedders -> Qdrant, idempotent and resumable.

A point is a whole clip, or a segment of a long recording (one point per segment, with
start/end and the parent file's id in its payload). Per point and model, the frame points
are written first and the point itself last: a point present means it is complete for that
model. A re-run recomputes only points that are missing (frames get the same ids, so
nothing is duplicated). Long files are streamed block by block, never decoded whole; a long
file that fails part-way has the segments written so far removed again. Files with the same
content have the same id: the first path is indexed, the others are reported ("same audio as").

Hostile files: only regular files are read. The folder scan skips FIFOs, sockets, devices,
symlink loops and broken links with a one-line reason (`os.lstat` / `os.stat`, nothing opened);
hashing opens with O_NONBLOCK and checks with fstat, so a file swapped for a FIFO later cannot
block either, and reads no more than the size the file had when opened. A file that vanishes,
grows or is replaced between hashing and decoding is skipped ("vanished while indexing",
"changed while indexing"); decoding has its own guards (`embedders.audio`).

Decoder crashes: the local engine reads audio (headers, whole clips, long files' blocks) in a child
process (`embedders.isolated`, one per run), so a native crash in libsndfile or ffmpeg's libraries
(a SIGSEGV, an abort, an out-of-memory kill) kills only that child. The file it was reading is tried
once more in a fresh child; if that dies too, the file is reported ("the decoder crashed on it
(signal SIGSEGV); skipped, nothing of it written") and the run goes on with a new child. A long file
whose decoder dies part-way has its segments written so far removed, as for any long file that fails.
`$AUDIO_EXPLORER_DECODE_IN_PROCESS=1` decodes in this process instead (a crash ends the run). Ray
actors decode in their own process: Ray isolates them (`index.ray_engine`).

Guards: the data folder must be writable (checked before anything is written), and indexing
stops with a one-line error, between batches, when the data folder's disk has less than
`$AUDIO_EXPLORER_MIN_FREE_MB` (default 64) MB free: Qdrant Edge writes through memory maps,
and a write into a full disk would kill the process (SIGBUS) instead of raising an error.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

import embedders
from embedders.audio import (AudioError, NotRegularFile, decode, file_kind, info, is_audio_path, not_regular_reason, printable,
                             resample, stream_segments, trim_to_peak)
from embedders.base import Embedder, l2_normalise
from embedders.descriptors import describe, thumbnail_png, write_thumbnail
from embedders.isolated import DecoderCrashed, IsolatedDecoder, in_process_requested
from embedders.paths import data_dir as resolve_data_dir

from . import filetags
from .labels import Labeler, make_labeler
from .libraries import Library, LibraryError, UnknownLibraryError, get_library, save_library
from .curation import merge_edits
from .aspects import delete_aspects, ensure_aspect_collections, missing_aspects, write_aspects
from .naming import (FileChangedError, FileStamp, check_library_name, collection_name, describe_change,
                     file_stamp, frame_point_id, frames_collection_name, hash_file, point_id)
from . import adapt
from . import store as store_module
from .store import DamagedCollectionError, Store, StoreError
from .store.interface import DEFAULT_MIN_FREE_MB, MIN_FREE_ENV, min_free_mb  # one threshold for ingest and writes

Progress = Callable[[int, int, str], None]
CLIP_INDEXES = {"label": "keyword", "path": "keyword", "folder": "keyword", "top_tags": "keyword",
                "file_id": "keyword", "duration_s": "float", "start_s": "float", "loudness_dbfs": "float",
                "spectral_centroid_hz": "float"}
CLIP_INDEXES.update(filetags.INDEXES)  # the files' own tags (genre, artist, album)
FRAME_INDEXES = {"file_id": "keyword", "label": "keyword", "time_s": "float"}
TOP_TAGS = 5
LONG_FILE_S = 30.0  # in "auto" mode, files longer than this are split into segments
SEGMENT_BATCH = 64
ASPECTS_KEY = "__aspects__"  # in _Item.missing: the clip's aspect vectors are not stored (no model holds "__")


@dataclass
class IngestOptions:
    """How files become points."""

    segment: str = "auto"  # "auto" (files > 30 s) | "always" | "never"
    segment_s: float = 1.0
    hop_s: float = 1.0
    trim: bool = False  # trim clips to the model's window around their peak
    labels: str | None = None  # label source: folder (default), esc50, urbansound8k, pattern:..., sidecar:...
    descriptors: bool = True
    thumbnails: bool = True
    aspects: bool = True  # aspect vectors (timbre, spectrum, pitch, envelope) for steered search


@dataclass
class IngestReport:
    """What one indexing run did."""

    library: str
    models: list[str]
    files_seen: int = 0
    added: int = 0  # points newly written (for at least one model)
    unchanged: int = 0  # points already complete in every model
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, one-line reason)
    audio_s: float = 0.0  # seconds of audio embedded
    wall_s: float = 0.0
    rebuilt: list[str] = field(default_factory=list)  # collections dropped to be rebuilt (`rebuild=True`)

    def summary(self) -> str:
        """One line for people."""
        s = (f"library '{self.library}': {self.files_seen} files, {self.added} added, "
             f"{self.unchanged} unchanged, {len(self.failed)} skipped")
        return s + (f"; rebuilt {len(self.rebuilt)} collections" if self.rebuilt else "")


@dataclass
class _Item:
    """One point to write: a whole file or a segment of one."""

    path: Path
    rel: str
    label: str | None
    extra: dict = field(default_factory=dict)
    sha1: str = ""
    stamp: FileStamp | None = None  # the file's (device, inode, size, mtime) when it was hashed
    file_id: str = ""
    id: str = ""
    start_s: float = 0.0
    end_s: float | None = None
    segment: int | None = None
    missing: list[str] = field(default_factory=list)  # models lacking this point
    wave: np.ndarray | None = None
    sr: int = 0
    error: str = ""


VANISHED = "vanished while indexing (it was there when the folder was scanned)"
SYMLINK_LOOP = "symlink loop (not followed)"


def _scan_reason(p: Path, root: Path) -> str:
    """Why a listed audio path is skipped ("" to index it), from lstat/stat only: nothing is opened."""
    try:
        lst = os.lstat(p)
    except FileNotFoundError:
        return "vanished while the folder was scanned"
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if not stat.S_ISLNK(lst.st_mode):
        return "" if stat.S_ISREG(lst.st_mode) else not_regular_reason(lst.st_mode)
    try:
        st = os.stat(p)
        target = p.resolve(strict=True)
    except RuntimeError:  # Python 3.11's resolve() on a loop
        return SYMLINK_LOOP
    except FileNotFoundError:
        return "broken symlink (its target does not exist)"
    except OSError as exc:
        return SYMLINK_LOOP if exc.errno == errno.ELOOP else f"cannot follow symlink ({exc.strerror or exc})"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file (a symlink to {file_kind(st.st_mode)}): not read"
    if root not in target.parents:
        return "symlink points outside the library (not followed)"
    return ""


def scan_folder(root: str | os.PathLike) -> tuple[list[Path], list[tuple[str, str]]]:
    """Audio files under root (sorted) and files skipped with a reason: links leaving root, FIFOs,
    sockets, devices, symlink loops and broken links (told apart with lstat/stat, never opened)."""
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
            why = _scan_reason(p, root)
            if why:
                skipped.append((p.relative_to(root).as_posix(), why))
                continue
            files.append(p)
    return files, skipped


def _hash(p: Path) -> tuple[str, FileStamp | None, str]:
    """(sha1, stamp, "") of a file, or ("", None, one-line reason) when it cannot be hashed."""
    try:
        sha1, stamp = hash_file(p)
        return sha1, stamp, ""
    except (NotRegularFile, FileChangedError) as exc:
        return "", None, str(exc.strerror)
    except FileNotFoundError:
        return "", None, VANISHED
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "", None, SYMLINK_LOOP
        return "", None, f"cannot read file ({exc.strerror or exc})"


def _changed(p: Path, stamp: FileStamp | None) -> str:
    """A one-line reason when the file is no longer the one that was hashed, else ""."""
    try:
        now = file_stamp(os.stat(p))
    except FileNotFoundError:
        return VANISHED
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if stamp is not None and now != stamp:
        return f"changed while indexing ({describe_change(stamp, now)}); index it again once it is complete"
    return ""


def check_writable(data_dir: Path) -> None:
    """LibraryError (one line) unless files can be created in the data folder."""
    try:
        lock_dir = Path(data_dir) / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        probe = lock_dir / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LibraryError(f"the data folder {data_dir} is not writable ({exc.strerror or exc}); indexing "
                           f"writes there: fix its permissions or choose another with --data-dir") from None


def check_free_space(data_dir: Path) -> None:
    """LibraryError (one line) when the data folder's disk has less than `min_free_mb()` free."""
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize / 1e6
    need = min_free_mb()
    if free < need:
        raise LibraryError(f"only {free:.1f} MB free on the disk of the data folder {data_dir} (indexing keeps "
                           f"{need:g} MB, ${MIN_FREE_ENV}); stopped between batches, nothing half-written: "
                           f"free some space and run the same command again to resume")


@contextlib.contextmanager
def library_lock(data_dir: Path, library: str) -> Iterator[None]:
    """Exclusive indexing lock on a library; LibraryError at once if another process holds it."""
    lock_dir = data_dir / "locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fh = open(lock_dir / f"{library}.lock", "w")
    except OSError as exc:
        raise LibraryError(f"the data folder {data_dir} is not writable ({exc.strerror or exc}); indexing "
                           f"writes there: fix its permissions or choose another with --data-dir") from None
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


def _one_line(exc: BaseException, name: str = "") -> str:
    text = str(exc).strip().splitlines()
    msg = printable(text[-1] if text else "")
    if isinstance(exc, AudioError):
        prefix = f"{printable(name)}: "
        return msg[len(prefix):] if name and msg.startswith(prefix) else msg  # the report names the file
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


def thumbnail_path(data_dir: Path, library: str, point: str) -> Path:
    """Where a point's spectrogram thumbnail lives."""
    return data_dir / "thumbs" / library / f"{point}.png"


def _overrides_clip(emb: Embedder) -> bool:
    return type(emb).embed_clip is not Embedder.embed_clip


def _payload(item: _Item, emb: Embedder, tags: np.ndarray | None) -> dict:
    duration_s = len(item.wave) / item.sr if item.wave is not None else 0.0
    end_s = item.end_s if item.end_s is not None else item.start_s + duration_s
    p = {"path": item.rel, "label": item.label, "folder": str(Path(item.rel).parent.as_posix()),
         "duration_s": round(duration_s, 4), "sample_rate": item.sr, "content_hash": item.sha1,
         "file_id": item.file_id, "start_s": round(item.start_s, 4), "end_s": round(end_s, 4)}
    if item.segment is not None:
        p["segment"] = item.segment
    p.update(item.extra)
    if tags is not None and emb.tag_names:
        top = np.argsort(-tags)[:TOP_TAGS]
        p["top_tags"] = [emb.tag_names[i] for i in top]
        p["tag_scores"] = [round(float(tags[i]), 4) for i in top]
    return p


def _embed_and_write(store: Store, library: str, emb: Embedder, items: list[_Item], trim: bool) -> None:
    """Embed the items' waves with one model and write frames, then the points."""
    waves = [resample(it.wave, it.sr, emb.sample_rate) for it in items]
    if trim:
        waves = [trim_to_peak(w, emb.sample_rate, emb.window_s or 1.0) for w in waves]
    frames_list = emb.embed_frames_batch(waves)
    vecs = (emb.embed_clip_batch(waves) if _overrides_clip(emb)
            else np.stack([l2_normalise(f.vectors.mean(axis=0)) for f in frames_list]))
    f_coll, c_coll = frames_collection_name(library, emb.name), collection_name(library, emb.name)
    f_ids, f_vecs, f_pay, pays = [], [], [], []
    raw = getattr(emb, "raw_latent", False)  # a latent-space model: keep its raw coordinates in the payload too
    for it, fr in zip(items, frames_list):
        fv = l2_normalise(fr.vectors)
        for j, (t, v) in enumerate(zip(fr.times_s, fv)):
            # frames of a segment belong to its parent file's trajectory, at file time
            f_ids.append(frame_point_id(it.id, j))
            f_vecs.append(v)
            f_pay.append({"file_id": it.file_id, "point_id": it.id, "frame": j,
                          "time_s": round(float(t) + it.start_s, 4), "path": it.rel, "label": it.label})
            if raw:
                f_pay[-1]["latent"] = [round(float(x), 5) for x in fr.vectors[j]]
        pays.append(_payload(it, emb, emb.clip_tags(fr)))
        if raw and len(fr.vectors):
            pays[-1]["latent"] = [round(float(x), 5) for x in np.asarray(fr.vectors, np.float64).mean(axis=0)]
    if f_ids:
        store.upsert(f_coll, f_ids, np.stack(f_vecs).astype(np.float32), f_pay)
    ids = [it.id for it in items]
    # the library's user edits (tags, user labels) win over what indexing derives
    store.upsert(c_coll, ids, np.asarray(vecs, np.float32), merge_edits(store, library, ids, pays))


class _InProcessDecoder:
    """Audio read in this process (a Ray actor, which Ray isolates, or `$AUDIO_EXPLORER_DECODE_IN_PROCESS`).
    Calls this module's `info`, `decode` and `stream_segments` when used (tests may wrap them)."""

    def info(self, p: Path):
        return info(p)

    def decode(self, p: Path) -> tuple[np.ndarray, int]:
        return decode(p)

    def segments(self, p: Path, segment_s: float, hop_s: float) -> Iterator[tuple[float, float, np.ndarray, int]]:
        return stream_segments(p, segment_s, hop_s)

    def close(self) -> None:
        pass


class _ChildDecoder:
    """Audio read in a child process (`embedders.isolated.IsolatedDecoder`): a decoder crash costs the
    child, not the run. A file whose child died is tried once more in a fresh child before it is
    reported, so a crash caused by an earlier file's leftovers does not blame an innocent one."""

    def __init__(self) -> None:
        self.child = IsolatedDecoder(start=True)  # it starts while the run reads the library

    def _twice(self, fn: Callable, p: Path):
        try:
            return fn(p)
        except DecoderCrashed:
            return fn(p)  # a fresh child; a second crash is the file's own

    def info(self, p: Path):
        return self._twice(self.child.info, p)

    def decode(self, p: Path) -> tuple[np.ndarray, int]:
        return self._twice(self.child.decode, p)

    def segments(self, p: Path, segment_s: float, hop_s: float) -> Iterator[tuple[float, float, np.ndarray, int]]:
        return stream_segments(p, segment_s, hop_s, blocks=self.child.stream_blocks)  # no retry: segments were written

    def close(self) -> None:
        self.child.close()


def open_decoder(isolated: bool | None = None) -> _InProcessDecoder | _ChildDecoder:
    """The decoder of a local indexing run: in a child process unless `isolated` is False (default:
    unless `$AUDIO_EXPLORER_DECODE_IN_PROCESS` is set)."""
    if isolated is None:
        isolated = not in_process_requested()
    return _ChildDecoder() if isolated else _InProcessDecoder()


class _Run:
    """State of one indexing run."""

    def __init__(self, store: Store, library: str, root: Path, embs: list[Embedder], ddir: Path,
                 opts: IngestOptions, labeler: Labeler, report: IngestReport,
                 decoder: _InProcessDecoder | _ChildDecoder | None = None):
        self.store, self.library, self.root, self.embs = store, library, root, embs
        self.ddir, self.opts, self.labeler, self.report = ddir, opts, labeler, report
        self.thumb_sink: dict[str, bytes] | None = None  # thumbnails as PNG bytes instead of files under ddir
        self.decoder = decoder or _InProcessDecoder()
        self.seen: dict[str, str] = {}  # whole-file point id -> relative path, to report duplicate files
        self.copies: dict[str, set[str]] = {}  # point id -> other paths of the same bytes
        self.long_written: list[tuple[str, str]] | None = None  # (model, point id) of the long file being indexed

    def write_copies(self) -> None:
        """Record the other paths of byte-identical files (`copies`) on their point in every
        model collection of the library: the Duplicates view's exact groups."""
        if not self.copies:
            return
        colls = [c for c in (collection_name(self.library, m) for m in get_library(self.store, self.library).models)
                 if self.store.has_collection(c) and self.store.damaged(c) is None]
        known: dict[str, dict] | None = None
        for coll in colls:
            try:
                if known is None:
                    known = {r.id: r.payload for r in self.store.retrieve(coll, list(self.copies))}
                for pid, paths in self.copies.items():
                    if pid in known:
                        merged = sorted(set(known[pid].get("copies") or []) | paths)
                        self.store.set_payload(coll, [pid], {"copies": merged})
            except DamagedCollectionError:
                continue  # another model's damaged collection: reported by `libraries`, rebuilt on its own

    def fail(self, rel: str, why: str) -> None:
        """Report a skipped file (or segment) with a one-line reason."""
        self.report.failed.append((printable(rel), printable(why)))

    def _new_item(self, p: Path) -> _Item:
        rel = p.relative_to(self.root).as_posix()
        label, extra = self.labeler(rel)
        if not any(k in extra for k in filetags.FIELDS):  # the file's own tags (a tag: labeler read them)
            extra = {**filetags.read_tags(p), **extra}
        return _Item(path=p, rel=rel, label=label, extra=dict(extra))

    def _mark_missing(self, items: list[_Item]) -> None:
        for emb in self.embs:
            have = self.store.existing_ids(collection_name(self.library, emb.name), [it.id for it in items])
            for it in items:
                if it.id not in have:
                    it.missing.append(emb.name)
        if self.opts.aspects:
            lacking = missing_aspects(self.store, self.library, [it.id for it in items])
            for it in items:
                if it.id in lacking:
                    it.missing.append(ASPECTS_KEY)

    def is_long(self, p: Path) -> bool:
        """Whether a file is indexed as segments."""
        if self.opts.segment == "always":
            return True
        if self.opts.segment == "never":
            return False
        try:
            return self.decoder.info(p).duration_s > LONG_FILE_S
        except AudioError:
            return False

    def prepare(self, paths: list[Path]) -> list[_Item]:
        """Hash, look up what is missing, and decode whole clips (runs in a worker thread)."""
        items = []
        for p in paths:
            it = self._new_item(p)
            it.sha1, it.stamp, it.error = _hash(p)
            if not it.error:
                it.id = it.file_id = point_id(it.sha1)
            items.append(it)
        ok = [it for it in items if not it.error]
        self._mark_missing(ok)
        for it in ok:
            if it.missing:
                it.error = _changed(it.path, it.stamp)
                if it.error:
                    continue
                try:
                    it.wave, it.sr = self.decoder.decode(it.path)
                except Exception as exc:  # one bad file never stops a batch
                    it.error = _one_line(exc, it.path.name)
                    continue
                it.error = _changed(it.path, it.stamp)  # what was decoded is what was hashed
                if it.error:
                    it.wave = None
        return items

    def process(self, items: list[_Item]) -> None:
        """Embed and write the items that are missing for some model."""
        rep = self.report
        for it in items:
            if it.error:
                self.fail(it.rel, it.error)
                continue
            if it.segment is None:
                first = self.seen.setdefault(it.id, it.rel)
                if first != it.rel:  # same content, same point id: one point, the first path
                    self.copies.setdefault(it.id, set()).add(it.rel)
                    it.error = f"same audio as {printable(first)} (indexed once)"
                    self.fail(it.rel, it.error)
                    it.wave = None
                    continue
            if not it.missing:
                rep.unchanged += 1
        todo = [it for it in items if not it.error and it.missing]
        if not todo:
            return
        check_free_space(self.ddir)
        if self.opts.descriptors:
            for it in todo:
                try:
                    it.extra.update({k: v for k, v in describe(it.wave, it.sr).items() if k != "duration_s"})
                except Exception:  # descriptors are a bonus; never fail a clip for them
                    pass
        written: set[str] = set()
        failed_ids: set[str] = set()
        for emb in self.embs:
            need = [it for it in todo if emb.name in it.missing]
            if not need:
                continue
            done: list[_Item] = []
            try:
                _embed_and_write(self.store, self.library, emb, need, self.opts.trim)
                done = need
            except StoreError:
                raise  # the store itself failed: stop the run (what is written is whole)
            except Exception:
                # the batch failed: retry one by one so one bad clip cannot sink the others
                for it in need:
                    try:
                        _embed_and_write(self.store, self.library, emb, [it], self.opts.trim)
                        done.append(it)
                    except StoreError:
                        raise
                    except Exception as exc:
                        failed_ids.add(it.id)
                        self.fail(it.rel if it.segment is None else f"{it.rel}@{it.start_s:.2f}s",
                                  f"{emb.name}: {_one_line(exc, it.path.name)}")
            written.update(it.id for it in done)
            if self.long_written is not None:
                self.long_written.extend((emb.name, it.id) for it in done)
        self._write_aspects([it for it in todo if ASPECTS_KEY in it.missing and it.id not in failed_ids], written)
        for it in todo:
            if it.id in written:
                rep.added += 1
                rep.audio_s += len(it.wave) / it.sr
                if self.opts.thumbnails and it.segment is None:
                    try:
                        if self.thumb_sink is not None:  # kept in memory (a Ray actor sends them to the driver)
                            self.thumb_sink[it.id] = thumbnail_png(it.wave, it.sr)
                        else:
                            write_thumbnail(it.wave, it.sr, thumbnail_path(self.ddir, self.library, it.id))
                    except Exception:
                        pass
            it.wave = None

    def _write_aspects(self, items: list[_Item], written: set[str]) -> None:
        """Store the items' aspect vectors (after their model points); a clip that fails is reported."""
        def write(batch: list[_Item]) -> None:
            write_aspects(self.store, self.library, [it.id for it in batch], [it.wave for it in batch],
                          [it.sr for it in batch], [{"path": it.rel, "file_id": it.file_id, "start_s": it.start_s,
                                                      "end_s": it.end_s if it.end_s is not None
                                                      else it.start_s + len(it.wave) / it.sr} for it in batch])
            written.update(it.id for it in batch)
            if self.long_written is not None:
                self.long_written.extend((ASPECTS_KEY, it.id) for it in batch)
        try:
            write(items)
        except StoreError:
            raise
        except Exception:
            for it in items:
                try:
                    write([it])
                except StoreError:
                    raise
                except Exception as exc:
                    self.fail(it.rel if it.segment is None else f"{it.rel}@{it.start_s:.2f}s",
                              f"indexed, but its aspect vectors failed ({_one_line(exc, it.path.name)}); "
                              f"a steered search counts its aspects as 0 until it is indexed again")

    def index_long(self, p: Path) -> None:
        """Stream a long file as segments, batch by batch."""
        base = self._new_item(p)
        base.sha1, base.stamp, why = _hash(p)
        if why:
            self.fail(base.rel, why)
            return
        base.file_id = point_id(base.sha1)
        first = self.seen.setdefault(base.file_id, base.rel)
        if first != base.rel:
            self.fail(base.rel, f"same audio as {printable(first)} (indexed once)")
            return
        batch: list[_Item] = []
        self.long_written = []
        added, audio_s = self.report.added, self.report.audio_s
        try:
            for i, (start, end, wave, sr) in enumerate(self.decoder.segments(p, self.opts.segment_s, self.opts.hop_s)):
                it = _Item(path=p, rel=base.rel, label=base.label, extra=dict(base.extra), sha1=base.sha1,
                           file_id=base.file_id, id=point_id(base.sha1, f"seg:{start:.3f}-{end:.3f}"),
                           start_s=start, end_s=end, segment=i, wave=wave, sr=sr)
                batch.append(it)
                if len(batch) >= SEGMENT_BATCH:
                    self._flush_segments(batch)
                    batch = []
            self._flush_segments(batch)
            why = _changed(p, base.stamp)  # what was streamed is what was hashed
            if why:
                raise AudioError(why)
        except (LibraryError, StoreError):
            raise  # the run stops (disk full, store failure); segments written so far are whole points
        except Exception as exc:  # a corrupt, truncated or too long file: skip it and remove its segments
            self.fail(base.rel, _one_line(exc, p.name))
            self._remove_long_written()
            self.report.added, self.report.audio_s = added, audio_s
        finally:
            self.long_written = None

    def _remove_long_written(self) -> None:
        """Delete the segments (and their frames) this run wrote for a long file that then failed."""
        by_model: dict[str, list[str]] = {}
        for model, pid in self.long_written or []:
            by_model.setdefault(model, []).append(pid)
        delete_aspects(self.store, self.library, by_model.pop(ASPECTS_KEY, []))
        for model, ids in by_model.items():
            self.store.delete_by_filter(frames_collection_name(self.library, model), {"point_id": ids})
            self.store.delete(collection_name(self.library, model), ids)

    def _flush_segments(self, batch: list[_Item]) -> None:
        if not batch:
            return
        self._mark_missing(batch)
        self.process(batch)


def index_files(store: Store, library: str, root: str | os.PathLike, files: Sequence[Path],
                models: Sequence[str], data_dir: str | os.PathLike | None = None,
                progress: Progress | None = None, batch_size: int = 16, kind: str = "folder",
                pre_skipped: Sequence[tuple[str, str]] = (), options: IngestOptions | None = None,
                rebuild: bool = False, engine: str = "local", engine_options: dict | None = None) -> IngestReport:
    """Index `files` (under `root`) into `library` with `models`; resumable and idempotent.
    `rebuild`: first drop the library's collections of these models (damaged ones too), keeping its
    user edits collection, whose tags and labels the new points get back (`merge_edits`).
    `engine`: "local" (threads in this process) or "ray" (Ray Data actors index the files;
    `engine_options` go to `index.ray_engine.run_files`, e.g. address, workers)."""
    t0 = time.perf_counter()
    check_library_name(library)
    opts = options or IngestOptions()
    if engine not in ("local", "ray"):
        raise LibraryError(f"engine must be local or ray (got '{engine}')")
    if engine == "ray":
        from .ray_engine import require_ray
        require_ray()  # a one-line error before anything is written when Ray is not installed
    if opts.segment not in ("auto", "always", "never"):
        raise LibraryError(f"segment mode must be auto, always or never (got '{opts.segment}')")
    root = Path(root).resolve()
    ddir = resolve_data_dir(data_dir)
    models = list(dict.fromkeys(models))
    if not models:
        raise LibraryError("no models chosen")
    labeler = make_labeler(opts.labels, root)
    check_writable(ddir)
    check_free_space(ddir)
    embs = [embedders.load(m, ddir) for m in models]
    report = IngestReport(library=library, models=models, failed=[(printable(r), printable(w))
                                                                  for r, w in pre_skipped])
    with library_lock(ddir, library):
        try:
            lib = get_library(store, library)
        except UnknownLibraryError:
            lib = Library(name=library, root=str(root), kind=kind)
        else:
            if Path(lib.root).resolve() != root:
                raise LibraryError(f"library '{library}' is rooted at {lib.root}, not {root}; "
                                   f"choose another library name")
            if rebuild:
                for emb in embs:
                    for coll in (frames_collection_name(library, emb.name), collection_name(library, emb.name)):
                        if store.has_collection(coll):
                            store.delete_collection(coll)
                            report.rebuilt.append(coll)
        for emb in embs:
            ensure_collections(store, library, emb)
        if opts.aspects:
            ensure_aspect_collections(store, library)
        lib.models = list(dict.fromkeys(lib.models + [e.name for e in embs]))
        save_library(store, lib)

        decoder = open_decoder()  # with Ray, the driver only reads headers (long or not) with it
        run = _Run(store, library, root, embs, ddir, opts, labeler, report, decoder)
        try:
            done = _index_all(run, files, batch_size, progress, engine, engine_options)
        finally:
            decoder.close()  # no decoder process outlives the run
        total = len(files)
        run.write_copies()
        store.flush()
        if report.added:
            build_search_index(store, library, [e.name for e in embs],
                               (lambda msg: progress(done, total, msg)) if progress else None)
        if report.added or report.rebuilt:  # library-adapted search (index/adapt.py)
            adapt.refresh_adaptations(store, library, list(lib.models))
    report.wall_s = time.perf_counter() - t0
    return report


def _index_all(run: _Run, files: Sequence[Path], batch_size: int, progress: Progress | None, engine: str,
               engine_options: dict | None) -> int:
    """Index the files of a prepared run (whole clips in batches, then long files); files handled."""
    total = len(files)
    run.report.files_seen = total
    long_files = [p for p in files if run.is_long(p)]
    long_set = set(long_files)
    short_files = [p for p in files if p not in long_set]
    done = 0
    batches = [short_files[i:i + batch_size] for i in range(0, len(short_files), batch_size)]
    if engine == "ray" and files:
        from .ray_engine import run_files
        return run_files(run, short_files, long_files, batch_size, progress, total, **(engine_options or {}))
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pending = pool.submit(run.prepare, batches[0]) if batches else None
            for bi in range(len(batches)):
                items = pending.result()
                pending = pool.submit(run.prepare, batches[bi + 1]) if bi + 1 < len(batches) else None
                run.process(items)
                done += len(items)
                if progress:
                    progress(done, total, printable(items[-1].rel) if items else "")
        except BaseException:
            run.decoder.close()  # Ctrl-C or an error: the prefetch thread's decode stops now, not after its batch
            raise
    for p in long_files:
        run.index_long(p)
        done += 1
        if progress:
            progress(done, total, printable(p.name))
    return done


def build_search_index(store: Store, library: str, models: Sequence[str],
                       say: Callable[[str], None] | None = None) -> list[str]:
    """Build the HNSW graph of each clip collection with more points than queries scan exactly
    (`index.store.EXACT_SEARCH_MAX_POINTS`, 20k): measured at 1M x 200-d clustered vectors, 8 min on
    2 cores for queries of 5.5 ms instead of 49 ms at recall@10 0.988; 100k x 512-d: ~1 ms vs ~100 ms
    exact at recall@10 0.99 (ef 128). Returns the collections built."""
    built = []
    for model in models:
        coll = collection_name(library, model)
        if store.count(coll) > store_module.EXACT_SEARCH_MAX_POINTS:
            if say:
                say(f"building the search index of {model} (minutes for a million clips)")
            store.build_hnsw(coll)
            built.append(coll)
    return built


def index_folder(store: Store, library: str, folder: str | os.PathLike, models: Sequence[str],
                 data_dir: str | os.PathLike | None = None, progress: Progress | None = None,
                 batch_size: int = 16, options: IngestOptions | None = None, rebuild: bool = False,
                 engine: str = "local", engine_options: dict | None = None) -> IngestReport:
    """Index every audio file under `folder` into `library` (labels from sub-folders unless
    `options.labels` says otherwise); `rebuild` first drops these models' collections, `engine` picks
    the local or the Ray engine (see `index_files`)."""
    check_library_name(library)
    for m in models:
        embedders.get_spec(m, data_dir)
    files, skipped = scan_folder(folder)
    if not files and not skipped:
        raise LibraryError(f"no audio files found in {folder}")
    return index_files(store, library, folder, files, models, data_dir=data_dir, progress=progress,
                       batch_size=batch_size, pre_skipped=skipped, options=options, rebuild=rebuild,
                       engine=engine, engine_options=engine_options)


def index_recording(store: Store, library: str, path: str | os.PathLike, models: Sequence[str],
                    data_dir: str | os.PathLike | None = None, progress: Progress | None = None,
                    segment_s: float = 1.0, hop_s: float = 1.0) -> IngestReport:
    """Index one long recording as fixed-length segments (the library is rooted at its folder)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise LibraryError(f"not a file: {path}")
    opts = IngestOptions(segment="always", segment_s=segment_s, hop_s=hop_s, thumbnails=False)
    return index_files(store, library, path.parent, [path], models, data_dir=data_dir, progress=progress,
                       kind="recording", options=opts)
