"""Load: 20 concurrent searchers (HTTP calls to the app's API endpoints) against the served app for ~25 s (a bounded loop
that stops by itself): no errors, latency percentiles reported, server memory not growing
without bound. The 60 s version with a larger library is benchmarks/load_test.py."""
from __future__ import annotations

import importlib.util
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _load_module():
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "benchmarks" / "load_test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_twenty_concurrent_searchers(served_app):
    lt = _load_module()
    url, _, folder = served_app
    pid = lt.server_pid(urllib.parse.urlparse(url).port)
    assert pid, "cannot find the server process"
    ids = lt.library_ids(url, "demo")
    assert set(ids) == {"dsp", "vgg-msd"} and all(len(v) >= 19 for v in ids.values())
    queries = sorted(folder.rglob("*.wav"))[:8]
    lt.run_load(url, "demo", ids, queries, duration_s=3, workers=2, file_every=2)  # warm: models loaded
    # sessionless calls (each a new server session, as from a curl loop): the harder case for memory
    res = lt.run_load(url, "demo", ids, queries, duration_s=25, workers=20, file_every=5, pid=pid, sessionless=True)
    print("\n" + lt.table(res))
    assert res["errors"] == 0, res["error_samples"]
    assert res["search_by_id"]["n"] >= 40 and res["search_file"]["n"] >= 5
    m = res["rss"]
    # bounded: the second half of the run does not climb above the first half's peak by more than 64 MB
    assert m["max_mb"] <= m["max_first_half_mb"] + 64, m
