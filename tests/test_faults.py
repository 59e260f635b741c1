"""Faults, as a user meets them, against the real CLI in subprocesses and Qdrant Edge on disk:

- `kill -9` of an indexing run at three points, then the same command again: the result equals
  a clean run's (same point ids, same frame ids, no orphan frames) and every collection opens;
- a data folder that cannot be written (permissions, as a non-root user; a read-only filesystem
  and a full disk, on a tmpfs, where this machine lets the test mount one): one-line errors,
  nothing corrupted, and the same command resumes once the disk has room;
- a Qdrant server that cannot be reached: one line at start, non-zero exit;
- two indexing jobs on one library at once: the second is refused, no duplicates;
- one collection's shard damaged (truncated, zeroed or corrupt files; a corruption that makes Qdrant
  Edge abort the process that loads it): the app starts, the other libraries work, the damaged one
  is named in one line with the fix, and `index --rebuild` restores it with its tags;
- the disk fills up before tagging or clustering (a tmpfs), or a write fails part-way (an injected
  ENOSPC in the Edge backend's write path): one-line errors, nothing half-written.
"""
from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import index
from index.naming import META_COLLECTION, collection_name, frames_collection_name

ROOT = Path(__file__).resolve().parent.parent
LIB = "k"
N_FILES = 60
BATCH = 5


def cli_env(data: Path, **extra: str) -> dict:
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), **extra}
    env.pop("QDRANT_URL", None)
    return env


def cli(*args: str, data: Path, env: dict | None = None, obey_permissions: bool = False, timeout: int = 600):
    """`python app.py ARGS --data-dir DATA`; with `obey_permissions`, when we are root, without the
    capabilities that let root ignore file permissions (setpriv; still uid 0, so the checkout and
    its venv stay readable wherever they are, e.g. in a 0700 mktemp folder)."""
    cmd = [sys.executable, "app.py", *args, "--data-dir", str(data)]
    if obey_permissions and os.geteuid() == 0:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] + cmd
    return subprocess.run(cmd, cwd=ROOT, env=env or cli_env(data), capture_output=True, text=True, timeout=timeout)


