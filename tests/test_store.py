"""The vector store: both backends (Qdrant Edge on disk, qdrant-client in memory) answer the
same calls with the same results, and those results equal a numpy brute force."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from index.store import (
    ClientStore,
    EdgeStore,
    Hit,
    Store,
    StoreError,
    open_store,
)

ROOT = Path(__file__).resolve().parents[1]
N, DIM = 300, 32
COLL = "lib__test__dsp"
INDEXES = {"label": "keyword", "clip_id": "keyword", "duration_s": "float", "start_s": "float"}
LABELS = ["kick", "snare", "hat", "tom"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _make_data(n: int = N, dim: int = DIM, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.standard_normal((n, dim)))
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"clip-{seed}-{i}")) for i in range(n)]
    payloads = []
    for i in range(n):
        p = {
            "clip_id": f"clip{i // 4:03d}",
            "duration_s": float(rng.uniform(0.1, 3.0)),
            "start_s": np.float32(i % 4),  # numpy scalar: stored as a plain float
            "path": f"sub/{i}.wav",
            "bucket": np.int64(i % 3),  # an int field without an index
        }
        if i % 15 == 7:
            p["label"] = None  # explicit null
        elif i % 15 != 11:  # i % 15 == 11: no label key at all
            p["label"] = LABELS[i % 4]
        payloads.append(p)
    return ids, vectors, payloads


IDS, VECS, PAYLOADS = _make_data()


def _fill(store: Store, name: str = COLL) -> None:
    store.create_collection(name, DIM, INDEXES)
    store.upsert(name, IDS, VECS, PAYLOADS)


def _matches(payload: dict, spec: dict) -> bool:
    """Python reference of the filter spec."""
    for key, want in spec.items():
        if key == "__not__":
            if _matches(payload, want):
                return False
            continue
        have = payload.get(key)
        if want is None:
            if have not in (None, []):
                return False
        elif isinstance(want, dict):
            if have is None:
                return False
            ops = {
                "gt": have > want.get("gt", -np.inf),
                "gte": have >= want.get("gte", -np.inf),
                "lt": have < want.get("lt", np.inf),
                "lte": have <= want.get("lte", np.inf),
            }
            if not all(ops[op] for op in want):
                return False
        elif isinstance(want, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def _brute(query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    scores = VECS @ _unit(query)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    order = [i for i in order if np.isfinite(scores[i])]
    return [IDS[i] for i in order], scores[order]


def _assert_hits(hits: list[Hit], ids: list[str], scores) -> None:
    assert [h.id for h in hits] == ids
    np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-4)


def _same_payload(a: dict, b: dict) -> bool:
    """Equal payloads; floats within 1e-12 (Qdrant Edge may change a float's last bit)."""
    if a.keys() != b.keys():
        return False
    return all(abs(a[k] - b[k]) <= 1e-12 * abs(b[k]) if isinstance(b[k], float) else a[k] == b[k] for k in a)


def _assert_same(a: list[Hit], b: list[Hit]) -> None:
    _assert_hits(b, [h.id for h in a], [h.score for h in a])
    # Edge may change a stored payload float in its last bit: compare those approximately
    assert all(_same_payload(x.payload, y.payload) for x, y in zip(a, b))


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Both backends filled with the same 300 points (read-only tests share them)."""
    edge = EdgeStore(tmp_path_factory.mktemp("edge") / "qdrant")
    memory = ClientStore.in_memory()
    for s in (edge, memory):
        _fill(s)
    yield edge, memory
    edge.close()
    memory.close()


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    """A fresh, empty store of each backend (for tests that write)."""
    s = EdgeStore(tmp_path / "qdrant") if request.param == "edge" else ClientStore.in_memory()
    yield s
    s.close()


@pytest.fixture(params=["edge", "memory"])
def either(request, pair):
    return pair[0] if request.param == "edge" else pair[1]


# -- congruence: the same query on both backends, checked against numpy -----------------------


def test_query_is_exact_and_congruent(pair):
    edge, memory = pair
    rng = np.random.default_rng(1)
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        a, b = edge.query(COLL, q, 10), memory.query(COLL, q, 10)
        _assert_hits(a, *_brute(q, 10))
        _assert_same(a, b)
    assert edge.query(COLL, VECS[0], 3, with_vectors=True)[0].vector.dtype == np.float32


def test_query_by_id_returns_itself_first(pair):
    edge, memory = pair
    a, b = edge.query_by_id(COLL, IDS[5], 8), memory.query_by_id(COLL, IDS[5], 8)
    assert a[0].id == IDS[5] and a[0].score == pytest.approx(1.0, abs=1e-5)
    _assert_hits(a, *_brute(VECS[5], 8))
    _assert_same(a, b)
    with pytest.raises(StoreError):
        edge.query_by_id(COLL, str(uuid.uuid4()), 3)


FILTERS = [
    {"label": "kick"},
    {"label": ["kick", "snare"]},
    {"duration_s": {"gte": 0.5, "lte": 2.0}},
    {"duration_s": {"gt": 1.0}},
    {"label": None},
    {"label": "hat", "duration_s": {"lt": 1.5}},
    {"__not__": {"label": "kick"}},
    {"__not__": {"label": ["kick", "snare"], "duration_s": {"gte": 1.0}}},
    {"clip_id": "clip010"},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_filtered_query_and_count(pair, spec):
    edge, memory = pair
    mask = np.array([_matches(p, spec) for p in PAYLOADS])
    assert 0 < mask.sum() < N
    q = np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
    a, b = edge.query(COLL, q, 12, flt=spec), memory.query(COLL, q, 12, flt=spec)
    _assert_hits(a, *_brute(q, 12, mask))
    _assert_same(a, b)
    assert edge.count(COLL, spec) == memory.count(COLL, spec) == int(mask.sum())


def test_id_set_filter_keeps_only_members_on_both_backends(pair):
    edge, memory = pair
    members = IDS[40:60] + IDS[200:205]
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    mask = np.isin(np.array(IDS), members)
    for spec, m in (({"__ids__": members}, mask),
                    ({"__ids__": members, "label": "kick"}, mask & np.array([p.get("label") == "kick" for p in PAYLOADS]))):
        assert 0 < m.sum()
        a, b = edge.query(COLL, q, 50, flt=spec), memory.query(COLL, q, 50, flt=spec)
        assert {h.id for h in a} == set(np.array(IDS)[m])
        _assert_hits(a, *_brute(q, 50, m))
        _assert_same(a, b)


def test_query_batch(pair):
    edge, memory = pair
    qs = np.random.default_rng(3).standard_normal((7, DIM)).astype(np.float32)
    spec = {"label": ["hat", "tom"]}
    mask = np.array([_matches(p, spec) for p in PAYLOADS])
    rows_a, rows_b = edge.query_batch(COLL, qs, 5, spec), memory.query_batch(COLL, qs, 5, spec)
    assert len(rows_a) == len(rows_b) == 7
    for q, a, b in zip(qs, rows_a, rows_b):
        _assert_hits(a, *_brute(q, 5, mask))
        _assert_same(a, b)


def test_count_and_facet(pair):
    edge, memory = pair
    assert edge.count(COLL) == memory.count(COLL) == N
    want = Counter(p["label"] for p in PAYLOADS if p.get("label"))
    fa, fb = edge.facet(COLL, "label"), memory.facet(COLL, "label")
    assert fa == fb == dict(want)
    assert list(fa.values()) == sorted(fa.values(), reverse=True)
    spec = {"duration_s": {"lt": 1.0}}
    want = Counter(p["label"] for p in PAYLOADS if p.get("label") and _matches(p, spec))
    assert edge.facet(COLL, "label", flt=spec) == memory.facet(COLL, "label", flt=spec) == dict(want)
    assert len(edge.facet(COLL, "label", limit=2)) == 2
    # fields without a payload index: Edge makes one on first use, of the values' type
    assert edge.facet(COLL, "path", limit=3) == memory.facet(COLL, "path", limit=3)
    want = Counter(int(i % 3) for i in range(N))
    assert edge.facet(COLL, "bucket") == memory.facet(COLL, "bucket") == dict(want)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_recommend_average(pair, with_negatives):
    edge, memory = pair
    pos = [IDS[i] for i in range(0, 40, 4)]  # the kicks among the first 40
    neg = [IDS[1], IDS[2]] if with_negatives else None
    spec = {"__not__": {"label": None}}
    a = edge.recommend_average(COLL, pos, 10, flt=spec, negative_ids=neg)
    b = memory.recommend_average(COLL, pos, 10, flt=spec, negative_ids=neg)
    mean = VECS[0:40:4].mean(axis=0)
    target = mean + mean - VECS[[1, 2]].mean(axis=0) if with_negatives else mean
    excluded = set(pos) | set(neg or [])
    mask = np.array([_matches(p, spec) and i not in excluded for p, i in zip(PAYLOADS, IDS)])
    _assert_hits(a, *_brute(target, 10, mask))
    _assert_same(a, b)
    with pytest.raises(StoreError):
        edge.recommend_average(COLL, [str(uuid.uuid4())], 3)
    with pytest.raises(StoreError):
        memory.recommend_average(COLL, [str(uuid.uuid4())], 3)


@pytest.mark.parametrize("groups,group_size", [(6, 1), (4, 3)])
def test_query_groups(pair, groups, group_size):
    edge, memory = pair
    q = np.random.default_rng(4).standard_normal(DIM).astype(np.float32)
    a = edge.query_groups(COLL, q, "clip_id", groups, group_size)
    b = memory.query_groups(COLL, q, "clip_id", groups, group_size)
    # reference: walk all points in score order, fill groups as Qdrant does
    ranked, scores = _brute(q, N)
    want: dict[str, list[str]] = {}
    for pid in ranked:
        g = PAYLOADS[IDS.index(pid)]["clip_id"]
        if g not in want and len(want) < groups:
            want[g] = []
        if g in want and len(want[g]) < group_size:
            want[g].append(pid)
    assert [[h.id for h in g] for g in a] == list(want.values())
    assert len(a) == len(b) == groups
    for ga, gb in zip(a, b):
        _assert_same(ga, gb)
        assert len({h.payload["clip_id"] for h in ga}) == 1


def test_query_groups_filtered_and_small(pair):
    edge, memory = pair
    q = VECS[10]
    spec = {"label": "snare"}
    a = edge.query_groups(COLL, q, "label", 10, 2, flt=spec)  # only one group exists
    b = memory.query_groups(COLL, q, "label", 10, 2, flt=spec)
    assert [[h.id for h in g] for g in a] == [[h.id for h in g] for g in b]
    assert len(a) == 1 and len(a[0]) == 2 and a[0][0].payload["label"] == "snare"


@pytest.mark.parametrize("spec", [None, {"label": "kick"}])
def test_knn_graph(pair, spec):
    edge, memory = pair
    k = 5
    mask = np.array([True] * N if spec is None else [_matches(p, spec) for p in PAYLOADS])
    sel = np.flatnonzero(mask)
    order = sorted(sel, key=lambda i: IDS[i])
    sims = VECS[order] @ VECS[order].T
    np.fill_diagonal(sims, -np.inf)
    want_nb = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    want_sc = np.take_along_axis(sims, want_nb, axis=1)
    for s in (edge, memory):
        ids, nb, sc = s.knn_graph(COLL, k, flt=spec)
        assert ids == [IDS[i] for i in order]
        assert nb.shape == sc.shape == (len(order), k)
        np.testing.assert_array_equal(nb, want_nb)
        np.testing.assert_allclose(sc, want_sc, atol=1e-4)


def test_retrieve_existing_ids_and_scroll(pair):
    edge, memory = pair
    ghost = str(uuid.uuid4())
    ask = [IDS[9], ghost, IDS[3]]
    for s in (edge, memory):
        recs = s.retrieve(COLL, ask, with_vectors=True)
        assert [r.id for r in recs] == [IDS[9], IDS[3]]
        np.testing.assert_allclose(recs[0].vector, VECS[9], atol=1e-6)
        assert _same_payload(recs[1].payload, {**PAYLOADS[3], "start_s": 3.0})
        assert s.retrieve(COLL, [IDS[0]])[0].vector is None
        assert s.existing_ids(COLL, ask) == {IDS[9], IDS[3]}
    scrolled = [list(s.scroll(COLL, batch=64, with_vectors=True)) for s in (edge, memory)]
    assert [r.id for r in scrolled[0]] == [r.id for r in scrolled[1]] == sorted(IDS)
    by_id = dict(zip(IDS, VECS))
    for r in scrolled[0]:
        np.testing.assert_allclose(r.vector, by_id[r.id], atol=1e-6)
    kicks = [r.id for r in edge.scroll(COLL, {"label": "kick"}, batch=7)]
    assert kicks == [r.id for r in memory.scroll(COLL, {"label": "kick"})]
    assert len(kicks) == sum(_matches(p, {"label": "kick"}) for p in PAYLOADS)


# -- writes, collections, errors (each backend on its own) ------------------------------------


def test_collections_lifecycle(store):
    assert store.list_collections() == []
    store.create_collection("b_col", 8, {"label": "keyword"})
    store.create_collection("a.col-1", 16)
    store.create_collection("b_col", 8, {"label": "keyword", "start_s": "float"})  # idempotent
    assert store.list_collections() == ["a.col-1", "b_col"]
    assert store.has_collection("b_col") and not store.has_collection("nope")
    assert store.collection_dim("a.col-1") == 16
    with pytest.raises(StoreError, match="dim"):
        store.create_collection("b_col", 9)
    store.delete_collection("b_col")
    store.delete_collection("b_col")  # absent: no error
    assert store.list_collections() == ["a.col-1"]
    for call in (
        lambda: store.count("nope"),
        lambda: store.query("nope", np.ones(8), 1),
        lambda: store.upsert("nope", [], np.zeros((0, 8)), []),
    ):
        with pytest.raises(StoreError):
            call()


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "with space", ".hidden", "é"])
def test_bad_collection_name(store, bad):
    with pytest.raises(StoreError, match="invalid collection name"):
        store.create_collection(bad, 4)
    with pytest.raises(StoreError):
        store.has_collection(bad)


def test_upsert_idempotent_and_deletes(store):
    _fill(store)
    store.upsert(COLL, IDS[:50], VECS[:50], PAYLOADS[:50])
    assert store.count(COLL) == store.points_count(COLL) == N  # the info's count (what caches check) too
    moved = dict(PAYLOADS[0], label="snare")
    store.upsert(COLL, IDS[:1], VECS[1:2], [moved])  # replaces vector and payload
    rec = store.retrieve(COLL, IDS[:1], with_vectors=True)[0]
    assert rec.payload["label"] == "snare"
    np.testing.assert_allclose(rec.vector, VECS[1], atol=1e-6)
    store.delete(COLL, IDS[:10] + [str(uuid.uuid4())])
    assert store.count(COLL) == store.points_count(COLL) == N - 10
    assert store.existing_ids(COLL, IDS[:12]) == set(IDS[10:12])
    n_kick = store.count(COLL, {"label": "kick"})
    store.delete_by_filter(COLL, {"label": "kick"})
    assert store.count(COLL, {"label": "kick"}) == 0
    assert store.count(COLL) == store.points_count(COLL) == N - 10 - n_kick
    with pytest.raises(ValueError):
        store.delete_by_filter(COLL, {})
    with pytest.raises(StoreError, match="dim"):
        store.upsert(COLL, IDS[:1], np.ones((1, DIM + 1), np.float32), [{}])
    with pytest.raises(ValueError):
        store.upsert(COLL, IDS[:2], VECS[:1], [{}, {}])


def test_knn_graph_small_k_cap(store):
    store.create_collection("tiny", 4)
    store.upsert("tiny", IDS[:3], _unit(np.eye(4, dtype=np.float32)[:3] + 0.1), [{}] * 3)
    ids, nb, sc = store.knn_graph("tiny", 10)
    assert len(ids) == 3 and nb.shape == (3, 2) and (nb >= 0).all()
    assert all(i not in row for i, row in enumerate(nb))


def test_edge_persists_across_reopen(tmp_path):
    q = VECS[42] + 0.1
    with EdgeStore(tmp_path / "qdrant") as s:
        _fill(s)
        before = s.query(COLL, q, 10, flt={"label": "tom"})
    s2 = open_store(tmp_path)  # the factory's default: Edge under data_dir/qdrant
    assert isinstance(s2, EdgeStore) and s2.backend == "edge"
    assert s2.list_collections() == [COLL] and s2.collection_dim(COLL) == DIM
    assert s2.count(COLL) == N
    _assert_same(before, s2.query(COLL, q, 10, flt={"label": "tom"}))
    assert s2.facet(COLL, "label") == dict(Counter(p["label"] for p in PAYLOADS if p.get("label")))
    s2.close()


def test_edge_upsert_survives_a_killed_process(tmp_path):
    """A process killed after upsert returned (no close) loses nothing: the WAL replays."""
    code = textwrap.dedent(f"""
        import os, sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from index.store import EdgeStore
        s = EdgeStore({str(tmp_path / 'qdrant')!r})
        s.create_collection("c", 4, {{"label": "keyword"}})
        ids = ["00000000-0000-0000-0000-%012d" % i for i in range(700)]
        s.upsert("c", ids, np.ones((700, 4), np.float32), [{{"label": "x"}}] * 700)
        os._exit(0)  # no flush, no close
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with EdgeStore(tmp_path / "qdrant") as s:
        assert s.count("c") == 700 and s.facet("c", "label") == {"x": 700}


def test_edge_collection_open_elsewhere(tmp_path):
    with EdgeStore(tmp_path / "qdrant") as a:
        a.create_collection("c", 4)
        b = EdgeStore(tmp_path / "qdrant")
        with pytest.raises(StoreError, match="another process"):
            b.count("c")
        with pytest.raises(StoreError, match="another process"):
            b.delete_collection("c")
        b.close()
        assert a.count("c") == 0


def test_edge_threads(tmp_path):
    with EdgeStore(tmp_path / "qdrant") as s:
        _fill(s)
        errors: list[BaseException] = []

        def work(seed: int) -> None:
            try:
                rng = np.random.default_rng(seed)
                for _ in range(8):
                    s.query(COLL, rng.standard_normal(DIM), 5, flt={"label": "kick"})
                    i = int(rng.integers(N))
                    s.upsert(COLL, [IDS[i]], VECS[i : i + 1], [PAYLOADS[i]])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and s.count(COLL) == N


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_open_store_factory(tmp_path, monkeypatch):
    monkeypatch.delenv("QDRANT_URL", raising=False)
    mem = open_store(tmp_path, url=":memory:")
    assert isinstance(mem, ClientStore) and mem.backend == "memory"
    mem.close()
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("QDRANT_API_KEY", "secret")
    remote = open_store(tmp_path)
    assert isinstance(remote, ClientStore) and remote.backend == "server"
    remote.close()
    assert not (tmp_path / "qdrant").exists()


def test_unreachable_server_is_one_line_store_error(tmp_path):
    s = open_store(tmp_path, url="http://127.0.0.1:9")  # nothing is sent yet
    for call in (s.list_collections, lambda: s.count("c"), lambda: s.create_collection("c", 4)):
        with pytest.raises(StoreError) as info:
            call()
        message = str(info.value)
        assert message.startswith("cannot reach Qdrant at http://127.0.0.1:9: ")
        assert "\n" not in message
    s.close()
