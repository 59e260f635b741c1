"""Export: a static page that opens from disk in Chromium and draws the points; vectors for notebooks."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.browser
def test_exported_page_draws_points_and_plays(tmp_path, demo_folder):
    d, out = tmp_path / "data", tmp_path / "site"
    env_args = ["--data-dir", str(d)]
    subprocess.run([sys.executable, "app.py", "index", str(demo_folder), "--library", "demo", "--models", "dsp",
                    *env_args], cwd=ROOT, check=True, capture_output=True, timeout=600)
    res = subprocess.run([sys.executable, "app.py", "export", "--library", "demo", "--model", "dsp", "--method",
                          "pca", "--dims", "3", "--out", str(out), "--copy-audio", "--vectors", "parquet", *env_args],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    for f in ("index.html", "points.json", "plotly.min.js", "demo__dsp.parquet"):
        assert (out / f).is_file(), f
    doc = json.loads((out / "points.json").read_text())
    assert doc["n"] == 18 and doc["dims"] == 3
    assert len(list((out / "thumbs").glob("*.png"))) == 18
    assert (out / doc["points"][0]["audio"]).is_file()
    import pandas as pd

    df = pd.read_parquet(out / "demo__dsp.parquet")
    assert len(df) == 18 and len(df["vector"][0]) > 10

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        pg = b.new_page()
        pg.goto((out / "index.html").as_uri())
        pg.wait_for_function("() => document.body.dataset.points", timeout=30000)
        assert pg.evaluate("() => document.body.dataset.points") == "18"
        n = pg.evaluate("() => document.getElementById('plot')._fullData.reduce((a, t) => a + t.x.length, 0)")
        assert n == 18
        pg.screenshot(path=str(tmp_path / "export.png"))
        b.close()


def test_export_npz(tmp_path, demo_folder, data_dir):
    import index
    from app.export import export_vectors
    from app.services import Services

    store = index.open_store(data_dir)
    index.index_folder(store, "demo", demo_folder / "kick", ["dsp"], data_dir=data_dir)
    path = export_vectors(Services(data_dir, store=store), "demo", "dsp", tmp_path)
    z = np.load(path)
    assert z["vectors"].shape[0] == 4 and len(z["ids"]) == 4
    pay = json.loads(str(z["payload_json"][0]))
    assert pay["path"].startswith("kick_") and pay["label"] is None  # files at the library root are unlabelled
    store.close()
