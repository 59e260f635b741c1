"""Level of detail for big 2D maps: a capped subset stratified over the map, a density grid of the
rest, and a click anywhere still resolving to a real clip (threshold lowered, no million points)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import projections
from app.services import Services
from app.services import maps as mapsvc
from app.views import map as maps
from projections.lod import cells


def test_stratified_subset_keeps_every_occupied_cell_and_the_outliers():
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 0.05, (20000, 2))  # one dense blob ...
    outliers = np.array([[5.0, 5.0], [-4.0, 3.0], [3.0, -5.0]])  # ... and three far points
    xy = np.vstack([dense, outliers]).astype(np.float32)
    keep = projections.stratified_subset(xy, cap=2000, bins=64)
    assert len(keep) <= 2000 and len(keep) == len(np.unique(keep))
    assert {20000, 20001, 20002} <= set(keep.tolist())  # a uniform sample of 10 % would likely lose them
    all_cells, kept_cells = set(cells(xy, 64).tolist()), set(cells(xy, 64)[keep].tolist())
    assert kept_cells == all_cells
    d = projections.density_grid(xy, bins=50, exclude=keep)
    assert sum(map(sum, d["z"])) == len(xy) - len(keep) and len(d["x"]) == 50 == len(d["z"])


@pytest.fixture(scope="module")
def lib(tmp_path_factory, demo_folder):
    root = tmp_path_factory.mktemp("lod")
    shutil.copytree(demo_folder, root / "lib")
    svc = Services(root / "data")
    assert svc.libs.index("demo", folder=str(root / "lib"), models=["dsp"]).added == 18
    return svc


def test_a_map_above_the_threshold_sends_a_subset_and_a_density_and_clicks_still_play(lib, monkeypatch):
    svc = lib
    monkeypatch.setattr(mapsvc, "LOD_THRESHOLD", 10)
    monkeypatch.setattr(mapsvc, "LOD_CAP", 9)
    monkeypatch.setattr(mapsvc, "LOD_GRID", 3)  # 9 cells: each occupied one keeps a point
    value, _ = maps.draw(svc, "demo", "dsp", "pca", "2D", "label")
    pts = svc.maps.tokens.points(value["token"])
    fit = svc.maps.fit("demo", "dsp", "pca", 2, quality=False)
    assert value["n"] == len(pts["x"]) <= 9 and value["n_total"] == 18
    assert value["note"].startswith(f"drawing {value['n']:,} of 18 points")
    drawn = {svc.maps.tokens.point_id(value["token"], j) for j in range(value["n"])}
    rows = [i for i, pid in enumerate(fit.ids) if pid in drawn]
    assert set(cells(fit.coords, 3)[rows].tolist()) == set(cells(fit.coords, 3).tolist())
    assert sum(map(sum, pts["density"]["z"])) == 18 - value["n"]
    # a click where a hidden clip lies resolves to that clip (of all 18), and the click lists it first
    hidden = next(i for i, pid in enumerate(fit.ids) if pid not in drawn)
    got = svc.maps.tokens.nearest(value["token"], float(fit.coords[hidden, 0]), float(fit.coords[hidden, 1]))
    assert got["id"] == fit.ids[hidden] and got["path"] == fit.payloads[hidden]["path"]
    html_, pid = maps.click(svc, "demo", "dsp", 3, value["token"], None, got["id"])
    assert pid == got["id"] and html_.index("Clicked clip") < html_.index(got["path"]) < html_.index("Nearest to")
    assert svc.maps.tokens.nearest(value["token"], "x", 0) is None and svc.maps.tokens.nearest("0" * 32, 0, 0) is None
    # a drawn point's click is as before; below the threshold every point is sent, with no density
    assert svc.maps.tokens.point_id(value["token"], 0) in drawn
    monkeypatch.setattr(mapsvc, "LOD_THRESHOLD", 150_000)
    small, _ = maps.draw(svc, "demo", "dsp", "pca", "2D", "label")
    assert small["n"] == 18 and "density" not in svc.maps.tokens.points(small["token"])
    # UMAP / t-SNE above their size limit are refused with one line
    monkeypatch.setattr(mapsvc, "MAX_UMAP_POINTS", 10)
    value, _ = maps.draw(svc, "demo", "dsp", "umap", "2D", "label")
    assert value["message"].startswith("Error: UMAP of 18 points would take") and "PCA" in value["message"]
