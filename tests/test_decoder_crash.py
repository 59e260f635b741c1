"""The local engine survives files that crash the decoder: a real SIGSEGV in the decoder child process
(`embedders.isolated`; poison from `tests/decode_poison.py`, installed only in that child through
`$AUDIO_EXPLORER_DECODER_SETUP_HOOK`), with the real command line in a subprocess."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import index
from embedders.isolated import HOOK_ENV, IN_PROCESS_ENV, DecoderCrashed, IsolatedDecoder
from index.store import open_store

ROOT = Path(__file__).resolve().parent.parent
HOOK = {HOOK_ENV: "tests.decode_poison.install"}


def _cli(*args, data_dir, env=None, timeout=600):
    e = {k: v for k, v in os.environ.items() if k not in (HOOK_ENV, IN_PROCESS_ENV, "AUDIO_EXPLORER_DATA")}
    e.update(env or {})
    return subprocess.run([sys.executable, "app.py", *args, "--data-dir", str(data_dir)], cwd=ROOT,
                          capture_output=True, text=True, env=e, timeout=timeout)


def _sine(path: Path, seconds: float, f0: float, sr: int = 16000) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * (f0 + 3 * t) * t)).astype(np.float32), sr)


def _skipped(stderr: str) -> dict[str, str]:
    return dict(ln[len("skipped "):].split(": ", 1) for ln in stderr.splitlines() if ln.startswith("skipped "))


def _collections(d: Path) -> dict[str, dict]:
    """{collection: {id: (vector, payload)}} of every collection of library 'lib' (clips, frames, aspects)."""
    out = {}
    with open_store(d) as st:
        for c in st.list_collections():
            kind = index.naming.parse_collection_name(c)
            if kind and kind[0] == "lib" and kind[2] != "edits":
                out[c] = {r.id: (np.asarray(r.vector), r.payload) for r in st.scroll(c, with_vectors=True)}
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(clean, poisoned): 8 short clips in 4 label folders and a 32 s recording; the poisoned copy adds
    a short clip whose decoding segfaults (in the middle of a batch) and a 100 s recording whose
    decoder segfaults after 90 s were streamed (64 of its 1 s segments already written)."""
    from app.demo import write_demo_library

    base = tmp_path_factory.mktemp("crash")
    clean = write_demo_library(base / "clean", per_class=2, classes=["kick", "hihat", "pad", "voice"], unlabelled=0)
    _sine(clean / "voice" / "long_take.wav", 32, 220)
    poisoned = base / "poisoned"
    shutil.copytree(clean, poisoned)
    _sine(poisoned / "hihat" / "poison_segv.wav", 1.0, 510)
    _sine(poisoned / "pad" / "poison_long.wav", 100, 150)
    return clean, poisoned


@pytest.mark.slow
def test_decoder_segfaults_skip_only_their_files(folders, tmp_path):
    clean, poisoned = folders
    args = ["index", None, "--library", "lib", "--models", "dsp", "--batch-size", "4"]
    d_clean, d = tmp_path / "clean", tmp_path / "poisoned"
    res = _cli(*[a if a else str(clean) for a in args], data_dir=d_clean, env=HOOK)  # no poison file in it
    assert res.returncode == 0 and not _skipped(res.stderr), res.stderr
    want = _collections(d_clean)

    res = _cli(*[a if a else str(poisoned) for a in args], data_dir=d, env=HOOK)
    assert res.returncode == 0, res.stderr
    skipped = _skipped(res.stderr)
    assert sorted(skipped) == ["hihat/poison_segv.wav", "pad/poison_long.wav"]  # exactly the poison files
    assert skipped["hihat/poison_segv.wav"] == ("the decoder crashed on it (signal SIGSEGV); skipped, "
                                                "nothing of it written")
    assert skipped["pad/poison_long.wav"] == ("the decoder crashed on it (signal SIGSEGV) after 1.5 min; "
                                              "skipped, nothing of it written")
    assert "11 files, 40 added, 0 unchanged, 2 skipped" in res.stderr  # 8 clips + 32 segments
    got = _collections(d)
    assert set(got) == set(want) and any("aspect" in c for c in got)
    for c, pts in want.items():  # the clean run's points exactly: nothing of either poison file
        assert set(got[c]) == set(pts), c
        for pid, (vec, payload) in pts.items():
            np.testing.assert_allclose(got[c][pid][0], vec, atol=1e-5)
            assert got[c][pid][1] == payload

    again = _cli(*[a if a else str(poisoned) for a in args], data_dir=d, env=HOOK)
    assert again.returncode == 0, again.stderr
    assert sorted(_skipped(again.stderr)) == sorted(skipped)  # tried again, reported again
    assert "11 files, 0 added, 40 unchanged, 2 skipped" in again.stderr
    assert {c: set(p) for c, p in _collections(d).items()} == {c: set(p) for c, p in want.items()}


