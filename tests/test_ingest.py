"""Ingest into real Qdrant (Edge on disk, and qdrant-client in memory): idempotent, resumable,
bad files skipped, query-by-example finds the query itself first."""
import shutil

import pytest

import index
from index.ingest import library_lock
from index.naming import collection_name, frames_collection_name


@pytest.fixture(params=["edge", "memory"])
def store(request, data_dir):
    s = index.open_store(data_dir, url=":memory:" if request.param == "memory" else None)
    yield s
    s.close()


def _n_files(folder):
    return len([p for p in folder.rglob("*.wav")])


def test_index_and_reindex_is_idempotent(store, demo_folder, data_dir):
    n = _n_files(demo_folder)
    rep = index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    assert rep.added == n and not rep.failed
    coll, fcoll = collection_name("demo", "dsp"), frames_collection_name("demo", "dsp")
    assert store.count(coll) == n
    n_frames = store.count(fcoll)
    assert n_frames >= n
    rep2 = index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    assert rep2.added == 0 and rep2.unchanged == n
    assert store.count(coll) == n and store.count(fcoll) == n_frames
    libs = index.list_libraries(store)
    assert [lib.name for lib in libs] == ["demo"] and libs[0].models == ["dsp"]
    assert index.library_counts(store, "demo") == {"dsp": n}
    labels = {r.payload["label"] for r in store.scroll(coll)}
    assert labels == {"kick", "hihat", "pad", "voice", None}


def test_resume_after_interruption(store, demo_folder, data_dir):
    n = _n_files(demo_folder)
    calls = []

    def die_after_first_batch(done, total, msg):
        calls.append(done)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run

    with pytest.raises(KeyboardInterrupt):
        index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir, batch_size=4,
                           progress=die_after_first_batch)
    coll, fcoll = collection_name("demo", "dsp"), frames_collection_name("demo", "dsp")
    partial = store.count(coll)
    assert 0 < partial < n
    rep = index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir, batch_size=4)
    assert rep.added == n - partial and rep.unchanged == partial
    assert store.count(coll) == n
    # frames equal a clean run's: no duplicates from the interrupted batch
    clean = index.open_store(data_dir / "clean")
    index.index_folder(clean, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    assert store.count(fcoll) == clean.count(fcoll)
    clean.close()


def test_bad_files_are_skipped_and_reported(store, demo_folder, data_dir, tmp_path):
    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    (folder / "kick" / "empty.wav").write_bytes(b"")
    (folder / "kick" / "notes.wav").write_text("not audio\n" * 50)
    (folder / "readme.txt").write_text("ignored: not an audio extension")
    n_good = _n_files(demo_folder)
    rep = index.index_folder(store, "lib", folder, ["dsp"], data_dir=data_dir)
    assert rep.added == n_good
    reasons = dict(rep.failed)
    assert set(reasons) == {"kick/empty.wav", "kick/notes.wav"}
    assert "empty file" in reasons["kick/empty.wav"]
    assert "not an audio file" in reasons["kick/notes.wav"]
    assert all("\n" not in r for r in reasons.values())
    assert store.count(collection_name("lib", "dsp")) == n_good


def test_query_by_example_finds_itself_first(store, demo_folder, data_dir):
    index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    query = sorted((demo_folder / "pad").glob("*.wav"))[1]
    hits = index.search_file(store, "demo", "dsp", query, k=5, data_dir=data_dir)
    assert hits[0].path == "pad/" + query.name and hits[0].score > 0.999
    assert hits[0].label == "pad"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    by_id = index.search_id(store, "demo", "dsp", hits[0].id, k=3)
    assert by_id[0].id == hits[0].id
    only_kick = index.search_file(store, "demo", "dsp", query, k=5, label="kick", data_dir=data_dir)
    assert only_kick and all(h.label == "kick" for h in only_kick)


def test_same_clip_same_id_everywhere(store, demo_folder, data_dir):
    index.index_folder(store, "a", demo_folder, ["dsp"], data_dir=data_dir)
    index.index_folder(store, "b", demo_folder, ["dsp"], data_dir=data_dir)
    ids_a = {r.payload["path"]: r.id for r in store.scroll(collection_name("a", "dsp"))}
    ids_b = {r.payload["path"]: r.id for r in store.scroll(collection_name("b", "dsp"))}
    assert ids_a == ids_b
    one = sorted(demo_folder.rglob("*.wav"))[0]
    assert ids_a[one.relative_to(demo_folder).as_posix()] == index.point_id(index.naming.content_hash(one))


def test_second_indexer_is_refused(store, demo_folder, data_dir):
    with library_lock(data_dir, "demo"):
        with pytest.raises(index.LibraryError, match="being indexed by another process"):
            index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)


def test_user_errors_are_one_line(store, demo_folder, data_dir, tmp_path):
    with pytest.raises(ValueError, match="bad library name"):
        index.index_folder(store, "bad name!", demo_folder, ["dsp"], data_dir=data_dir)
    with pytest.raises(index.EmbedderError, match="unknown model"):
        index.index_folder(store, "x", demo_folder, ["nope"], data_dir=data_dir)
    with pytest.raises(index.LibraryError, match="unknown library"):
        index.search_id(store, "missing", "dsp", "00000000-0000-0000-0000-000000000000")
    index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    with pytest.raises(index.LibraryError, match="no vectors for model"):
        index.search_file(store, "demo", "vgg-msd", next(demo_folder.rglob("*.wav")), data_dir=data_dir)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(next(demo_folder.rglob("*.wav")), other / "x.wav")
    with pytest.raises(index.LibraryError, match="rooted at"):
        index.index_folder(store, "demo", other, ["dsp"], data_dir=data_dir)


def test_delete_library(store, demo_folder, data_dir):
    index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    dropped = index.delete_library(store, "demo")
    from embedders.aspects import ASPECTS
    from index.naming import aspect_collection_name

    assert set(dropped) == {collection_name("demo", "dsp"), frames_collection_name("demo", "dsp"),
                            *(aspect_collection_name("demo", a) for a in ASPECTS)}  # its aspect vectors too
    assert index.list_libraries(store) == []
    assert not store.has_collection(collection_name("demo", "dsp"))


def test_clip_path_cannot_escape_library(store, demo_folder, data_dir):
    index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
    lib = index.get_library(store, "demo")
    assert lib.resolve("kick/kick_00.wav").exists()
    for bad in ["../etc/passwd", "/etc/passwd", "kick/../../x.wav"]:
        with pytest.raises(index.LibraryError, match="outside library"):
            lib.resolve(bad)