def one_line_error(res, needle: str) -> None:
    err = res.stderr.strip()
    assert res.returncode == 1, (res.returncode, err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """60 short labelled clips in a world-readable folder (a non-root user reads it too)."""
    from app.demo import write_demo_library

    base = Path(tempfile.mkdtemp(prefix="ae-faults-"))
    os.chmod(base, 0o755)
    folder = write_demo_library(base / "audio", per_class=8, seed=3, unlabelled=4)
    assert len(list(folder.rglob("*.wav"))) == N_FILES
    for p in [base, *base.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def snapshot(data: Path, models=("dsp",)) -> dict:
    """Open every collection of the store and read the library back: ids, frames, orphans."""
    store = index.open_store(data)
    try:
        colls = store.list_collections()
        counts = {c: store.count(c) for c in colls}  # opens every shard
        out = {"collections": colls, "counts": counts}
        for m in models:
            c, f = collection_name(LIB, m), frames_collection_name(LIB, m)
            clips = list(store.scroll(c)) if store.has_collection(c) else []
            frames = list(store.scroll(f)) if store.has_collection(f) else []
            ids = [r.id for r in clips]
            paths = [r.payload["path"] for r in clips]
            assert len(set(ids)) == len(ids) and len(set(paths)) == len(paths), "duplicate clips"
            per_point: dict[str, int] = {}
            for r in frames:
                per_point[r.payload["point_id"]] = per_point.get(r.payload["point_id"], 0) + 1
            out[m] = {"ids": set(ids), "frame_ids": {r.id for r in frames}, "per_point": per_point,
                      "orphans": {pid for pid in per_point if pid not in set(ids)}}
        return out
    finally:
        store.close()


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory) -> dict:
    """A clean, uninterrupted run of the same command: the reference."""
    data = tmp_path_factory.mktemp("clean") / "data"
    res = cli("index", str(corpus), "--library", LIB, "--batch-size", str(BATCH), "--no-thumbnails", "--json",
              data=data)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["added"] == N_FILES and not rep["skipped"]
    snap = snapshot(data)
    assert len(snap["dsp"]["ids"]) == N_FILES and not snap["dsp"]["orphans"]
    return snap


class Run:
    """An indexing subprocess whose stderr lines are read as they come."""

    def __init__(self, corpus: Path, data: Path, env: dict | None = None):
        cmd = [sys.executable, "app.py", "index", str(corpus), "--library", LIB, "--batch-size", str(BATCH),
               "--no-thumbnails", "--json", "--data-dir", str(data)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env or cli_env(data), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_line(self, needle: str, timeout: float = 300) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                assert self.proc.poll() is None, f"ended before {needle!r}: {''.join(self.err)[-1500:]}"
                continue
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} within {timeout} s")

    def kill9(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        return self.proc.returncode


def _wait_for(pred, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _files_state(folder: Path) -> dict:
    """(mtime, size) of each file under folder; the indexer running beside may remove files (WAL
    segments, temporary folders) while this walks them."""
    out = {}
    for _attempt in range(20):
        try:
            paths = list(folder.rglob("*"))
            break
        except FileNotFoundError:  # a folder went away mid-walk: walk again
            time.sleep(0.01)
    else:
        return out
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[p] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.mark.slow
def test_kill9_at_three_points_then_resume(corpus, clean, tmp_path):
    """Killed (SIGKILL) three times at different points, run again: equal to a clean run."""
    data = tmp_path / "data"
    rng = random.Random(9)
    frames_cfg = data / "qdrant" / frames_collection_name(LIB, "dsp") / "edge_config.json"
    seen_partial = []

    # 1. a random moment (0-0.4 s; the run needs a second or more) after it created its collections
    r = Run(corpus, data)
    _wait_for(frames_cfg.is_file, what="collections")
    time.sleep(rng.uniform(0.0, 0.4))
    assert r.kill9() == -signal.SIGKILL, "the run ended before the kill"
    snap = snapshot(data)
    seen_partial.append(len(snap["dsp"]["ids"]))

    # 2. right after the progress line for 50 files: while the next batch is embedded and written
    r = Run(corpus, data)
    r.wait_line(f"50/{N_FILES}")
    assert r.kill9() == -signal.SIGKILL, "the run ended before the kill"
    snap = snapshot(data)
    seen_partial.append(len(snap["dsp"]["ids"]))
    assert 50 <= seen_partial[-1] < N_FILES

    # 3. the instant this run writes frames after its line for 50 files (its shards are open by
    #    then): between a batch's frame points and its clip points, which follow them
    r = Run(corpus, data)
    frames_dir = data / "qdrant" / frames_collection_name(LIB, "dsp")
    r.wait_line(f"50/{N_FILES}")
    before = _files_state(frames_dir)
    _wait_for(lambda: _files_state(frames_dir) != before or r.proc.poll() is not None, what="a frames write")
    assert r.kill9() == -signal.SIGKILL, "the run ended before the kill"
    snap = snapshot(data)
    seen_partial.append(len(snap["dsp"]["ids"]))
    orphans = len(snap["dsp"]["orphans"])  # frames written for clips whose point was not yet written

    for n, state in zip(seen_partial, ("early", "after 50", "frames written")):
        assert n <= N_FILES, state
    # a point present is complete: all of its frames are there (frames are written first)
    for pid in snap["dsp"]["ids"]:
        assert snap["dsp"]["per_point"].get(pid) == clean["dsp"]["per_point"][pid]

    # the same command again: resumes and finishes
    res = cli("index", str(corpus), "--library", LIB, "--batch-size", str(BATCH), "--no-thumbnails", "--json",
              data=data)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["added"] + rep["unchanged"] == N_FILES and not rep["skipped"]
    final = snapshot(data)
    assert final["collections"] == clean["collections"]
    assert final["counts"] == clean["counts"]
    assert final["dsp"]["ids"] == clean["dsp"]["ids"]
    assert final["dsp"]["frame_ids"] == clean["dsp"]["frame_ids"]  # no duplicated or stray frames
    assert not final["dsp"]["orphans"]
    assert not list((data / "qdrant").glob(".creating-*"))
    print(f"clips present after each kill: {seen_partial} of {N_FILES} ({orphans} orphan clip(s) after the last); "
          f"resume added {rep['added']}")


def _world_writable_tmp() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ae-ro-"))
    os.chmod(d, 0o777)
    return d


def _tree_mode(path: Path, dirs: int, files: int) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, dirs if p.is_dir() else files)


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root's capabilities")
@pytest.mark.slow  # long: the full suite (CI) runs it
def test_read_only_data_folder_permissions(corpus, tmp_path):
    """A data folder the user may not write (chmod; when the tests run as root, the CLI runs without
    root's permission-bypassing capabilities): one-line errors, and the library is intact afterwards."""
    base = _world_writable_tmp()
    try:
        data = base / "data"
        kick = corpus / "kick"
        env = cli_env(data, HOME=str(base), NUMBA_CACHE_DIR=str(base / "numba"),
                      AUDIO_EXPLORER_WEIGHTS=str(base / "weights"), MPLCONFIGDIR=str(base / "mpl"))
        (base / "weights" / "dsp").mkdir(parents=True)
        _tree_mode(base, 0o777, 0o666)
        res = cli("index", str(kick), "--library", LIB, "--no-thumbnails", data=data, env=env, obey_permissions=True)
        assert res.returncode == 0, res.stderr
        before = snapshot(data)
        assert len(before["dsp"]["ids"]) == 8
        _tree_mode(data, 0o555, 0o444)
        try:
            res = cli("index", str(corpus), "--library", LIB, data=data, env=env, obey_permissions=True)
            one_line_error(res, "not writable")
            res = cli("libraries", data=data, env=env, obey_permissions=True)
            one_line_error(res, "read-only or not writable")
        finally:
            _tree_mode(data, 0o777, 0o666)
        after = snapshot(data)
        assert after["counts"] == before["counts"] and after["dsp"]["ids"] == before["dsp"]["ids"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh 512 MB tmpfs mount, or skip where this machine does not let the tests mount one."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")

    def remount(opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True, capture_output=True)

    try:
        yield mnt, remount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e6


@pytest.mark.slow
def test_read_only_filesystem_and_full_disk(corpus, clean, tmpfs):
    """On a tmpfs: remounted read-only (EROFS, which binds root too), then filled up while indexing."""
    mnt, remount = tmpfs
    data = mnt / "data"
    env = cli_env(data, AUDIO_EXPLORER_MIN_FREE_MB="8")
    res = cli("index", str(corpus / "kick"), "--library", LIB, "--batch-size", str(BATCH), "--no-thumbnails",
              data=data, env=env)
    assert res.returncode == 0, res.stderr
    before = snapshot(data)
    remount("ro")
    try:
        one_line_error(cli("index", str(corpus), "--library", LIB, data=data, env=env), "not writable")
        one_line_error(cli("search", "--library", LIB, "--model", "dsp", "--file",
                           str(corpus / "kick" / "kick_00.wav"), data=data, env=env), "read-only or not writable")
    finally:
        remount("rw")
    assert snapshot(data)["counts"] == before["counts"]

    # the disk fills up while indexing: the run stops between batches with one line (Qdrant Edge
    # writes through memory maps: a write into a full disk would be SIGBUS, not an error)
    shutil.rmtree(data)
    clip_dir = data / "qdrant" / collection_name(LIB, "dsp")
    meta_cfg = data / "qdrant" / META_COLLECTION / "edge_config.json"
    r = Run(corpus, data, env)
    _wait_for(lambda: meta_cfg.is_file() or r.proc.poll() is not None, what="the collections")
    first = _files_state(clip_dir)
    _wait_for(lambda: _files_state(clip_dir) != first or r.proc.poll() is not None, what="a first write")
    filler = mnt / "filler"
    with open(filler, "wb") as fh:  # leave 5 MB: under the 8 MB that indexing keeps free
        os.posix_fallocate(fh.fileno(), 0, int((_free_mb(mnt) - 5) * 1e6))
    assert r.proc.wait(timeout=600) == 1, "".join(r.err)[-1500:]
    err = "".join(r.err)
    assert err.count("error: ") == 1 and "MB free on the disk of the data folder" in err, err[-1500:]
    filler.unlink()  # first: on tmpfs, even opening a shard allocates pages (SIGBUS on a full disk)
    partial = snapshot(data)
    assert 0 < len(partial["dsp"]["ids"]) < N_FILES
    for pid in partial["dsp"]["ids"]:  # what was written is whole
        assert partial["dsp"]["per_point"].get(pid) == clean["dsp"]["per_point"][pid]
    res = cli("index", str(corpus), "--library", LIB, "--batch-size", str(BATCH), "--no-thumbnails", "--json",
              data=data, env=env)
    assert res.returncode == 0, res.stderr
    final = snapshot(data)
    assert final["dsp"]["ids"] == clean["dsp"]["ids"] and final["dsp"]["frame_ids"] == clean["dsp"]["frame_ids"]
    assert not final["dsp"]["orphans"]
    print(f"disk full after {len(partial['dsp']['ids'])} of {N_FILES} clips; resumed to {len(final['dsp']['ids'])}")


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_unreachable_qdrant_server(tmp_path, corpus):
    """QDRANT_URL names a port where nothing listens: one line and a non-zero exit, at start."""
    data = tmp_path / "data"
    env = {**cli_env(data), "QDRANT_URL": "http://127.0.0.1:9"}
    for args in (["serve", "--no-demo", "--port", "9"], ["index", str(corpus / "kick"), "--library", LIB],
                 ["libraries"]):
        t = time.perf_counter()
        res = cli(*args, data=data, env=env, timeout=120)
        one_line_error(res, "cannot reach Qdrant at http://127.0.0.1:9")
        assert res.stdout == "" and time.perf_counter() - t < 100


@pytest.mark.slow
def test_two_indexers_on_one_library(corpus, clean, tmp_path):
    """A second `index` of the same library while one runs is refused at once; no duplicates."""
    data = tmp_path / "data"
    first = Run(corpus, data)
    _wait_for(lambda: (data / "qdrant" / collection_name(LIB, "dsp") / "edge_config.json").is_file()
              or first.proc.poll() is not None, what="the first run's collections")
    second = cli("index", str(corpus), "--library", LIB, "--no-thumbnails", data=data)
    assert first.proc.wait(timeout=600) == 0, "".join(first.err)[-1500:]
    one_line_error(second, "is being indexed by another process")
    snap = snapshot(data)
    assert snap["dsp"]["ids"] == clean["dsp"]["ids"] and snap["dsp"]["frame_ids"] == clean["dsp"]["frame_ids"]
    assert META_COLLECTION in snap["collections"]



# ---- a damaged shard ------------------------------------------------------------------------------

def _segment_files(coll_dir: Path, pattern: str) -> list[Path]:
    found = sorted(coll_dir.glob(f"segments/*/{pattern}"))
    assert found, f"no {pattern} in {coll_dir}"
    return found


def damage(coll_dir: Path, kind: str) -> None:
    """Damage one collection's shard the way a crash, a full disk or bad storage can."""
    if kind == "status":  # a truncated status file: Edge panics while loading (PanicException)
        os.truncate(_segment_files(coll_dir, "vector_storage-embedding/vectors/status.dat")[0], 0)
    elif kind == "id-mapping":  # a corrupt id mapping: Edge asks for ~100 GB and aborts the process (SIGABRT)
        with open(_segment_files(coll_dir, "mutable_id_tracker.mappings")[0], "r+b") as fh:
            fh.seek(17)  # the first entry's internal id (1 type byte, 16 uuid bytes, u32 id)
            fh.write(b"\xf0\xff\xff\xff")
    elif kind == "vectors":  # a truncated vector file: loads, fails at the first query
        for f in _segment_files(coll_dir, "vector_storage-embedding/vectors/chunk_0.mmap"):
            os.truncate(f, 100)
    elif kind == "wal":  # garbage over the write-ahead log's headers
        for f in sorted((coll_dir / "wal").glob("open-*")):
            with open(f, "r+b") as fh:
                fh.write(random.Random(1).randbytes(4096))
    elif kind == "config":
        (coll_dir / "edge_config.json").write_text("{ not json")
    else:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def two_libraries(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """A data folder with library 'k' (kick + hihat, dsp, three clips tagged 'keep') and library
    'other' (pad), built once: (data folder, k's root)."""
    base = tmp_path_factory.mktemp("two")
    data, root = base / "data", base / "k"
    shutil.copytree(corpus / "kick", root / "kick")
    shutil.copytree(corpus / "hihat", root / "hihat")
    store = index.open_store(data)
    try:
        index.index_folder(store, LIB, root, ["dsp"], data_dir=data)
        index.index_folder(store, "other", corpus / "pad", ["dsp"], data_dir=data)
        from index.curation import edit

        kicks = sorted(r.id for r in store.scroll(collection_name(LIB, "dsp"), flt={"label": "kick"}))[:3]
        edit(store, LIB, kicks, add=["keep"])
    finally:
        store.close()
    return data, root


@pytest.mark.parametrize("kind", ["status", pytest.param("id-mapping", marks=pytest.mark.slow),
                                  pytest.param("vectors", marks=pytest.mark.slow), "wal",
                                  pytest.param("config", marks=pytest.mark.slow)])
def test_damaged_shard_is_reported_and_rebuilt(two_libraries, tmp_path, kind):
    """In-process: a damaged clip collection never raises out of the listing, is one line naming
    library, model and the rebuild command, leaves the other library working, and `rebuild`
    restores it (search and the tags come back)."""
    src, root = two_libraries
    data = tmp_path / "data"
    shutil.copytree(src, data)
    damage(data / "qdrant" / collection_name(LIB, "dsp"), kind)
    store = index.open_store(data)
    try:
        assert [lib.name for lib in index.list_libraries(store)] == [LIB, "other"]
        counts, dmg = index.library_status(store, LIB)
        assert counts == {"dsp": None} and list(dmg) == ["dsp"]
        line = dmg["dsp"]
        assert line.startswith(f"library '{LIB}' model 'dsp': its Qdrant data is damaged (")
        assert line.endswith(f"rebuild it from its audio with `python app.py index {root} --library {LIB} "
                             f"--models dsp --rebuild`") and "\n" not in line, line
        assert index.library_counts(store, "other") == {"dsp": 8}
        query = root / "kick" / "kick_00.wav"
        assert index.search_file(store, "other", "dsp", query, k=3, data_dir=data)[0].score > 0
        with pytest.raises(index.DamagedCollectionError) as exc:
            index.search_file(store, LIB, "dsp", query, k=3, data_dir=data)
        assert str(exc.value) == line
        with pytest.raises(index.DamagedCollectionError):  # indexing without --rebuild: the same line
            index.index_folder(store, LIB, root, ["dsp"], data_dir=data)
        if kind == "status":  # the API's list: the line for the admin; for visitors without the server folder
            from app.access import Access
            from app.services import Services
            from app.views import api

            rows = {r["name"]: r for r in api.list_libraries(Services(data, store=store, access=Access()))}
            assert rows[LIB]["counts"] == {"dsp": None} and rows[LIB]["damaged"] == [line]
            rows = {r["name"]: r for r in api.list_libraries(Services(data, store=store, access=Access(public=True)))}
            assert "root" not in rows[LIB] and str(root) not in rows[LIB]["damaged"][0]
            assert "`python app.py index FOLDER --library" in rows[LIB]["damaged"][0]
            assert rows["other"]["damaged"] == []

        rep = index.index_folder(store, LIB, root, ["dsp"], data_dir=data, rebuild=True)
        assert rep.added == 16 and not rep.failed and sorted(rep.rebuilt) == sorted(
            [collection_name(LIB, "dsp"), frames_collection_name(LIB, "dsp")])
        assert index.library_status(store, LIB) == ({"dsp": 16}, {})
        hits = index.search_file(store, LIB, "dsp", query, k=3, data_dir=data)
        assert hits[0].path == "kick/kick_00.wav" and hits[0].score > 0.99
        kept = list(store.scroll(collection_name(LIB, "dsp"), flt={"tags": "keep"}))
        assert len(kept) == 3 and all(r.payload["label"] == "kick" for r in kept)  # the edits merged back
    finally:
        store.close()


@pytest.mark.slow
def test_app_starts_with_a_damaged_library(two_libraries, tmp_path):
    """`libraries` and `serve` with one library's shard damaged: exit 0 / serving, one line naming
    it with the fix; `index --rebuild` restores it."""
    import urllib.request

    src, root = two_libraries
    data = tmp_path / "data"
    shutil.copytree(src, data)
    damage(data / "qdrant" / collection_name(LIB, "dsp"), "id-mapping")
    fix = f"`python app.py index {root} --library {LIB} --models dsp --rebuild`"

    res = cli("libraries", data=data)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"damaged: library '{LIB}' model 'dsp': its Qdrant data is "
                                                   f"damaged (") and lines[0].endswith(fix), res.stderr
    assert "dsp (damaged)" in res.stdout and "dsp (8)" in res.stdout
    rows = {r["name"]: r for r in json.loads(cli("libraries", "--json", data=data).stdout)}
    assert rows[LIB]["counts"] == {"dsp": None} and rows[LIB]["damaged"][0].endswith(fix)
    assert rows["other"]["counts"] == {"dsp": 8} and rows["other"]["damaged"] == []
    res = cli("search", "--library", "other", "--model", "dsp", "--file", str(root / "kick" / "kick_00.wav"),
              "--json", data=data)
    assert res.returncode == 0 and len(json.loads(res.stdout)) == 8, res.stderr
    one_line_error(cli("search", "--library", LIB, "--model", "dsp", "--file", str(root / "kick" / "kick_00.wav"),
                       data=data), fix)

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port), "--data-dir",
                             str(data)], cwd=ROOT, env=cli_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.5)
        import httpx  # plain HTTP: a gradio_client session's open event stream would hold the shutdown

        call = f"http://127.0.0.1:{port}/gradio_api/call/list_libraries"
        event = httpx.post(call, json={"data": []}, timeout=60).json()["event_id"]
        with httpx.stream("GET", f"{call}/{event}", timeout=120) as stream:
            body = "".join(stream.iter_text())
        data_lines = [ln[len("data: "):] for ln in body.splitlines() if ln.startswith("data: ")]
        libs = {r["name"]: r for r in json.loads(data_lines[-1])[0]}
        assert libs[LIB]["counts"] == {"dsp": None} and libs[LIB]["damaged"][0].endswith(fix)
        assert libs["other"]["counts"] == {"dsp": 8}
    finally:
        proc.terminate()
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    assert "Traceback" not in err and "panicked" not in err, err[-2000:]

    res = cli("index", str(root), "--library", LIB, "--rebuild", "--json", data=data)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["added"] == 16
    res = cli("libraries", "--json", data=data)
    assert res.returncode == 0 and "damaged" not in res.stderr
    assert {r["name"]: r["counts"] for r in json.loads(res.stdout)} == {LIB: {"dsp": 16}, "other": {"dsp": 8}}


