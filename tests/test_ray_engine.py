"""The Ray indexing engine on a real local Ray cluster (ray.init(num_cpus=2)), against the local engine."""
from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import index
from index.libraries import LibraryError
from index.store import open_store

ROOT = Path(__file__).resolve().parent.parent
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-CPU Ray cluster in this machine, shared by the module's tests. Its workers carry the
    test-only poison (`tests/ray_poison.py`: files named poison_* kill their worker process)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)},
                          "worker_process_setup_hook": "tests.ray_poison.install"})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def library(tmp_path_factory, demo_folder) -> Path:
    """The demo library plus a byte copy of one clip, a file that is not audio and a 34 s recording
    (indexed as 1 s segments)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("ray_lib") / "audio"
    shutil.copytree(demo_folder, folder)
    shutil.copy(sorted(folder.glob("kick/*"))[0], folder / "pad" / "copy_of_kick.wav")
    (folder / "broken.wav").write_bytes(b"RIFF this is not audio")
    t = np.arange(34 * 16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (220 + 20 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    sf.write(folder / "voice" / "long_take.wav", wave.astype(np.float32), 16000)
    return folder


def _points(store, model="dsp"):
    coll = index.collection_name("lib", model)
    return {r.id: r for r in store.scroll(coll, with_vectors=True)}


def _side_collections(store) -> dict[str, dict]:
    """{collection: {id: vector}} of the library's collections other than clips and frames (aspects)."""
    out = {}
    for c in store.list_collections():
        kind = index.naming.parse_collection_name(c)
        if kind and kind[0] == "lib" and kind[2] not in ("clips", "frames"):
            out[c] = {r.id: r.vector for r in store.scroll(c, with_vectors=True)}
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, library):
    """The clean local-engine run: report, points and frame count."""
    d = tmp_path_factory.mktemp("local_data")
    with open_store(d) as st:
        rep = index.index_folder(st, "lib", library, ["dsp"], data_dir=d)
        assert sum(1 for r in _points(st).values() if "segment" in r.payload) == 34
        return rep, _points(st), st.count(index.frames_collection_name("lib", "dsp")), _side_collections(st)


