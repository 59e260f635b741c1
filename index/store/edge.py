"""Qdrant Edge (``qdrant-edge-py``): Qdrant's engine in-process, one ``EdgeShard`` per collection.

Each collection is a shard in its own folder under the store root (``<data>/qdrant/<name>/``).
Edge has no groups, no search matrix and no average-vector recommend strategy: each is built
here on Edge's own query calls, in the narrowest place (see the methods' comments).

Damaged shards (measured on qdrant-edge-py 0.9.0, truncating, zeroing, overwriting and
bit-flipping each file of a shard in turn): most damage makes ``EdgeShard.load`` raise a plain
``Exception`` ("Service runtime error: failed to load segment ...", "failed to open WAL ...");
a truncated ``status.dat`` or a corrupt payload-index tracker makes it panic (``PanicException``,
a ``BaseException``, with a Rust panic report on stderr); a truncated vector or payload page
loads and fails at the first query or scroll; and bytes flipped in ``mutable_id_tracker.mappings``
make the load ask for tens of GB and **abort the process** (SIGABRT). So a shard is first opened
in a child process (`_probe`: load, count, one exact query over every vector, a first page of
payloads); only when that survives is it loaded here. Every failure is a one-line
:class:`DamagedCollectionError` naming the collection (``describe_damage`` words it), kept for
the process, so the other collections go on working and the damaged one can be deleted and
rebuilt. Writes first check the disk's free space (`min_free_mb`): Edge writes through memory
maps, and a write into a full disk would be SIGBUS, not an error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .filters import EdgeFilters, Filter, jsonable
from .interface import (
    MIN_FREE_ENV,
    NAME_RE,
    QUERY_BATCH_CHUNK,
    UPSERT_CHUNK,
    VECTOR_NAME,
    DamagedCollectionError,
    Hit,
    Record,
    Store,
    StoreError,
    as_vector,
    check_indexes,
    check_k,
    check_name,
    check_upsert,
    exact_search_max_points,
    hnsw_ef,
    min_free_mb,
    point_hit,
    quantization,
    records_in_order,
    sorted_facet,
)

EDGE_CONFIG_FILE = "edge_config.json"
PROBE_ENV = "AUDIO_EXPLORER_EDGE_PROBE"  # "0": load shards without probing them in a child process first
PROBE_TIMEOUT_S = 600.0
_TRANSIENT_OS_ERRORS = {11, 12, 23, 24}  # EAGAIN, ENOMEM, ENFILE, EMFILE: not damage
# Opens a shard and reads it a little, in a child process: a damaged shard may abort the process.
_PROBE = r"""
import json, sys
try:
    import qdrant_edge as qe
except BaseException as exc:  # no probe here (another interpreter): the caller loads without it
    print(json.dumps({"ok": True, "unprobed": repr(exc)}))
    raise SystemExit(0)
try:
    path, dim, vector = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    shard = qe.EdgeShard.load(path)
    try:
        shard.count(qe.CountRequest(exact=True))
        if shard.info().points_count:
            shard.query(qe.QueryRequest(limit=1, query=qe.Query.Nearest([1.0] * dim, using=vector),
                                        with_payload=False, params=qe.SearchParams(exact=True)))
            shard.scroll(qe.ScrollRequest(limit=1000, with_payload=True, with_vector=[vector]))
    finally:
        shard.close()
    print(json.dumps({"ok": True}))
except BaseException as exc:
    print(json.dumps({"ok": False, "panic": type(exc).__name__ == "PanicException", "message": str(exc)}))
