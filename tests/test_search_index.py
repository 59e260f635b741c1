"""Large collections: Qdrant Edge's HNSW graph is built when a collection outgrows exact
search, and queries through it still find the true neighbours."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

import index
import index.store as store_mod
from index.naming import collection_name, frames_collection_name
from index.store import EdgeStore


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_edge_hnsw_is_built_and_queries_through_it_find_the_true_neighbours(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 128)).astype(np.float32)
    n = 42_000  # ~21 MB of vectors: over Edge's own indexing threshold
    X = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, 128)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    with EdgeStore(tmp_path / "qdrant") as st:
        st.create_collection("big", 128, {"label": "keyword"})
        st.upsert("big", ids, X, [{"label": f"c{i % 4}"} for i in range(n)])
        assert st.indexed_count("big") == 0
        st.build_hnsw("big")
        assert st.indexed_count("big") == n
        monkeypatch.setattr(store_mod, "EXACT_SEARCH_MAX_POINTS", 1000)  # queries go through the graph
        queries = centres[rng.integers(0, 20, 40)] + 0.5 * rng.standard_normal((40, 128)).astype(np.float32)
        found = []
        for q in queries:
            q = q / np.linalg.norm(q)
            truth = set(np.argsort(-(X @ q))[:10].tolist())
            got = {int(uuid.UUID(h.id)) - 1 for h in st.query("big", q, 10)}
            found.append(len(truth & got) / 10)
        assert np.mean(found) >= 0.95
        hits = st.query("big", X[7], 5, {"label": "c3"})  # filtered queries too
        assert len(hits) == 5 and all(h.payload["label"] == "c3" for h in hits)


def test_indexing_builds_the_search_index_of_clip_collections_above_the_threshold(demo_folder, data_dir,
                                                                                   monkeypatch):
    built = []
    monkeypatch.setattr(EdgeStore, "build_hnsw", lambda self, name: built.append(name))
    store = index.open_store(data_dir)
    try:
        index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
        assert built == []  # 18 clips: exact search, nothing to build
        monkeypatch.setattr(store_mod, "EXACT_SEARCH_MAX_POINTS", 5)
        index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir)
        assert built == []  # nothing added: nothing to rebuild
        extra = demo_folder.parent / "more"
        extra.mkdir(exist_ok=True)
        wavs = sorted(demo_folder.rglob("*.wav"))
        for p in wavs[:2]:
            (extra / ("copy_" + p.name)).write_bytes(p.read_bytes())
        msgs = []
        rep = index.index_folder(store, "more", extra, ["dsp"], data_dir=data_dir,
                                 progress=lambda done, total, what: msgs.append(what))
        assert rep.added == 2 and built == []  # 2 clips in that library: under the threshold of 5
        monkeypatch.setattr(store_mod, "EXACT_SEARCH_MAX_POINTS", 1)
        (extra / "copy_x.wav").write_bytes(wavs[3].read_bytes())
        index.index_folder(store, "more", extra, ["dsp"], data_dir=data_dir,
                           progress=lambda done, total, what: msgs.append(what))
        assert built == [collection_name("more", "dsp")]  # the clips, not the frames
        assert frames_collection_name("more", "dsp") not in built
        assert any("building the search index of dsp" in m for m in msgs)
    finally:
        store.close()