# ---- a full disk while tagging or clustering ----------------------------------------------------------

def _edit_state(data: Path) -> dict:
    """Every clip's tags, label and cluster, and the edits records, of library 'k'."""
    from index.naming import edits_collection_name

    store = index.open_store(data)
    try:
        clips = {r.id: (tuple(r.payload.get("tags") or []), r.payload.get("label"), r.payload.get("cluster"))
                 for r in store.scroll(collection_name(LIB, "dsp"))}
        ecoll = edits_collection_name(LIB)
        edits = {r.id: r.payload for r in store.scroll(ecoll)} if store.has_collection(ecoll) else {}
        return {"clips": clips, "edits": edits}
    finally:
        store.close()


@pytest.mark.slow
def test_full_disk_while_tagging_and_clustering(corpus, tmpfs):
    """On a tmpfs filled to under $AUDIO_EXPLORER_MIN_FREE_MB: `tag` and `clusters` stop with one
    line before writing anything; with room again, both work."""
    mnt, _remount = tmpfs
    data = mnt / "data"
    env = cli_env(data, AUDIO_EXPLORER_MIN_FREE_MB="8")
    res = cli("index", str(corpus / "kick"), "--library", LIB, "--no-thumbnails", data=data, env=env)
    assert res.returncode == 0, res.stderr
    ids = sorted(_edit_state(data)["clips"])
    res = cli("tag", "--library", LIB, "--ids", ",".join(ids[:2]), "--add", "first", data=data, env=env)
    assert res.returncode == 0, res.stderr
    before = _edit_state(data)
    filler = mnt / "filler"
    with open(filler, "wb") as fh:  # leave 5 MB: under the 8 MB that writes keep free
        os.posix_fallocate(fh.fileno(), 0, int((_free_mb(mnt) - 5) * 1e6))
    try:
        one_line_error(cli("tag", "--library", LIB, "--ids", ",".join(ids), "--add", "second", data=data, env=env),
                       "MB free on the disk of the data folder")
        one_line_error(cli("tag", "--library", LIB, "--ids", ids[0], "--label", "boom", data=data, env=env),
                       "nothing was written")
        one_line_error(cli("clusters", "--library", LIB, "--model", "dsp", "--min-size", "2", data=data, env=env),
                       "MB free on the disk of the data folder")
    finally:
        filler.unlink()
    assert _edit_state(data) == before  # nothing half-written
    res = cli("tag", "--library", LIB, "--ids", ",".join(ids), "--add", "second", data=data, env=env)
    assert res.returncode == 0, res.stderr
    assert all("second" in tags for tags, _label, _c in _edit_state(data)["clips"].values())