def _ray_pids() -> dict[int, str]:
    """{pid: process title} of this machine's Ray actor processes running the embed worker."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "EmbedWorker" in cmd and "ray::" in cmd:
                out[int(d.name)] = cmd
    return out


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_points(ray_cluster, local_run, library, tmp_path):
    rep_local, pts_local, frames_local, side_local = local_run
    d = tmp_path / "data"
    stats: dict = {}
    with open_store(d) as st:
        rep = index.index_folder(st, "lib", library, ["dsp"], data_dir=d, engine="ray",
                                 engine_options={"workers": 2, "stats": stats}, batch_size=4)
        pts = _points(st)
        assert st.count(index.frames_collection_name("lib", "dsp")) == frames_local
        assert (rep.added, rep.unchanged) == (rep_local.added, 0) and rep.added == len(pts_local) == 18 + 34
        assert sorted(rep.failed) == sorted(rep_local.failed)  # the broken file and the copy, same words
        assert any(why.startswith("same audio as kick/") for _, why in rep.failed)
        assert set(pts) == set(pts_local)
        for pid, r in pts.items():
            np.testing.assert_allclose(r.vector, pts_local[pid].vector, atol=1e-5)
            assert r.payload == pts_local[pid].payload
        side = _side_collections(st)  # e.g. the aspect vectors indexing writes beside the model's points
        assert set(side) == set(side_local) and any("aspect" in c for c in side)
        for c, vecs in side_local.items():
            assert set(side[c]) == set(vecs), c
            for pid, v in vecs.items():
                np.testing.assert_allclose(side[c][pid], v, atol=1e-5)
        assert len(list((d / "thumbs" / "lib").glob("*.png"))) == 18  # clips' thumbnails reached the driver's folder
        assert stats["workers"] == 2 and stats["driver_write_s"] < stats["ray_wall_s"]
        # a second run is idempotent: nothing re-embedded, nothing duplicated
        again = index.index_folder(st, "lib", library, ["dsp"], data_dir=d, engine="ray",
                                   engine_options={"workers": 2})
        assert (again.added, again.unchanged) == (0, 18 + 34)
        assert len(_points(st)) == 18 + 34


def _scratch_dirs() -> set[Path]:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("audio-explorer-ray-*"))


@pytest.mark.slow
def test_killed_worker_and_crashed_driver_still_end_with_the_clean_count(ray_cluster, local_run, library, tmp_path):
    _, pts_local, frames_local, _ = local_run
    scratch_before = _scratch_dirs()
    d = tmp_path / "data"
    killed: list[int] = []

    def kill_one_worker(done, total, msg):
        if not killed and done < total:
            pids = _ray_pids()
            assert pids, "no Ray embed worker process found"
            pid = sorted(pids)[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    stats: dict = {}
    with open_store(d) as st:
        rep = index.index_folder(st, "lib", library, ["dsp"], data_dir=d, engine="ray", batch_size=2,
                                 engine_options={"workers": 2, "stats": stats}, progress=kill_one_worker)
        assert killed and not Path(f"/proc/{killed[0]}").exists()
        assert set(_points(st)) == set(pts_local) and rep.added == len(pts_local)
        assert st.count(index.frames_collection_name("lib", "dsp")) == frames_local
        assert not [f for f in rep.failed if "Ray worker died" in f[1]]

    # the driver dies after its first batch: the next run resumes and ends with the same points
    d2 = tmp_path / "data2"

    def crash(done, total, msg):
        raise KeyboardInterrupt

    with open_store(d2) as st:
        with pytest.raises(KeyboardInterrupt):
            index.index_folder(st, "lib", library, ["dsp"], data_dir=d2, engine="ray", batch_size=4,
                               engine_options={"workers": 2}, progress=crash)
        first = len(_points(st))
        assert 0 < first < len(pts_local)
        rep = index.index_folder(st, "lib", library, ["dsp"], data_dir=d2, engine="ray", batch_size=4,
                                 engine_options={"workers": 2})
        assert (rep.added, rep.unchanged) == (len(pts_local) - first, first)
        assert set(_points(st)) == set(pts_local)
        assert st.count(index.frames_collection_name("lib", "dsp")) == frames_local
    # killed actors and a crashed driver leave no scratch folders behind in the temp folder
    assert _scratch_dirs() <= scratch_before


def test_missing_ray_and_bad_engine_are_one_line_errors(monkeypatch, demo_folder, data_dir):
    with open_store(data_dir) as st:
        with pytest.raises(LibraryError, match="engine must be local or ray"):
            index.index_folder(st, "lib", demo_folder, ["dsp"], data_dir=data_dir, engine="spark")
        monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        with pytest.raises(LibraryError) as err:
            index.index_folder(st, "lib", demo_folder, ["dsp"], data_dir=data_dir, engine="ray")
        assert "pip install 'ray[data]" in str(err.value) and "\n" not in str(err.value)
        assert not st.list_collections()  # refused before anything was written


@pytest.fixture(scope="module")
def poisoned_library(tmp_path_factory, library) -> Path:
    """The library plus three files that kill their Ray worker on every try (`tests/ray_poison.py`):
    a segfault in decode and an os._exit in embed (short clips sharing a batch with good files), and
    a 70 s recording whose worker exits after 66 of its segments."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("ray_poison") / "audio"
    shutil.copytree(library, folder)
    t = np.arange(2 * 16000) / 16000
    sf.write(folder / "poison_segv.wav", (0.3 * np.sin(2 * np.pi * 310 * t)).astype(np.float32), 16000)
    sf.write(folder / "poison_exit.wav", (0.3 * np.sin(2 * np.pi * 570 * t)).astype(np.float32), 16000)
    t = np.arange(70 * 16000) / 16000
    sf.write(folder / "poison_long.wav", (0.3 * np.sin(2 * np.pi * (150 + 5 * t) * t)).astype(np.float32), 16000)
    return folder