def _session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (the command and anything it started)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(p.name))
    return out


@pytest.mark.slow
def test_ctrl_c_stops_a_run_whose_decoder_hangs_and_leaves_no_process(folders, tmp_path):
    clean, _ = folders
    folder = tmp_path / "audio"
    shutil.copytree(clean, folder)
    _sine(folder / "kick" / "slow_take.wav", 1.0, 300)  # its decoder hangs (tests/decode_poison.py)
    e = {k: v for k, v in os.environ.items() if k not in (HOOK_ENV, IN_PROCESS_ENV, "AUDIO_EXPLORER_DATA")}
    proc = subprocess.Popen([sys.executable, "app.py", "index", str(folder), "--library", "lib", "--models", "dsp",
                             "--data-dir", str(tmp_path / "data")], cwd=ROOT, env={**e, **HOOK},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        marker = folder / "kick" / "slow_take.wav.decoding"
        t_end = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < t_end:
            time.sleep(0.2)
        assert marker.exists(), "the decoder never reached the hanging file"
        assert len(_session_pids(proc.pid)) >= 2  # the command and its decoder child
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        err = proc.communicate(timeout=30)[1]
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert stopped_s < 10, stopped_s  # not after the hanging decode (10 min)
    assert "Traceback" not in err
    deadline = time.monotonic() + 5
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_pids(proc.pid) == []  # no decoder child left behind


def test_a_crashed_child_is_replaced_and_errors_keep_their_words(tmp_path):
    """The decoder child in-process: a kill -SEGV of the child is reported as a crash of the file being
    read, the next file gets a fresh child, and ordinary errors read as they do in-process."""
    from embedders import audio

    _sine(tmp_path / "a.wav", 0.5, 400)
    (tmp_path / "junk.wav").write_bytes(b"RIFF this is not audio")
    with IsolatedDecoder() as dec:
        wave, sr = dec.decode(tmp_path / "a.wav")
        ref, ref_sr = audio.decode(tmp_path / "a.wav")
        assert sr == ref_sr and np.array_equal(wave, ref)
        with pytest.raises(audio.AudioError) as err:
            dec.decode(tmp_path / "junk.wav")
        with pytest.raises(audio.AudioError) as ref_err:
            audio.decode(tmp_path / "junk.wav")
        assert str(err.value) == str(ref_err.value) and not isinstance(err.value, DecoderCrashed)
        first = dec.pid
        os.kill(first, signal.SIGSEGV)
        with pytest.raises(DecoderCrashed, match=r"^a\.wav: the decoder crashed on it \(signal SIGSEGV\)"):
            dec.decode(tmp_path / "a.wav")
        assert np.array_equal(dec.decode(tmp_path / "a.wav")[0], ref) and dec.pid != first and dec.started == 2
        last = dec.pid
    assert not Path(f"/proc/{last}").exists()  # closed: the child is gone


def test_decode_in_process_switch(monkeypatch):
    from index import ingest

    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    assert isinstance(ingest.open_decoder(), ingest._InProcessDecoder)
    monkeypatch.delenv(IN_PROCESS_ENV)
    dec = ingest.open_decoder()
    try:
        assert isinstance(dec, ingest._ChildDecoder)
    finally:
        dec.close()
