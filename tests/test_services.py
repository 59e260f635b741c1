"""The services the faces call, by concern: maps (MapFit, the fit cache, TokenStore), the vector
cache, locks, formatting, errors."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from app.errors import CliError, ServiceError, one_line
from app.services import KeyLocks, MapFit, Services, TokenStore
from app.services import formatting


@pytest.fixture(scope="module")
def svc(tmp_path_factory, demo_folder):
    s = Services(tmp_path_factory.mktemp("svc") / "data")
    s.libs.index("demo", folder=str(demo_folder), models=["dsp"])
    return s


def test_a_map_is_fitted_once_then_read_from_the_cache(svc):
    first = svc.maps.fit("demo", "dsp", "pca", 2, quality=False)
    assert isinstance(first, MapFit) and not first.cached and first.projection.quality is None
    assert first.coords.shape == (18, 2) and first.vectors.shape[0] == len(first.ids) == len(first.payloads) == 18
    again = svc.maps.fit("demo", "dsp", "pca", 2)
    assert again.cached and np.allclose(again.coords, first.coords) and again.ids == first.ids
    q = again.projection.quality
    assert 0 < q["trustworthiness"] <= 1 and q["k"] == 10
    fresh = Services(svc.data_dir, store=svc.store)  # a new server process on the same data folder
    assert fresh.maps.fit("demo", "dsp", "pca", 2).cached


def test_fits_asked_for_at_once_fit_once(svc):
    hits_before, misses_before = svc.maps.cache.stats.hits, svc.maps.cache.stats.misses
    out = []
    threads = [threading.Thread(target=lambda: out.append(svc.maps.fit("demo", "dsp", "pca", 3, seed=7,
                                                                          quality=False))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert svc.maps.cache.stats.misses - misses_before == 1 and svc.maps.cache.stats.hits - hits_before == 3
    assert all(np.array_equal(o.coords, out[0].coords) for o in out)


def test_map_document_has_every_clip_with_its_payload(svc):
    doc = svc.maps.document("demo", "dsp", "pca", 3, quality=True)
    assert doc["n"] == 18 and len(doc["points"]) == 18 and doc["quality"]["trustworthiness"] > 0
    p = doc["points"][0]
    assert {"id", "x", "y", "z", "path", "label", "duration_s"} <= set(p)


def test_vectors_are_read_again_when_the_collection_changes(svc, demo_folder, tmp_path):
    ids, X, _ = svc.vectors.read("demo", "dsp")
    assert svc.vectors.read("demo", "dsp")[1] is X  # memoised
    extra = tmp_path / "extra"
    (extra / "kick").mkdir(parents=True)
    for f in (demo_folder / "kick").iterdir():
        (extra / "kick" / f.name).write_bytes(f.read_bytes())
    svc.libs.index("other", folder=str(extra), models=["dsp"])
    assert len(svc.vectors.read("other", "dsp")[0]) == 4
    svc.libs.delete("other")
    with pytest.raises(Exception, match="unknown library 'other'"):
        svc.vectors.read("other", "dsp")


def test_token_store_keeps_the_latest_maps_and_checks_indices():
    tokens = TokenStore(keep=2)
    a = tokens.publish({"x": [1]}, ["id-a"])
    b = tokens.publish({"x": [2]}, ["id-b"])
    assert tokens.point_id(a, 0) == "id-a" and tokens.points(b) == {"x": [2]}
    c = tokens.publish({"x": [3]}, ["id-c"])
    assert tokens.points(a) is None and tokens.point_id(a, 0) is None  # the oldest was dropped
    for bad in (-1, 1, "0", None, True, 0.0):
        assert tokens.point_id(c, bad) is None
    assert tokens.point_id(None, 0) is None and tokens.point_id(c, 0) == "id-c"


def test_key_locks_are_one_per_key():
    locks = KeyLocks()
    assert locks(("fit", "a")) is locks(("fit", "a")) and locks(("fit", "a")) is not locks(("fit", "b"))


def test_formatting_says_na_for_undefined_numbers():
    assert formatting.number(float("nan")) == "n/a" and formatting.number(None) == "n/a"
    assert formatting.number(0.12345) == "0.123"
    s = formatting.map_status(10, "dsp", "umap", 2, True, {"k": 5, "trustworthiness": 0.9,
                                                           "agreement_full": math.nan, "agreement_map": 0.5})
    assert s == ("10 clips, UMAP 2D of dsp (cached) · trustworthiness@5 0.900 · kNN label agreement n/a in the "
                 "full space, 0.500 in the map")
    assert formatting.map_status(3, "dsp", "pca", 3, False, None).endswith("computing its quality numbers…")
    table = formatting.compare_table([{"model": "dsp", "trustworthiness": 0.5, "agreement_full": None}])
    assert table.splitlines()[-1] == "| dsp | 0.500 | n/a | n/a |"


def test_errors_are_one_line_by_type():
    import index

    assert one_line(ServiceError("no clips\nsecond line")) == "no clips"
    assert one_line(CliError("bad flag")) == "bad flag"
    assert one_line(index.StoreError("cannot open")) == "cannot open"
    assert one_line(index.LibraryError("unknown library 'x'")) == "unknown library 'x'"
    assert one_line(KeyError("k")) == "KeyError: 'k'"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_unknown_colour_and_empty_library_are_service_errors(svc, tmp_path):
    with pytest.raises(ServiceError, match="cannot colour by 'x'"):
        svc.maps.value("demo", "dsp", "pca", 2, color_by="x")
    with pytest.raises(ServiceError, match="'latent' needs a model with 3-D vectors"):
        svc.maps.fit("demo", "dsp", "latent", 3)
