"""The conditioned autoencoder's 'latent' map shows its raw 3-D latent coordinates (kept in the
payload beside the unit vectors of the cosine collection), trajectories included."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import index
from app.services import Services
from index import training
from index.ingest import IngestOptions


@pytest.mark.slow  # trains a (tiny) autoencoder
def test_latent_map_draws_the_raw_latent(tmp_path, demo_folder):
    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    svc = Services(tmp_path / "data")
    store, data = svc.store, svc.data_dir
    index.index_folder(store, "lib", folder, ["dsp"], data_dir=data,
                       options=IngestOptions(descriptors=False, thumbnails=False))
    cfg = training.AutoencoderConfig(epochs=1, widths=[8, 16, 32], hidden=16)
    res = training.train_autoencoder(store, "lib", name="raw", data_dir=data, config=cfg, log=lambda line: None)
    index.index_folder(store, "lib", folder, [res.model], data_dir=data,
                       options=IngestOptions(descriptors=False, thumbnails=False))
    ids, X, pays = index.read_vectors(store, "lib", res.model)
    raw = np.asarray([p["latent"] for p in pays], np.float32)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)  # the collection: unit vectors
    assert np.std(np.linalg.norm(raw, axis=1)) > 1e-3  # the raw latent: not on a sphere
    # the clip's raw latent is the mean of its frames' raw latents; its vector their normalised mean
    file_id = pays[0]["file_id"]
    times, frames = index.read_frame_latents(store, "lib", res.model, file_id)
    np.testing.assert_allclose(frames.mean(axis=0), raw[0], atol=1e-3)
    np.testing.assert_allclose(X[0], raw[0] / np.linalg.norm(raw[0]), atol=1e-3)
    fit = svc.maps.fit("lib", res.model, "latent", 3)
    np.testing.assert_allclose(fit.coords, raw)
    tr = svc.maps.trajectory("lib", res.model, "latent", 3, pays[0]["path"])
    np.testing.assert_allclose(np.c_[tr["x"], tr["y"], tr["z"]], frames, atol=1e-4)
    assert len(tr["t"]) == len(times) > 1 or len(times) == 1
