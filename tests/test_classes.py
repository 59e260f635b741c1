"""Class statistics on a large library: agreement estimated from a sample matches the exact one."""
from __future__ import annotations

import numpy as np
import pytest

import index
from index import classes
from index.libraries import Library, save_library
from index.store import EdgeStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """600 clips in 4 labelled clusters (some overlap, so agreement is neither 0 nor 1)."""
    root = tmp_path_factory.mktemp("classes")
    st = EdgeStore(root / "qdrant")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)).astype(np.float32)
    lab = np.arange(600) % 4
    X = centres[lab] + 1.1 * rng.standard_normal((600, 16)).astype(np.float32)
    coll = index.collection_name("big", "m")
    st.create_collection(coll, 16, indexes={"label": "keyword", "path": "keyword"})
    ids = [index.point_id(f"{i:040x}") for i in range(600)]
    st.upsert(coll, ids, X, [{"path": f"c{l}/{i}.wav", "label": f"c{l}"} for i, l in enumerate(lab)])
    save_library(st, Library(name="big", root=str(root / "audio"), models=["m"]))
    yield st
    st.close()


def test_sampled_agreement_estimates_the_exact_one(store):
    exact = classes.agreement(store, "big", "m", k=5, sample=None)
    est = classes.agreement(store, "big", "m", k=5, sample=300)
    assert exact["sampled"] is None and est["sampled"] == 300 and est["n"] == exact["n"] == 600
    assert 0.3 < exact["overall"] < 0.95  # the clusters overlap: a statistic worth estimating
    assert abs(est["overall"] - exact["overall"]) < 0.05
    assert set(est["per_label"]) == set(exact["per_label"])
    # a different draw gives a different (close) estimate: it really samples
    other = classes.agreement(store, "big", "m", k=5, sample=300, seed=1)
    assert other["overall"] != est["overall"] and abs(other["overall"] - exact["overall"]) < 0.05


def test_class_stats_say_when_agreement_is_sampled(store, monkeypatch):
    assert classes.class_stats(store, "big", "m", k=5)["agreement_sampled"] is None  # 600 <= 2000: exact
    monkeypatch.setattr(classes, "AGREEMENT_SAMPLE", 200)
    st = classes.class_stats(store, "big", "m", k=5)
    assert st["agreement_sampled"] == 200 and st["n_labelled"] == 600
    assert set(st["agreement"]) == set(st["labels"]) == {"c0", "c1", "c2", "c3"}
