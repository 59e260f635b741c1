"""Shared fixtures: a small synthetic labelled library and an isolated data folder."""
from __future__ import annotations

import contextlib
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

    from embedders.cpu import pin_numba_target

    pin_numba_target()  # numba's host target crashes on some CPUs (see embedders/cpu.py); children inherit it
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(root: Path, env: dict):
    """`python app.py serve --no-demo` on a free localhost port with `env`, logging to
    root/serve.log; yields its URL once it answers, stops it afterwards."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--no-demo", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except Exception:
                if proc.poll() is not None:
                    raise RuntimeError((root / "serve.log").read_text()[-2000:])
                if time.time() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def served_app(tmp_path_factory, demo_folder):
    """The app served on localhost over a small indexed library (dsp + vgg-msd): (url, data_dir, folder)."""
    import shutil
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    root = tmp_path_factory.mktemp("served")
    folder = root / "lib"
    shutil.copytree(demo_folder, folder)
    # a longer clip so that a trajectory has many frames
    t = np.arange(int(4.0 * 22050)) / 22050
    sweep = 0.5 * np.sin(2 * np.pi * (200 + 400 * t) * t) * np.minimum(1, t * 4)
    sf.write(str(folder / "pad" / "sweep_long.wav"), sweep.astype(np.float32), 22050)
    data = root / "data"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
    subprocess.run([sys.executable, "app.py", "index", str(folder), "--library", "demo", "--models", "dsp,vgg-msd"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
    with serving(root, env) as url:
        yield url, data, folder
