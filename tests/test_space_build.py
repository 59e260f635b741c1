"""The Hugging Face Space build, done as a Space does it: the README's front matter, `packages.txt`,
a venv with nothing but `pip install -r requirements.txt` (no --no-deps step, no setup script), then
`python app.py` with `SPACE_ID` set: it serves, fetches the musicnn weights on first use and shows
the demo library.

The venv (4.1 GB; 5 min 37 s to build on this project's 2-core machine from the local wheel index) is
cached outside the repository, keyed by the hash of requirements.txt and the Python version:
`$AUDIO_EXPLORER_SPACE_VENV_CACHE`, default `~/.cache/audio-explorer/space-venv/`. A changed
requirements.txt builds a new one; `AUDIO_EXPLORER_SPACE_VENV_FRESH=1` builds a fresh one in the
test's temporary folder every time. Cached venvs unused for 3 days are removed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACE_PYTHON = "3.11"
STALE_S = 3 * 24 * 3600
# variables of this project or of the test session that a Space does not have
PROJECT_VARS = ("AUDIO_EXPLORER_WEIGHTS", "AUDIO_EXPLORER_MODE", "AUDIO_EXPLORER_OFFLINE", "QDRANT_URL",
                "QDRANT_API_KEY", "HF_HUB_OFFLINE", "AUDIO_EXPLORER_MODEL_PATHS", "VIRTUAL_ENV", "PYTHONPATH")


def front_matter() -> dict[str, str]:
    """The README's YAML front matter as flat key: value strings (it has no nesting)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with the Space's front matter"
    block = text[4:text.index("\n---", 4)]
    out = {}
    for line in block.splitlines():
        if ":" in line and not line.startswith(" "):
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def requirement_pins() -> dict[str, str]:
    """name -> pinned version of requirements.txt's `name==version` lines."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_front_matter_describes_a_gradio_space_on_python_3_11():
    fm = front_matter()
    assert fm["sdk"] == "gradio" and fm["python_version"] == SPACE_PYTHON
    assert fm["sdk_version"] == requirement_pins()["gradio"], "the Space's Gradio must be the pinned one"
    assert (ROOT / fm["app_file"]).is_file()
    packages = (ROOT / "packages.txt").read_text().split()
    assert {"ffmpeg", "libsndfile1", "sonic-pi-samples"} <= set(packages)
    assert "torch" in requirement_pins(), "an unpinned torch pulls GBs of CUDA wheels"


# ---------------------------------------------------------------- the build itself (slow)

def _python311() -> str | None:
    for cand in (f"python{SPACE_PYTHON}", "python3", sys.executable):
        exe = shutil.which(cand) or (cand if os.path.isabs(cand) else None)
        if not exe:
            continue
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if out.stdout.strip() == SPACE_PYTHON:
            return exe
    return None


def _build_venv(python: str, dest: Path) -> float:
    """`python -m venv dest` + `pip install -r requirements.txt`; seconds taken."""
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(dest)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARS}
    res = subprocess.run([str(dest / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                          str(ROOT / "requirements.txt")], capture_output=True, text=True, env=env, timeout=2400)
    if res.returncode != 0:
        raise AssertionError(f"pip install -r requirements.txt failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def _space_venv(python: str, tmp: Path) -> tuple[Path, str]:
    """A venv with exactly requirements.txt installed: cached by its hash unless asked for fresh."""
    if os.environ.get("AUDIO_EXPLORER_SPACE_VENV_FRESH", "") in ("1", "true", "yes"):
        secs = _build_venv(python, tmp / "venv")
        return tmp / "venv", f"fresh venv built in {secs:.0f} s"
    import fcntl

    cache = Path(os.environ.get("AUDIO_EXPLORER_SPACE_VENV_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audio-explorer" / "space-venv")
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1((ROOT / "requirements.txt").read_bytes() + python.encode()
                       + subprocess.run([python, "--version"], capture_output=True, text=True).stdout.encode()
                       ).hexdigest()[:16]
    venv = cache / key
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other sessions on this machine wait, then reuse it
        try:
            for old in cache.iterdir():  # venvs of older requirements, unused for days
                stamp = old / ".used"
                if old.name != key and old.is_dir() and stamp.is_file() and time.time() - stamp.stat().st_mtime > STALE_S:
                    shutil.rmtree(old, ignore_errors=True)
            if (venv / ".complete").is_file():
                note = f"cached venv {venv}"
            else:  # built in place (a venv cannot be moved); `.complete` marks a finished one
                shutil.rmtree(venv, ignore_errors=True)
                secs = _build_venv(python, venv)
                (venv / ".complete").write_text(f"{secs:.0f} s\n")
                note = f"venv built in {secs:.0f} s, cached as {venv}"
            (venv / ".used").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return venv, note


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing_debian_packages() -> list[str]:
    names = (ROOT / "packages.txt").read_text().split()
    return [n for n in names if subprocess.run(["dpkg", "-s", n], capture_output=True).returncode != 0]


def _pypi_reachable(python: str, tmp: Path) -> bool:
    """Whether pip can fetch the musicnn wheel here (as the app will on first use)."""
    res = subprocess.run([python, "-m", "pip", "download", "--no-deps", "--quiet", "musicnn==0.1.0",
                          "-d", str(tmp / "probe")], capture_output=True, text=True, timeout=300)
    shutil.rmtree(tmp / "probe", ignore_errors=True)
    return res.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_space_build_serves_fetches_the_weights_and_shows_the_demo(tmp_path):
    python = _python311()
    if python is None:
        pytest.skip(f"no Python {SPACE_PYTHON} here (the Space's python_version)")
    if shutil.which("dpkg") and (missing := _missing_debian_packages()):
        pytest.skip(f"packages.txt's {', '.join(missing)} not installed here (a Space installs them; "
                    f"scripts/setup.sh does too)")
    if not _pypi_reachable(python, tmp_path):
        pytest.skip("pip cannot reach PyPI here: a Space fetches the musicnn wheel from it on first use")
    venv, how = _space_venv(python, tmp_path)
    vpy = venv / "bin" / "python"
    # what the Space's own build leaves out: the musicnn package (its weights come on first use)
    assert subprocess.run([str(vpy), "-c", "import musicnn"], capture_output=True).returncode != 0

    data = tmp_path / "data"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARS}
    env.update(SPACE_ID="test/audio-embedding-explorer", AUDIO_EXPLORER_DATA=str(data),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(tmp_path / "gradio"), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "space.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(vpy), "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        status, deadline = None, time.time() + 1200
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                    status = r.status
                break
            except OSError:
                time.sleep(3)
        served_s = time.perf_counter() - t0
        assert status == 200, f"not serving (exit {proc.poll()}):\n{log_path.read_text()[-4000:]}"
        # the musicnn wheel was fetched into the data folder and converted there
        weights = data / "weights" / "musicnn"
        assert list(weights.glob("musicnn-0.1.0-*.whl")), log_path.read_text()[-3000:]
        assert (weights / "MSD_musicnn.pt").is_file() and (weights / "MSD_vgg.pt").is_file()

        from gradio_client import Client

        libs = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/list_libraries")
        demo = {lib["name"]: lib for lib in libs}["demo"]
        assert demo["models"][0] == "musicnn-msd" and set(demo["models"]) == {"musicnn-msd", "vgg-msd", "dsp"}
        assert demo["clips"] >= 150 and all(n == demo["clips"] for n in demo["counts"].values())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # the command line agrees, once the server has let go of the Qdrant Edge shards
    out = subprocess.run([str(vpy), "app.py", "libraries", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and '"demo"' in out.stdout, out.stderr[-2000:]
    print(f"\nspace build: {how}; first run served after {served_s:.0f} s")