"""


def _is_edge_error(exc: BaseException) -> bool:
    """Whether Qdrant Edge raised it: a plain Exception, or a Rust panic (pyo3's PanicException)."""
    return type(exc) is Exception or type(exc).__name__ == "PanicException"


def _os_error(text: str) -> int | None:
    m = re.search(r"os error (\d+)", text)
    return int(m.group(1)) if m else None


class _Shard:
    """One open EdgeShard and the lock that serialises calls on it."""

    def __init__(self, shard: Any, dim: int):
        self.shard = shard
        self.dim = dim
        self.lock = threading.RLock()


class EdgeStore(Store):
    """Qdrant Edge: one ``EdgeShard`` per collection in ``root/<name>/``, opened on first use
    and kept open (the shard holds a lock on its WAL, so one process at a time)."""

    backend = "edge"

    def __init__(self, root: Path):
        import qdrant_edge

        self._qe = qdrant_edge
        self._f = EdgeFilters(qdrant_edge)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, _Shard] = {}
        self._lock = threading.RLock()  # guards self._shards and collection create/delete
        self._closed = False
        self._damaged: dict[str, DamagedCollectionError] = {}  # found damaged in this process
        self._trusted: set[str] = set()  # created by this process: no probe needed
        self._sweep()

    def _temp_dir(self, kind: str, name: str) -> Path:
        """A hidden working folder (``.creating-`` / ``.deleting-``) named with this process's pid."""
        return self.root / f".{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{name}"

    def _sweep(self) -> None:
        """Remove working folders left by processes that died mid-create or mid-delete (kill -9):
        invisible to list_collections, but each holds Edge's preallocated files."""
        for path in list(self.root.glob(".creating-*")) + list(self.root.glob(".deleting-*")):
            owner = path.name.split("-")[1]
            if owner.isdigit():
                try:
                    os.kill(int(owner), 0)
                    continue  # its process is alive: still working
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue  # alive, another user's
            else:
                try:
                    if time.time() - path.stat().st_mtime < 3600:
                        continue  # an older naming without pid: only when stale
                except OSError:
                    continue
            shutil.rmtree(path, ignore_errors=True)

    # -- shard handling --------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def _get(self, name: str) -> _Shard:
        path = self._dir(name)
        with self._lock:
            if self._closed:
                raise StoreError("the vector store is closed")
            if name in self._damaged:
                raise self._damaged[name]
            entry = self._shards.get(name)
            if entry is not None:
                return entry
            if not (path / EDGE_CONFIG_FILE).is_file():
                raise StoreError(f"no collection named {name!r}")
            try:
                dim = self._read_dim(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise self._damage(name, f"{EDGE_CONFIG_FILE} unreadable: {exc}") from None
            if name not in self._trusted and os.environ.get(PROBE_ENV, "1") != "0":
                failure = self._probe(name, path, dim)
                if failure is not None:
                    raise self._load_failure(name, failure)
            try:
                shard = self._qe.EdgeShard.load(str(path))
            except BaseException as exc:
                if not _is_edge_error(exc):
                    raise
                raise self._load_failure(name, str(exc)) from None
            entry = _Shard(shard, dim)
            self._shards[name] = entry
            return entry

    def _probe(self, name: str, path: Path, dim: int) -> str | None:
        """Open the shard in a child process first (a damaged shard can abort the process that
        loads it): None when it opened and read back, else what went wrong, in words."""
        env = {**os.environ, "RUST_BACKTRACE": "0"}
        try:
            safe_path = ["-P"] if sys.version_info >= (3, 11) else []  # not the cwd first on sys.path
            res = subprocess.run([sys.executable, *safe_path, "-c", _PROBE, str(path), str(dim), VECTOR_NAME],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=PROBE_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise StoreError(f"opening collection {name!r} took over {PROBE_TIMEOUT_S:g} s (in a probe "
                             f"process; ${PROBE_ENV}=0 skips the probe)") from None
        except OSError:
            return None  # no child process here: load without the probe
        lines = res.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok"):
            return None
        if isinstance(answer, dict):
            msg = str(answer.get("message") or "")
            return f"Qdrant Edge panicked: {msg}" if answer.get("panic") else msg
        if res.returncode >= 0:
            return None  # the probe itself did not run (no answer, no signal): load without it
        try:
            why = signal.Signals(-res.returncode).name
        except ValueError:
            why = f"signal {-res.returncode}"
        err = [ln.strip() for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("note: ")]
        return f"Qdrant Edge crashed opening it ({why}{': ' + err[-1] if err else ''})"

    def _load_failure(self, name: str, text: str) -> StoreError:
        """The StoreError for a shard that would not open: in use, read-only, disk full, or damaged."""
        path = self._dir(name)
        if "WouldBlock" in text:
            return StoreError(f"collection {name!r} is open in another process (Qdrant Edge allows one): {path}")
        code = _os_error(text)
        if code in (30, 13):  # EROFS, EACCES
            return StoreError(
                f"cannot open collection {name!r}: the data folder {self.root.parent} is read-only or not "
                "writable, and Qdrant Edge opens its files for writing even to read (make it writable, "
                "copy it elsewhere, or use a Qdrant server with QDRANT_URL)")
        if code == 28:
            return self._disk_full(text)
        if code in _TRANSIENT_OS_ERRORS:
            return StoreError(f"cannot open collection {name!r} at {path}: {text}")
        return self._damage(name, text)

    def _damage(self, name: str, text: str) -> DamagedCollectionError:
        """Record a collection as damaged (for this process) and return its error."""
        detail = text.replace(str(self._dir(name)) + "/", "").replace(str(self._dir(name)), name)
        detail = re.sub(r"(Service runtime error: )+", "", " ".join(detail.split()))
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        message = None
        if self.describe_damage is not None:
            try:
                message = self.describe_damage(name, detail)
            except Exception:
                message = None
        err = DamagedCollectionError(name, detail, message)
        self._damaged[name] = err
        return err

    def _disk_full(self, text: str) -> StoreError:
        why = "No space left on device" if "No space left" in text else " ".join(text.split())[-80:]
        return StoreError(f"the disk of the data folder {self.root.parent} is full ({why}): free some space and "
                          f"try again")

    def _check_space(self) -> None:
        """StoreError before a write when the disk has less than `min_free_mb()` free: Qdrant Edge
        writes through memory maps, and a write into a full disk kills the process (SIGBUS)."""
        try:
            st = os.statvfs(self.root)
        except OSError:
            return
        free, need = st.f_bavail * st.f_frsize / 1e6, min_free_mb()
        if free < need:
            raise StoreError(f"only {free:.1f} MB free on the disk of the data folder {self.root.parent} (writes "
                             f"keep {need:g} MB, ${MIN_FREE_ENV}): nothing was written; free some space and try again")

    def check_space(self) -> None:
        self._check_space()

    def damaged(self, name: str) -> DamagedCollectionError | None:
        """The error of a collection found damaged in this process, else None."""
        return self._damaged.get(name)

    @staticmethod
    def _read_dim(path: Path) -> int:
        config = json.loads((path / EDGE_CONFIG_FILE).read_text())
        return int(config["vectors"][VECTOR_NAME]["size"])

    @contextmanager
    def _use(self, name: str, write: bool = False) -> Iterator[_Shard]:
        if write:
            self._check_space()
        entry = self._get(name)
        with entry.lock:
            try:
                yield entry
            except BaseException as exc:
                if _is_edge_error(exc):  # an error raised by Qdrant Edge itself
                    raise self._op_failure(name, exc) from exc
                raise

    def _op_failure(self, name: str, exc: BaseException) -> StoreError:
        """The StoreError for a failed Edge call: disk full, damage (an internal "service" error or
        a panic: the collection is then treated as damaged), or a plain error."""
        text = str(exc)
        code = _os_error(text)
        if code == 28 or "No space left" in text:
            return self._disk_full(text)
        if code not in _TRANSIENT_OS_ERRORS and (type(exc) is not Exception or "Service runtime error" in text):
            return self._damage(name, f"Qdrant Edge panicked: {text}" if type(exc) is not Exception else text)
        return StoreError(f"Qdrant Edge, collection {name!r}: {exc}")

    def _params(self, entry: _Shard) -> Any:
        if entry.shard.info().points_count <= exact_search_max_points():
            return self._qe.SearchParams(exact=True)
        return self._qe.SearchParams(hnsw_ef=hnsw_ef())

    def _request(
        self,
        entry: _Shard,
        vector: np.ndarray,
        limit: int,
        flt: Any,
        with_vectors: bool = False,
        with_payload: bool = True,
    ) -> Any:
        qe = self._qe
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(as_vector(vector).tolist(), using=VECTOR_NAME),
            filter=flt,
            with_payload=with_payload,
            with_vector=[VECTOR_NAME] if with_vectors else False,
            params=self._params(entry),
        )

    def _create_indexes(self, entry: _Shard, indexes: dict[str, str]) -> None:
        qe = self._qe
        schema = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
            "bool": qe.PayloadSchemaType.Bool,
            "text": qe.PayloadSchemaType.Text,
            "datetime": qe.PayloadSchemaType.Datetime,
            "uuid": qe.PayloadSchemaType.Uuid,
        }
        existing = set(entry.shard.info().payload_schema)
        if set(indexes) - existing:
            self._check_space()
        for field, kind in indexes.items():
            if field not in existing:
                entry.shard.update(qe.UpdateOperation.create_field_index(field, schema[kind]))

    # -- collections -----------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if NAME_RE.match(p.name) and (p / EDGE_CONFIG_FILE).is_file()
        )

    def has_collection(self, name: str) -> bool:
        return (self._dir(name) / EDGE_CONFIG_FILE).is_file()

    def create_collection(self, name: str, dim: int, indexes: dict[str, str] | None = None) -> None:
        indexes = check_indexes(indexes)
        dim = int(dim)
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        path = self._dir(name)
        qe = self._qe
        with self._lock:
            if not (path / EDGE_CONFIG_FILE).is_file():
                self._check_space()
                # Built under a hidden temporary name and renamed into place, so a crash
                # never leaves a half-made collection that list_collections would show.
                tmp = self._temp_dir("creating", name)
                try:
                    shard = qe.EdgeShard.create(
                        str(tmp),
                        qe.EdgeConfig(
                            vectors={VECTOR_NAME: qe.EdgeVectorParams(
                                size=dim, distance=qe.Distance.Cosine,
                                quantization_config=qe.ScalarQuantizationConfig(
                                    type=qe.ScalarType.Int8, quantile=0.99, always_ram=True)
                                if quantization() == "int8" else None)}
                        ),
                    )
                    shard.flush()
                    shard.close()
                    if path.exists():  # an empty or broken leftover folder
                        shutil.rmtree(path)
                    os.replace(tmp, path)
                    self._damaged.pop(name, None)
                    self._trusted.add(name)
                except Exception as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise StoreError(f"cannot create collection {name!r} at {path}: {exc}") from exc
        with self._use(name, write=True) as entry:
            if entry.dim != dim:
                raise StoreError(f"collection {name!r} exists with dim {entry.dim}, not {dim}")
            self._create_indexes(entry, indexes)
            entry.shard.flush()

    def collection_dim(self, name: str) -> int:
        return self._get(name).dim

    def delete_collection(self, name: str) -> None:
        path = self._dir(name)
        with self._lock:
            if not path.exists():
                return
            if (path / EDGE_CONFIG_FILE).is_file() and name not in self._damaged:
                try:
                    self._get(name)  # a StoreError if another process has it open
                except DamagedCollectionError:
                    pass  # a damaged collection can be deleted (to rebuild it)
            entry = self._shards.pop(name, None)
            if entry is not None:
                with entry.lock:
                    try:
                        entry.shard.close()
                    except BaseException as exc:
                        if not _is_edge_error(exc):
                            raise
            self._damaged.pop(name, None)
            self._trusted.discard(name)
            # Renamed away first: the collection disappears at once even if removal is slow.
            trash = self._temp_dir("deleting", name)
            os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def build_hnsw(self, name: str) -> None:
        """Build Qdrant's HNSW graph for a collection (Edge's ``optimize()``: 12 s at 100k x 200-d,
        8 min at 1M on 2 cores; Edge leaves collections under ~20 MB of vectors unindexed).
        Queries use it only above ``EXACT_SEARCH_MAX_POINTS`` points."""
        with self._use(name, write=True) as entry:
            entry.shard.optimize()
            entry.shard.flush()

    def indexed_count(self, name: str) -> int:
        with self._use(name) as entry:
            return int(entry.shard.info().indexed_vectors_count or 0)

    # -- writes ----------------------------------------------------------------------------
    def upsert(self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
        qe = self._qe
        with self._use(name, write=True) as entry:
            matrix = check_upsert(ids, vectors, payloads, entry.dim)
            if not len(ids):
                return
            for start in range(0, len(ids), UPSERT_CHUNK):
                points = [
                    qe.Point(str(ids[i]), {VECTOR_NAME: matrix[i].tolist()}, jsonable(payloads[i] or {}))
                    for i in range(start, min(len(ids), start + UPSERT_CHUNK))
                ]
                # One operation = one WAL record: replayed whole on the next load, or not at all.
                entry.shard.update(qe.UpdateOperation.upsert_points(points))
            entry.shard.flush()

    def delete(self, name: str, ids: list[str]) -> None:
        if not ids:
            return
        with self._use(name, write=True) as entry:
            entry.shard.update(self._qe.UpdateOperation.delete_points([str(i) for i in ids]))
            entry.shard.flush()

    def delete_by_filter(self, name: str, flt: Filter) -> None:
        translated = self._translate(flt)
        if translated is None:
            raise ValueError("delete_by_filter needs a non-empty filter (use delete_collection to drop all)")
        with self._use(name, write=True) as entry:
            entry.shard.update(self._qe.UpdateOperation.delete_points_by_filter(translated))
            entry.shard.flush()

    def set_payload(self, name: str, ids: list[str], payload: dict) -> None:
        if not ids:
            return
        with self._use(name, write=True) as entry:
            body = jsonable(payload)
            for start in range(0, len(ids), UPSERT_CHUNK):
                chunk = [str(i) for i in ids[start:start + UPSERT_CHUNK]]
                entry.shard.update(self._qe.UpdateOperation.set_payload(chunk, body))
            entry.shard.flush()

    def update_payloads(self, name: str, updates: Sequence[tuple[list[str], dict, list[str]]]) -> None:
        # one flush for all: a tag edit on a 2-model library flushed ~11 times (~64 ms each here),
        # holding the collection's lock while searches waited (benchmarks/load_test.py)
        qe = self._qe
        with self._use(name, write=True) as entry:
            for ids, to_set, to_remove in updates:
                for start in range(0, len(ids), UPSERT_CHUNK):
                    chunk = [str(i) for i in ids[start:start + UPSERT_CHUNK]]
                    if to_set:
                        entry.shard.update(qe.UpdateOperation.set_payload(chunk, jsonable(to_set)))
                    if to_remove:
                        entry.shard.update(qe.UpdateOperation.delete_payload(chunk, list(to_remove)))
            entry.shard.flush()

    def delete_payload(self, name: str, ids: list[str], keys: list[str]) -> None:
        if not ids or not keys:
            return
        with self._use(name, write=True) as entry:
            for start in range(0, len(ids), UPSERT_CHUNK):
                chunk = [str(i) for i in ids[start:start + UPSERT_CHUNK]]
                entry.shard.update(self._qe.UpdateOperation.delete_payload(chunk, list(keys)))
            entry.shard.flush()

    def ensure_index(self, name: str, key: str, kind: str) -> None:
        check_indexes({key: kind})
        with self._use(name, write=True) as entry:
            self._create_indexes(entry, {key: kind})

    # -- reads -----------------------------------------------------------------------------
    def count(self, name: str, flt: Filter | None = None) -> int:
        translated = self._translate(flt)
        with self._use(name) as entry:
            return int(entry.shard.count(self._qe.CountRequest(exact=True, filter=translated)))

    def points_count(self, name: str) -> int:
        # the shard's info (0.2 ms at 1M points; an exact count scans: 0.23-0.42 s, holding the GIL)
        with self._use(name) as entry:
            return int(entry.shard.info().points_count)

    def retrieve(self, name: str, ids: list[str], with_vectors: bool = False) -> list[Record]:
        if not ids:
            return []
        with self._use(name) as entry:
            found = entry.shard.retrieve(
                [str(i) for i in ids], with_payload=True, with_vector=[VECTOR_NAME] if with_vectors else False
            )
        return records_in_order(ids, found, with_vectors)

    def _scroll_page(self, name: str, translated: Any, with_vectors: bool, limit: int, offset: Any) -> tuple:
        with self._use(name) as entry:
            return entry.shard.scroll(
                self._qe.ScrollRequest(
                    offset=offset,
                    limit=limit,
                    filter=translated,
                    with_payload=True,
                    with_vector=[VECTOR_NAME] if with_vectors else False,
                )
            )

    # -- vector queries --------------------------------------------------------------------
    def query(
        self, name: str, vector: np.ndarray, k: int, flt: Filter | None = None, with_vectors: bool = False
    ) -> list[Hit]:
        translated = self._translate(flt)
        with self._use(name) as entry:
            points = entry.shard.query(self._request(entry, vector, check_k(k), translated, with_vectors))
        return [point_hit(p, with_vectors) for p in points]

    def _batch(
        self, name: str, matrix: np.ndarray, limit: int, translated: Any, with_payload: bool = True
    ) -> list:
        qe = self._qe
        rows: list = []
        for start in range(0, len(matrix), QUERY_BATCH_CHUNK):
            with self._use(name) as entry:
                requests = [
                    self._request(entry, v, limit, translated, with_payload=with_payload)
                    for v in matrix[start : start + QUERY_BATCH_CHUNK]
                ]
                rows.extend(entry.shard.query_batch(qe.QueryBatchRequest(requests)))
        return rows

    def recommend_average(
        self,
        name: str,
        positive_ids: list[str],
        k: int,
        flt: Filter | None = None,
        negative_ids: list[str] | None = None,
    ) -> list[Hit]:
        # Edge has RecommendBestScore / SumScores but no average-vector strategy: it is
        # Qdrant's own formula (mean of positives, plus (mean pos - mean neg) with negatives,
        # the example points excluded) computed here, then one Nearest query in Edge.
        positive_ids = [str(i) for i in positive_ids]
        negative_ids = [str(i) for i in negative_ids or []]
        if not positive_ids:
            raise ValueError("recommend_average needs at least one positive id")
        query = _average_vector(self, name, positive_ids, negative_ids)
        translated = self._f.and_not_ids(self._translate(flt), positive_ids + negative_ids)
        with self._use(name) as entry:
            points = entry.shard.query(self._request(entry, query, check_k(k), translated))
        return [point_hit(p) for p in points]

    def facet(self, name: str, key: str, limit: int = 1000, flt: Filter | None = None) -> dict[Any, int]:
        qe = self._qe
        translated = self._translate(flt)
        with self._use(name) as entry:
            if key not in entry.shard.info().payload_schema:
                # Qdrant facets read a payload index; make one as the server would need.
                self._create_indexes(entry, {key: self._facet_index_kind(name, key)})
                entry.shard.flush()
            response = entry.shard.facet(
                qe.FacetRequest(key=key, limit=int(limit), exact=True, filter=translated)
            )
        return sorted_facet([(h.value, int(h.count)) for h in response.hits], int(limit))

    def query_groups(
        self,
        name: str,
        vector: np.ndarray,
        group_by: str,
        groups: int,
        group_size: int = 1,
        flt: Filter | None = None,
    ) -> list[list[Hit]]:
        # Edge has no groups call. Narrowest equivalent on Edge's own query: over-fetch the
        # nearest points that have the field, group them in score order as Qdrant does,
        # and widen the fetch until every group is full or every point has been seen.
        groups, group_size = check_k(groups), check_k(group_size)
        translated = self._f.and_has_field(self._translate(flt), group_by)
        limit = max(64, 4 * groups * group_size)
        while True:
            with self._use(name) as entry:
                points = entry.shard.query(self._request(entry, vector, limit, translated))
            result, complete = _assemble_groups([point_hit(p) for p in points], group_by, groups, group_size)
            if complete or len(points) < limit:
                return result
            limit *= 4

    def knn_graph(
        self, name: str, k: int, flt: Filter | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        # Edge has no search-matrix call: every point's vector is queried against the same
        # filtered set with Edge's batched query.
        return self._knn_graph_by_queries(name, k, flt)

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            entries = [(n, e) for n, e in self._shards.items() if n not in self._damaged]
        for name, entry in entries:
            with self._use(name):  # Edge's errors as StoreErrors
                entry.shard.flush()

    def close(self) -> None:
        with self._lock:
            entries = list(self._shards.items())
            self._shards.clear()
            self._closed = True
        for name, entry in entries:
            with entry.lock:
                try:
                    if name not in self._damaged:
                        entry.shard.flush()
                    entry.shard.close()
                except BaseException as exc:
                    if not _is_edge_error(exc) or name not in self._damaged:
                        raise


def _average_vector(store: Store, name: str, positive_ids: list[str], negative_ids: list[str]) -> np.ndarray:
    """Qdrant's average_vector recommend query: mean(pos) [+ mean(pos) - mean(neg)]."""
    wanted = list(dict.fromkeys(positive_ids + negative_ids))
    found = {r.id: r.vector for r in store.retrieve(name, wanted, with_vectors=True)}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise StoreError(f"{len(missing)} example point(s) not in collection {name!r}, e.g. {missing[0]}")
    mean_pos = np.mean([found[i] for i in positive_ids], axis=0)
    if not negative_ids:
        return mean_pos
    return mean_pos + mean_pos - np.mean([found[i] for i in negative_ids], axis=0)


def _group_values(payload: dict, key: str) -> list | None:
    """The group ids a point belongs to (str / int values of ``key``), as Qdrant does it:
    a point with a value of another type joins no group."""
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    values = value if isinstance(value, list) else [value]
    if not values or any(type(v) not in (str, int) for v in values):
        return None
    return list(dict.fromkeys(values))


def _assemble_groups(
    hits: Sequence[Hit], group_by: str, groups: int, group_size: int
) -> tuple[list[list[Hit]], bool]:
    """Qdrant's grouping over hits in score order; also says whether every group is full."""
    out: dict[Any, list[Hit]] = {}
    for hit in hits:
        for value in _group_values(hit.payload, group_by) or ():
            if value not in out:
                if len(out) >= groups:
                    continue
                out[value] = []
            if len(out[value]) < group_size:
                out[value].append(hit)
    result = list(out.values())
    complete = len(result) == groups and all(len(g) == group_size for g in result)
    return result, complete