class _FailingShard:
    """An EdgeShard whose n-th `update` raises what Edge raises on a full disk (space is then freed)."""

    def __init__(self, shard, fail_at: int):
        self._shard, self._fail_at, self.calls = shard, fail_at, 0

    def update(self, op):
        self.calls += 1
        if self.calls == self._fail_at:
            raise Exception("Service runtime error: IO Error: No space left on device (os error 28)")
        return self._shard.update(op)

    def __getattr__(self, name):
        return getattr(self._shard, name)


def test_write_failing_part_way_is_undone(corpus, tmp_path, monkeypatch):
    """An ENOSPC from Edge in the middle of an edit or a clustering (injected into the Edge backend's
    write path, after the free-space check passed): one-line StoreError, and what was written is undone."""
    from index.curation import edit, write_clusters
    from index.naming import edits_collection_name

    data = tmp_path / "data"
    store = index.open_store(data)
    try:
        index.index_folder(store, LIB, corpus / "kick", ["dsp"], data_dir=data)
        coll = collection_name(LIB, "dsp")
        ids = sorted(r.id for r in store.scroll(coll))
        edit(store, LIB, ids[:2], add=["old"])
        write_clusters(store, LIB, "dsp", ids, [0] * 4 + [1] * 4, {0: "a", 1: "b"})

        def state():  # a null value and a missing key read the same (Edge's set_payload drops nulls)
            return ({r.id: {k: v for k, v in r.payload.items() if v is not None} for r in store.scroll(coll)},
                    {r.id: r.payload for r in store.scroll(edits_collection_name(LIB))})

        before = state()
        entry = store._shards[coll]
        entry.shard = _FailingShard(entry.shard, fail_at=1)  # the edits record is written, the clips fail
        with pytest.raises(index.StoreError) as exc:
            edit(store, LIB, ids, add=["new"], label="boom")
        msg = str(exc.value)
        assert "is full" in msg and "nothing was changed: the part already written was undone" in msg
        assert "\n" not in msg
        entry.shard = entry.shard._shard
        assert state() == before

        entry.shard = _FailingShard(entry.shard, fail_at=2)  # the first cluster is written, then full
        with pytest.raises(index.StoreError, match="the clusters were not saved; the previous ones are kept"):
            write_clusters(store, LIB, "dsp", ids, [5, 6] * 4, {5: "x", 6: "y"})
        entry.shard = entry.shard._shard
        assert state() == before
    finally:
        store.close()
