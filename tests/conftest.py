"""Shared fixtures: a small synthetic labelled library and an isolated data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """4 classes x 4 clips + 2 unlabelled root clips, written once per session."""
    from app.demo import write_demo_library

    return write_demo_library(tmp_path_factory.mktemp("demo_audio"), per_class=4,
                              classes=["kick", "hihat", "pad", "voice"], unlabelled=2)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data folder used by everything in the test (env var set too)."""
    d = tmp_path / "data"
    d.mkdir()
    monkeypatch.setenv("AUDIO_EXPLORER_DATA", str(d))
    monkeypatch.delenv("QDRANT_URL", raising=False)
    return d


def pytest_configure(config):
    """Keep every test away from the user's data folder; share converted weights across tests."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ae-tests-"))
    config._ae_tmp = base
    os.environ.setdefault("AUDIO_EXPLORER_WEIGHTS", str(base / "weights"))
    os.environ["AUDIO_EXPLORER_DATA"] = str(base / "data")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(base / "gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_unconfigure(config):
    """Remove the session's temporary data folder."""
    import shutil

    base = getattr(config, "_ae_tmp", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