@pytest.mark.slow
def test_poison_files_that_kill_their_worker_are_reported_and_skipped(ray_cluster, local_run, poisoned_library,
                                                                       tmp_path, monkeypatch):
    from index import ray_engine

    rep_local, pts_local, frames_local, side_local = local_run
    monkeypatch.setattr(ray_engine, "RETRIES", 1)  # each crash restarts a worker (seconds): keep them few
    poison = ["poison_exit.wav", "poison_long.wav", "poison_segv.wav"]
    d = tmp_path / "data"
    stats: dict = {}
    with open_store(d) as st:
        rep = index.index_folder(st, "lib", poisoned_library, ["dsp"], data_dir=d, engine="ray", batch_size=4,
                                 engine_options={"workers": 2, "stats": stats})
        crashed = sorted(p for p, why in rep.failed if why.startswith("worker crashed while processing it"))
        assert crashed == poison  # each named, with the reason, and nothing else said to crash
        assert sorted(f for f in rep.failed if f[0] not in poison) == sorted(rep_local.failed)
        assert stats["isolated"] >= 4  # the short poison files' batch was sent again one file per block
        # every other file is indexed: the clean run's points, frames and aspect vectors, no more
        assert set(_points(st)) == set(pts_local) and rep.added == len(pts_local)
        assert st.count(index.frames_collection_name("lib", "dsp")) == frames_local
        assert {c: set(v) for c, v in _side_collections(st).items()} == {c: set(v) for c, v in side_local.items()}
        for pid, r in _points(st).items():  # nothing half-written; the first path of copied bytes wins, as locally
            assert r.payload == pts_local[pid].payload
            np.testing.assert_allclose(r.vector, pts_local[pid].vector, atol=1e-5)
        assert "2 tries on its own" in dict(rep.failed)["poison_segv.wav"]
        # the same command again: no endless retry, the poison reported again, nothing added twice
        monkeypatch.setattr(ray_engine, "RETRIES", 0)
        again = index.index_folder(st, "lib", poisoned_library, ["dsp"], data_dir=d, engine="ray", batch_size=4,
                                   engine_options={"workers": 2})
        assert sorted(p for p, why in again.failed if why.startswith("worker crashed while processing it")) == poison
        assert (again.added, again.unchanged) == (0, len(pts_local))
        assert sorted(f for f in again.failed if f[0] not in poison) == sorted(rep_local.failed)
        assert set(_points(st)) == set(pts_local)
        assert st.count(index.frames_collection_name("lib", "dsp")) == frames_local


def test_a_crashed_long_file_is_removed_from_a_server_it_was_written_to(tmp_path):
    """What the driver does for a long file whose worker died part-way while writing to a server
    itself: the file's segments, frames and aspect vectors go, other files' points stay."""
    from types import SimpleNamespace

    import soundfile as sf

    import embedders
    from index import ray_engine
    from index.aspects import ASPECTS, aspect_collection_name
    from index.ingest import IngestOptions

    folder = tmp_path / "audio"
    folder.mkdir()
    t = np.arange(8 * 16000) / 16000
    sf.write(folder / "take.wav", (0.3 * np.sin(2 * np.pi * (200 + 10 * t) * t)).astype(np.float32), 16000)
    sf.write(folder / "other.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    d = tmp_path / "data"
    with open_store(d) as st:
        index.index_folder(st, "lib", folder, ["dsp"], data_dir=d, options=IngestOptions(segment="always"))
        before = _points(st)
        assert {r.payload["path"] for r in before.values()} == {"take.wav", "other.wav"}
        run = SimpleNamespace(store=st, library="lib", embs=[embedders.load("dsp", d)])
        ray_engine._remove_file_points(run, folder / "take.wav")
        left = _points(st)
        assert left and {r.payload["path"] for r in left.values()} == {"other.wav"}
        assert {r.payload["path"] for r in st.scroll(index.frames_collection_name("lib", "dsp"))} == {"other.wav"}
        for name in ASPECTS:
            assert {r.id for r in st.scroll(aspect_collection_name("lib", name))} == set(left)


@pytest.mark.slow
def test_workers_that_crash_on_every_file_stop_the_run_in_one_line(ray_cluster, tmp_path, monkeypatch):
    """Not a poison file but a broken worker environment: the run stops at once (no file-by-file retries)."""
    import soundfile as sf

    from index import ray_engine

    monkeypatch.setattr(ray_engine, "RETRIES", 0)
    folder = tmp_path / "audio"
    folder.mkdir()
    t = np.arange(16000) / 16000
    for i in range(3):
        sf.write(folder / f"poison_segv_{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t)).astype(np.float32), 16000)
    d = tmp_path / "data"
    stats: dict = {}
    with open_store(d) as st:
        with pytest.raises(LibraryError) as err:
            index.index_folder(st, "lib", folder, ["dsp"], data_dir=d, engine="ray", batch_size=1,
                               engine_options={"workers": 2, "stats": stats})
        assert "every batch killed its Ray worker process (3 batches" in str(err.value) and "\n" not in str(err.value)
        assert stats["isolated"] == 0 and st.count(index.collection_name("lib", "dsp")) == 0
