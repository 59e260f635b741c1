"""UMAP of a big library: fitted on a sample, the rest placed by transform (thresholds lowered, a
real Qdrant Edge store of clustered random vectors)."""
from __future__ import annotations

import numpy as np
import pytest

import index
import projections
from app.services import Services
from app.services import maps as mapsvc
from app.views import api
from index.libraries import Library, save_library

N, DIM, CLUSTERS = 1200, 32, 6
ABOVE, SAMPLE = 800, 400


def _add_library(svc: Services, name: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    lab = rng.integers(0, CLUSTERS, n)
    X = centres[lab] + 0.25 * rng.standard_normal((n, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    coll = index.collection_name(name, "m")
    svc.store.create_collection(coll, DIM, indexes={"label": "keyword", "path": "keyword"})
    ids = [index.point_id(f"{name}{i:036x}") for i in range(n)]
    svc.store.upsert(coll, ids, X, [{"path": f"c{c}/{i}.wav", "label": f"c{c}"} for i, c in enumerate(lab)])
    save_library(svc.store, Library(name=name, root="/nonexistent", models=["m"]))
    return X


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    s = Services(tmp_path_factory.mktemp("umapsample") / "data")
    _add_library(s, "big", N, 0)
    _add_library(s, "small", 300, 1)
    return s


def test_a_big_umap_is_fitted_on_a_sample_and_every_other_clip_placed(svc, monkeypatch):
    monkeypatch.setattr(mapsvc, "UMAP_SAMPLE_ABOVE", ABOVE)
    monkeypatch.setattr(mapsvc, "UMAP_FIT_SAMPLE", SAMPLE)
    heard = []
    writes = svc.maps.cache.stats.writes
    value, status = svc.maps.value("big", "m", "umap", 2, quality=False,
                                   progress=lambda done, total, msg: heard.append((done, total, msg)))
    assert svc.maps.cache.stats.writes == writes + 1
    assert "UMAP fitted on 400 of 1,200 clips; the rest placed by transform" in status and "(cached)" not in status
    assert heard[0][:2] == (0, N - SAMPLE) and heard[-1][:2] == (N - SAMPLE, N - SAMPLE)
    assert "placed 800 of 800 points with transform" in heard[-1][2]

    fit = svc.maps.fit("big", "m", "umap", 2, quality=False)
    assert fit.cached and svc.maps.cache.stats.writes == writes + 1  # a cache hit: no refit
    assert fit.coords.shape == (N, 2) and np.isfinite(fit.coords).all() and value["n"] == N
    rows = svc.maps.placer(fit).sample_rows_
    assert rows is not None and len(rows) == SAMPLE == len(set(rows.tolist()))
    # the sample's points keep the coordinates of a UMAP fitted on them alone
    alone = projections.make("umap", 2, seed=0).fit(fit.vectors[rows]).embedding_
    np.testing.assert_allclose(fit.coords[rows], alone, atol=1e-4)
    # the placed points land in their own cluster: nearest to their cluster's centre in the map
    labels = np.array([p["label"] for p in fit.payloads])
    names = sorted(set(labels.tolist()))
    centres = np.stack([fit.coords[rows][labels[rows] == c].mean(axis=0) for c in names])
    placed = np.setdiff1d(np.arange(N), rows)
    nearest = np.argmin(((fit.coords[placed, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert np.mean(np.array(names)[nearest] == labels[placed]) > 0.97
    # the quality numbers, the API document and a restarted app say the same
    status = svc.maps.status("big", "m", "umap", 2)
    assert "fitted on 400 of 1,200 clips" in status and "trustworthiness@10 0." in status
    doc = api.map_coordinates(svc, "big", "m", "umap", 2, 0)
    assert doc["n"] == N and doc["fitted_on"] == SAMPLE and doc["params"]["fit_sample"] == SAMPLE
    assert doc["note"] == "UMAP fitted on 400 of 1,200 clips; the rest placed by transform"
    again = mapsvc.MapService(svc, projections.MapCache(svc.data_dir / "maps"))  # a restart: the cache read anew
    fit2 = again.fit("big", "m", "umap", 2, quality=False)
    assert fit2.cached and np.array_equal(fit2.coords, fit.coords)
    placer = again.placer(fit2)
    assert again.cache.stats.model_loads == 1 and np.array_equal(placer.sample_rows_, rows)
    np.testing.assert_allclose(placer.transform(fit.vectors[:5]), svc.maps.placer(fit).transform(fit.vectors[:5]),
                               atol=1e-5)


def test_below_the_threshold_umap_fits_every_clip_as_before(svc):
    assert mapsvc.UMAP_SAMPLE_ABOVE == 100_000 and mapsvc.UMAP_FIT_SAMPLE == 20_000  # the defaults
    value, status = svc.maps.value("small", "m", "umap", 2, quality=False)
    fit = svc.maps.fit("small", "m", "umap", 2, quality=False)
    assert "fitted on" not in status and value["n"] == 300 and fit.coords.shape == (300, 2)
    assert svc.maps.placer(fit).sample_rows_ is None and "fit_sample" not in fit.projection.params
    assert fit.key.params == projections.canonical_params("umap", 2, seed=0)  # the key maps had before
    doc = svc.maps.document("small", "m", "umap", 2)
    assert doc["fitted_on"] == 300 and "note" not in doc


def test_umap_above_its_bound_and_big_tsne_are_refused_with_one_line(svc, monkeypatch):
    monkeypatch.setattr(mapsvc, "MAX_UMAP_POINTS", 1000)
    with pytest.raises(Exception, match=r"^UMAP of 1,200 points would take too long here .*use PCA or LDA$"):
        svc.maps.fit("big", "m", "umap", 2, quality=False)
    monkeypatch.setattr(mapsvc, "MAX_NONLINEAR_POINTS", 1000)
    with pytest.raises(Exception, match=r"^t-SNE of 1,200 points would take many minutes here .*use UMAP"):
        svc.maps.fit("big", "m", "tsne", 2, quality=False)


def test_fit_sample_is_checked_and_left_out_of_the_params_when_unset():
    assert "fit_sample" not in projections.make("umap", 2).params
    assert projections.make("umap", 2, fit_sample=100).params["fit_sample"] == 100
    with pytest.raises(projections.ProjectionError, match="fit_sample must be at least 16"):
        projections.make("umap", 2, fit_sample=10)
