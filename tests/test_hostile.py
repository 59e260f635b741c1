"""Hostile and bad input, generated here: every bad file is one clear line, the batch goes on,
nothing half-written; odd but valid audio is indexed; long files stream in bounded memory;
decompression bombs are refused before they fill memory; paths never leave a library; uploads
over the size limit are refused before anything decodes them."""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import index
from embedders.audio import AudioError, decode, info, printable, stream_segments
from index.naming import collection_name, frames_collection_name

ROOT = Path(__file__).resolve().parent.parent
LIB = "hostile"
MODELS = ("dsp", "vgg-msd")
MAX_DURATION_S = 120  # for the indexing run: an unknown-length file passes it while streaming


def tone(sr: int, dur: float, ch: int = 1, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(sr * dur))) / sr
    x = 0.5 * np.sin(2 * np.pi * f * t)
    return np.stack([x * (0.5 + 0.1 * c) for c in range(ch)], 1) if ch > 1 else x


def write_silence_flac(path: Path, sr: int, seconds: int, unknown_length: bool = False) -> Path:
    """Hours of silence in a few hundred KB (FLAC codes a silent block in a few bytes)."""
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="FLAC") as f:
        block = np.zeros(sr * 60, np.float32)
        for _ in range(seconds // 60):
            f.write(block)
    if unknown_length:  # STREAMINFO's 36-bit total-samples field = 0: "length unknown"
        b = bytearray(path.read_bytes())
        assert b[:4] == b"fLaC"
        v = int.from_bytes(b[18:26], "big") & ~((1 << 36) - 1)
        b[18:26] = v.to_bytes(8, "big")
        path.write_bytes(bytes(b))
    return path


def make_corpus(base: Path) -> tuple[Path, dict[str, str | None]]:
    """A library of hostile files; {file name: None if it must be indexed, else a piece of its reason}."""
    lib, out = base / "lib", base / "outside"
    lib.mkdir(parents=True)
    out.mkdir()
    expect: dict[str, str | None] = {}
    sf.write(str(lib / "good.wav"), tone(22050, 1.0), 22050)
    expect["good.wav"] = None
    (lib / "zero.wav").write_bytes(b"")
    expect["zero.wav"] = "empty file (0 bytes)"
    good = (lib / "good.wav").read_bytes()
    (lib / "trunc.wav").write_bytes(good[: len(good) // 3])
    expect["trunc.wav"] = "truncated file: the header promises 44100 bytes of audio"
    sf.write(str(base / "whole.flac"), tone(22050, 2.0, f=330), 22050, format="FLAC")
    flac = (base / "whole.flac").read_bytes()
    (lib / "trunc.flac").write_bytes(flac[: len(flac) // 3])
    expect["trunc.flac"] = "truncated file: the header promises 2.0 s"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-ar",
                    "22050", str(base / "whole.mp3")], check=True)
    mp3 = (base / "whole.mp3").read_bytes()
    # MP3 headers do not say reliably how long a stream is: what decodes is indexed
    (lib / "trunc.mp3").write_bytes(mp3[: len(mp3) // 3])
    expect["trunc.mp3"] = None
    (lib / "text.wav").write_text("hello, this is not audio\n" * 50)
    expect["text.wav"] = "not an audio file or unsupported format"
    (lib / "image.wav").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300))
    expect["image.wav"] = "not an audio file or unsupported format"
    sf.write(str(lib / "silent.wav"), np.zeros(22050), 22050)
    sf.write(str(lib / "dc.wav"), np.full(22050, 0.5), 22050)
    sf.write(str(lib / "short10ms.wav"), tone(22050, 0.01), 22050)
    sf.write(str(lib / "one_sample.wav"), np.array([0.5]), 22050)
    for sr in (8000, 44100, 96000, 192000):
        sf.write(str(lib / f"sr{sr}.wav"), tone(sr, 1.0, f=220 + sr / 1000), sr)
    sf.write(str(lib / "six_channels.wav"), tone(48000, 1.0, 6), 48000)
    sf.write(str(lib / "pcm24.wav"), tone(44100, 1.0, f=550), 44100, subtype="PCM_24")
    sf.write(str(lib / "float.wav"), tone(44100, 1.0, f=660), 44100, subtype="FLOAT")
    x = tone(22050, 1.0, f=770).astype(np.float32)
    x[100:200], x[300], x[400], x[500:600] = np.nan, np.inf, -np.inf, 40.0
    sf.write(str(lib / "nan_inf.wav"), x, 22050, subtype="FLOAT")
    for name in ("silent.wav", "dc.wav", "short10ms.wav", "one_sample.wav", "sr8000.wav", "sr44100.wav",
                 "sr96000.wav", "sr192000.wav", "six_channels.wav", "pcm24.wav", "float.wav", "nan_inf.wav"):
        expect[name] = None
    sf.write(str(lib / "rate1.wav"), np.zeros(50000, np.float32), 1)  # 1 Hz: 14 hours of 50k samples
    expect["rate1.wav"] = "unsupported sample rate 1 Hz"
    for i, name in enumerate(["with space.wav", "ünïcødé ♫.wav", "quote'\"s.wav", "new\nline.wav", "tab\there.wav"]):
        sf.write(str(lib / name), tone(22050, 0.5 + 0.1 * i), 22050)
        expect[name] = None
    (lib / "bad\nname.wav").write_text("not audio")
    expect["bad\nname.wav"] = "not an audio file"
    shutil.copy(lib / "good.wav", lib / "zz_copy.wav")
    expect["zz_copy.wav"] = "same audio as good.wav (indexed once)"
    os.symlink("good.wav", lib / "zz_link.wav")
    expect["zz_link.wav"] = "same audio as good.wav (indexed once)"
    sf.write(str(out / "secret.wav"), tone(22050, 1.0, f=123), 22050)
    os.symlink(out / "secret.wav", lib / "outside.wav")
    expect["outside.wav"] = "symlink points outside the library (not followed)"
    os.symlink(out, lib / "outdir")  # a folder link leaving the library: not walked
    write_silence_flac(lib / "bomb.flac", 8000, 5 * 3600)
    expect["bomb.flac"] = "5.0 h of audio is over the"
    write_silence_flac(lib / "nolen.flac", 8000, 180, unknown_length=True)
    expect["nolen.flac"] = f"of audio is over the {MAX_DURATION_S / 60:.1f} min limit for one file"
    return lib, expect


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def indexed(corpus, tmp_path_factory):
    """The corpus indexed once by the CLI with dsp and vgg-msd: (lib folder, expectations, data, result)."""
    lib, expect = corpus
    data = tmp_path_factory.mktemp("hostile-data") / "data"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data), "AUDIO_EXPLORER_MAX_DURATION_S": str(MAX_DURATION_S)}
    env.pop("QDRANT_URL", None)
    res = subprocess.run([sys.executable, "app.py", "index", str(lib), "--library", LIB, "--models", ",".join(MODELS),
                          "--json", "--data-dir", str(data)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    return lib, expect, data, res


@pytest.mark.slow  # long: the full suite (CI) runs it
def test_cli_one_line_per_bad_file_and_the_batch_goes_on(indexed):
    lib, expect, data, res = indexed
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    rep = json.loads(res.stdout)
    skipped = {s["path"]: s["reason"] for s in rep["skipped"]}
    bad = {printable(k): v for k, v in expect.items() if v is not None}
    assert set(skipped) == set(bad)
    for name, why in bad.items():
        assert why in skipped[name], (name, skipped[name])
        assert "\n" not in skipped[name] and "\n" not in name
    assert rep["added"] == sum(v is None for v in expect.values())
    # each skipped file is one stderr line, names escaped
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped ")]
    assert sorted(lines) == sorted(f"skipped {k}: {v}" for k, v in skipped.items())

    store = index.open_store(data)
    try:
        for model in MODELS:
            clips = list(store.scroll(collection_name(LIB, model), with_vectors=True))
            assert sorted(r.payload["path"] for r in clips) == sorted(k for k, v in expect.items() if v is None)
            assert all(np.all(np.isfinite(r.vector)) for r in clips)
            ids = {r.id for r in clips}
            frames = list(store.scroll(frames_collection_name(LIB, model)))
            assert {f.payload["point_id"] for f in frames} == ids  # no orphans: the refused streams were removed
            # every clip is searchable; scores are finite
            silent = next(r for r in clips if r.payload["path"] == "silent.wav")
            hits = index.search_id(store, LIB, model, silent.id, k=5)
            assert len(hits) == 5 and all(np.isfinite(h.score) for h in hits)
        by_path = {r.payload["path"]: r.payload for r in store.scroll(collection_name(LIB, "dsp"))}
        assert by_path["sr192000.wav"]["duration_s"] == pytest.approx(1.0, abs=1e-3)
        assert by_path["six_channels.wav"]["sample_rate"] == 48000
        assert by_path["new\nline.wav"]["path"] == "new\nline.wav"  # stored as is, escaped only in messages
        lib_meta = index.get_library(store, LIB)
        assert lib_meta.resolve("ünïcødé ♫.wav").is_file()
        with pytest.raises(index.LibraryError, match="outside library"):
            lib_meta.resolve("outside.wav")  # the link resolves outside the root: refused
    finally:
        store.close()


def test_queries_with_bad_files_are_one_line(indexed):
    """Query-by-example with hostile files: one-line errors; a bomb is refused without decoding it."""
    lib, expect, data, res = indexed
    assert res.returncode == 0
    store = index.open_store(data)
    try:
        for name in ("zero.wav", "trunc.wav", "trunc.flac", "text.wav", "image.wav", "rate1.wav", "bad\nname.wav"):
            with pytest.raises(AudioError) as exc:
                index.search_file(store, LIB, "dsp", lib / name, k=3, data_dir=data)
            assert expect[name] in str(exc.value) and "\n" not in str(exc.value)
        t = time.perf_counter()  # 5 h of silence: over the whole-file limit (10 min), refused from its header
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(AudioError, match="5.0 h of audio is over the 10.0 min limit for decoding a whole file"):
            index.search_file(store, LIB, "dsp", lib / "bomb.flac", k=3, data_dir=data)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert time.perf_counter() - t < 30 and grown_mb < 50, grown_mb
        for name in ("six_channels.wav", "sr192000.wav", "short10ms.wav", "nan_inf.wav", "ünïcødé ♫.wav"):
            hits = index.search_file(store, LIB, "dsp", lib / name, k=3, data_dir=data)
            assert hits[0].path == name and hits[0].score > 0.99
    finally:
        store.close()


def test_audio_guards():
    """Limits come from the environment; names in messages are escaped."""
    assert printable("a\nb\tc ♫") == "a\\nb\\tc ♫"
    env = {**os.environ, "AUDIO_EXPLORER_MAX_DECODE_S": "2", "AUDIO_EXPLORER_MAX_DURATION_S": "3"}
    code = """
import numpy as np, soundfile as sf, sys, tempfile, os
from embedders.audio import decode, stream_segments, AudioError
p = os.path.join(tempfile.mkdtemp(), "x.wav")
sf.write(p, np.zeros(8000 * 5, np.float32), 8000)
for f in (lambda: decode(p), lambda: list(stream_segments(p, 1, 1))):
    try:
        f(); print("no error")
    except AudioError as e:
        print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == [
        "x.wav: 5.0 s of audio is over the 2.0 s limit for decoding a whole file (long files are streamed)",
        "x.wav: 5.0 s of audio is over the 3.0 s limit for one file"]


@pytest.mark.slow
def test_one_hour_file_streams_in_bounded_memory(tmp_path):
    """A 1-hour file: segmented and streamed as ingest does, and its Playback overview drawn, with
    peak RSS far under a whole decode; decoding it whole is refused at once."""
    sr = 16000
    p = tmp_path / "hour.wav"
    with sf.SoundFile(str(p), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        rng = np.random.default_rng(0)
        minute = (0.1 * rng.standard_normal(60 * sr)).astype(np.float32)
        for _ in range(60):
            f.write(minute)
    assert info(p).duration_s == pytest.approx(3600)
    with pytest.raises(AudioError, match="1.0 h of audio is over the 10.0 min limit for decoding a whole file"):
        decode(p)
    code = f"""
import resource
from pathlib import Path
import numpy as np
from embedders.audio import stream_segments
from embedders.descriptors import spectrogram_png
from index.queries import _streamed_overview
spectrogram_png(np.zeros(16000, np.float32), 16000)  # imports librosa before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = 0
for start, end, wave, rate in stream_segments({str(p)!r}, 10.0, 10.0):
    n += 1
ov = _streamed_overview(Path({str(p)!r}), 800)  # the Playback view's waveform and spectrogram
print(n, len(ov["min"]), round(ov["duration_s"]), before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    n, columns, duration, before_kb, after_kb = map(int, out.stdout.split())
    assert (n, columns, duration) == (360, 800, 3600)
    whole_mb = 3600 * sr * 4 / 1e6  # 230 MB of float32 if decoded at once
    growth_mb = (after_kb - before_kb) / 1024
    assert growth_mb < whole_mb / 3, f"peak RSS grew {growth_mb:.0f} MB"
    print(f"1 h file: 360 segments streamed, peak RSS growth {growth_mb:.0f} MB (whole decode: {whole_mb:.0f} MB)")


# ---- through the served app ---------------------------------------------------------------------

def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
def test_api_search_with_bad_uploads_and_paths(served_app, corpus):
    from gradio_client import Client, handle_file

    url, _, _ = served_app
    lib, expect = corpus
    client = Client(url + "/", verbose=False)
    for name in ("zero.wav", "trunc.flac", "text.wav", "rate1.wav", "bomb.flac"):
        with pytest.raises(Exception) as exc:
            client.predict("demo", "dsp", handle_file(str(lib / name)), 3, api_name="/search_file")
        want = expect[name] if name != "bomb.flac" else "over the 10.0 min limit for decoding a whole file"
        assert want in str(exc.value), (name, str(exc.value))
    for name in ("six_channels.wav", "sr192000.wav", "short10ms.wav", "ünïcødé ♫.wav"):
        hits = client.predict("demo", "dsp", handle_file(str(lib / name)), 3, api_name="/search_file")
        assert len(hits) == 3 and all(np.isfinite(h["score"]) for h in hits)
    # a server-side path that was not uploaded is not read (plain HTTP: gradio_client would upload the file)
    import httpx

    for path in ("/etc/passwd", str(lib / "good.wav"), "../../../etc/passwd"):
        call = f"{url}/gradio_api/call/search_file"
        r = httpx.post(call, json={"data": ["demo", "dsp", {"path": path, "meta": {"_type": "gradio.FileData"}}, 3]})
        with httpx.stream("GET", f"{call}/{r.json()['event_id']}", timeout=60) as s:
            events = "".join(s.iter_text())
        assert "event: error" in events and "it was not uploaded by a user" in events, events[:500]
        assert "not an audio file" not in events  # refused before anything opened it
    assert _status(f"{url}/gradio_api/file=/etc/passwd") == 403
    assert _status(f"{url}/gradio_api/file={lib / 'good.wav'}") == 403
    for rel in ("../../../etc/passwd", "/etc/passwd", "kick/../../x.wav"):
        with pytest.raises(Exception, match="outside library"):
            client.predict("demo", "vgg-msd", rel, api_name="/taggram")
    with pytest.raises(Exception, match="no clip with id"):
        client.predict("demo", "dsp", "../../etc/passwd", 3, api_name="/search_by_id")


@pytest.mark.slow
def test_audio_route_with_hostile_names_and_links(served_app, tmp_path):
    url, _, folder = served_app
    outside = tmp_path / "secret.wav"
    sf.write(str(outside), tone(22050, 0.5), 22050)
    odd = ["with space.wav", "ünïcødé ♫.wav", "quote'\"s.wav", "new\nline.wav", "100%.wav", "#hash?.wav"]
    for name in odd:
        sf.write(str(folder / name), tone(22050, 0.2), 22050)
    (folder / "leak.wav").unlink(missing_ok=True)
    os.symlink(outside, folder / "leak.wav")
    os.symlink(tmp_path, folder / "leakdir")
    try:
        for name in odd:
            assert _status(f"{url}/audio/demo/{urllib.parse.quote(name)}") == 200, name
        for path, codes in [("leak.wav", {403}), ("leakdir/secret.wav", {403}),
                            ("%2e%2e/%2e%2e/etc/passwd", {403}), ("%252e%252e/%252e%252e/etc/passwd", {403, 404}),
                            ("..%5c..%5cetc%5cpasswd", {403, 404}), ("kick/kick_00.wav%00.png", {403, 404}),
                            ("%2Fetc%2Fpasswd", {403}), ("/etc/passwd", {403, 404})]:
            assert _status(f"{url}/audio/demo/{path}") in codes, path
    finally:
        (folder / "leak.wav").unlink()
        (folder / "leakdir").unlink()
        for name in odd:
            (folder / name).unlink()


@pytest.mark.slow
def test_upload_over_the_size_limit_is_refused_before_decoding(served_app, tmp_path):
    """Gradio's max_file_size (app.ui.MAX_UPLOAD, 200 MB) refuses the upload while it streams in."""
    import httpx

    url, _, _ = served_app
    small = tmp_path / "small.wav"
    sf.write(str(small), tone(22050, 0.5), 22050)
    big = tmp_path / "big.wav"
    with open(big, "wb") as fh:  # a WAV header, then 210 MB (sparse on disk)
        fh.write(small.read_bytes()[:44])
        fh.truncate(210 * 1024 * 1024)
    with httpx.Client(timeout=120) as http:
        with open(small, "rb") as fh:
            ok = http.post(f"{url}/gradio_api/upload", files={"files": ("small.wav", fh, "audio/wav")})
        assert ok.status_code == 200, ok.text
        t = time.perf_counter()
        with open(big, "rb") as fh:
            r = http.post(f"{url}/gradio_api/upload", files={"files": ("big.wav", fh, "audio/wav")})
        assert r.status_code == 413, (r.status_code, r.text[:300])
        assert "maximum allowed size" in r.text
    print(f"210 MB upload refused with 413 in {time.perf_counter() - t:.1f} s")


# ---- files that are not regular files, and files that change while indexing ----------------------

def _special_files(lib: Path, outside: Path) -> dict[str, str]:
    """FIFOs, a socket, devices and symlink loops among audio names; {name: a piece of its reason}."""
    import socket

    expect = {}
    os.mkfifo(lib / "fifo.wav")
    expect["fifo.wav"] = "not a regular file (a named pipe (FIFO)): not read"
    os.symlink("fifo.wav", lib / "fifo_link.wav")
    expect["fifo_link.wav"] = "not a regular file (a symlink to a named pipe (FIFO)): not read"
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(lib)  # a socket path is limited to ~107 bytes: bind by its short relative name
    try:
        sock.bind("sock.wav")
    finally:
        os.chdir(cwd)
    sock.close()  # the socket file stays
    expect["sock.wav"] = "not a regular file (a socket): not read"
    os.symlink("/dev/zero", lib / "zero_dev.wav")  # a device: reading it never ends
    expect["zero_dev.wav"] = "not a regular file (a symlink to a character device): not read"
    os.symlink("loop_b.wav", lib / "loop_a.wav")
    os.symlink("loop_a.wav", lib / "loop_b.wav")
    os.symlink("self.wav", lib / "self.wav")
    for name in ("loop_a.wav", "loop_b.wav", "self.wav"):
        expect[name] = "symlink loop (not followed)"
    os.symlink("nowhere.wav", lib / "broken.wav")
    expect["broken.wav"] = "broken symlink (its target does not exist)"
    (lib / "dir.wav").mkdir()  # a folder with an audio name: walked, not read
    sub = lib / "sub"
    sub.mkdir()
    os.symlink("..", sub / "up")  # a folder link back up: not walked (os.walk does not follow links)
    try:  # a character device node inside the library (root only)
        os.mknod(lib / "zero_node.wav", 0o644 | __import__("stat").S_IFCHR, os.makedev(1, 5))
        expect["zero_node.wav"] = "not a regular file (a character device): not read"
    except (PermissionError, OSError):
        pass
    return expect


def test_fifos_sockets_devices_and_symlink_loops_are_skipped_in_bounded_time(tmp_path):
    """A folder with a FIFO, a socket, a /dev/zero link, a device node, symlink loops and good files:
    the CLI run ends (a FIFO used to block it for ever), each bad file is one line, the good are indexed."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(3):
        sf.write(str(lib / f"good{i}.wav"), tone(22050, 0.5, f=300 + 100 * i), 22050)
    sf.write(str(lib / "sub_good.wav"), tone(22050, 0.5, f=900), 22050)
    expect = _special_files(lib, tmp_path / "outside")
    data = tmp_path / "data"
    env = {**os.environ, "AUDIO_EXPLORER_DATA": str(data)}
    env.pop("QDRANT_URL", None)
    t = time.perf_counter()
    try:
        res = subprocess.run([sys.executable, "app.py", "index", str(lib), "--library", "special", "--json",
                              "--no-thumbnails", "--data-dir", str(data)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("indexing a folder with FIFOs, sockets and devices did not finish within 60 s")
    wall = time.perf_counter() - t
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    rep = json.loads(res.stdout)
    skipped = {s["path"]: s["reason"] for s in rep["skipped"]}
    assert set(skipped) == set(expect), skipped
    for name, why in expect.items():
        assert why in skipped[name], (name, skipped[name])
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped ")]
    assert sorted(lines) == sorted(f"skipped {k}: {v}" for k, v in skipped.items())  # each once, one line
    assert rep["added"] == 4 and rep["files"] == 4
    assert wall < 60
    print(f"{len(expect)} special files skipped, 4 indexed, in {wall:.1f} s")


def test_decoding_never_opens_a_fifo_or_device(tmp_path):
    """Search-by-file and the decoders refuse what is not a regular file, at once."""
    os.mkfifo(tmp_path / "q.wav")
    os.symlink("/dev/zero", tmp_path / "z.wav")
    for name, kind in (("q.wav", "a named pipe (FIFO)"), ("z.wav", "a character device")):
        for f in (decode, info, lambda p: list(stream_segments(p, 1.0, 1.0))):
            with pytest.raises(AudioError, match=rf"not a regular file \({kind.replace('(', '.').replace(')', '.')}\)"):
                f(tmp_path / name)
    from embedders.audio import NotRegularFile, open_regular

    with pytest.raises(NotRegularFile):
        open_regular(tmp_path / "q.wav")  # O_NONBLOCK: the open itself does not wait for a writer


def test_ffmpeg_that_hangs_is_killed(tmp_path, monkeypatch):
    """ffmpeg silent past $AUDIO_EXPLORER_FFMPEG_TIMEOUT_S is killed: a one-line AudioError."""
    import embedders.audio as audio

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nsleep 600\n")
    fake.chmod(0o755)
    (tmp_path / "x.m4a").write_bytes(b"\x00" * 1000)  # not readable by libsndfile: ffmpeg's job
    monkeypatch.setenv("AUDIO_EXPLORER_FFMPEG_TIMEOUT_S", "1")
    monkeypatch.setattr(audio.shutil, "which", lambda name: str(fake))
    t = time.perf_counter()
    with pytest.raises(AudioError, match="ffmpeg gave no output for 1 s"):
        audio._read_ffmpeg(tmp_path / "x.m4a", 22050, 60.0)
    with pytest.raises(AudioError, match="ffmpeg gave no output for 1 s"):
        list(audio._stream_ffmpeg(tmp_path / "x.m4a", 1.0, 22050, 60.0))
    assert time.perf_counter() - t < 20


@pytest.fixture
def edge(data_dir):
    s = index.open_store(data_dir)
    yield s
    s.close()


def test_files_that_change_vanish_or_fail_mid_read(edge, data_dir, tmp_path, monkeypatch):
    """A file growing between hashing and decoding, one vanishing, one whose read fails part-way:
    each skipped with its reason, the others indexed, nothing half-written."""
    import index.ingest as ingest
    import index.naming as naming

    lib = tmp_path / "lib"
    lib.mkdir()
    for name, f in (("a.wav", 300), ("grows.wav", 400), ("gone.wav", 500), ("eio.wav", 600), ("z.wav", 700)):
        sf.write(str(lib / name), tone(22050, 0.5, f=f), 22050)
    real_decode, real_open = ingest.decode, naming.open_regular

    def decode(path, *a, **k):
        out = real_decode(path, *a, **k)
        if path.name == "grows.wav":  # a recorder still writing it
            with open(path, "ab") as fh:
                fh.write(b"\x00" * 4096)
        if path.name == "gone.wav":
            path.unlink()
        return out

    class FailsMidRead:
        def __init__(self, fh):
            self.fh, self.reads = fh, 0

        def read(self, n):
            self.reads += 1
            if self.reads > 1:
                raise OSError(5, "Input/output error")
            return self.fh.read(min(n, 1000))

        def fileno(self):
            return self.fh.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def open_regular(path):
        fh = real_open(path)
        return FailsMidRead(fh) if Path(path).name == "eio.wav" else fh

    size = (lib / "grows.wav").stat().st_size
    monkeypatch.setenv("AUDIO_EXPLORER_DECODE_IN_PROCESS", "1")  # the wrapped decode runs in this process
    monkeypatch.setattr(ingest, "decode", decode)
    monkeypatch.setattr(naming, "open_regular", open_regular)
    files, _ = index.scan_folder(lib)
    files.append(lib / "never_there.wav")  # listed, then gone before it is read
    rep = index.index_files(edge, "chg", lib, files, ["dsp"], data_dir=data_dir, options=ingest.IngestOptions(
        thumbnails=False))
    why = dict(rep.failed)
    assert why["grows.wav"] == (f"changed while indexing (size {size} -> {size + 4096} bytes); "
                                "index it again once it is complete"), why
    assert why["gone.wav"] == why["never_there.wav"] == ingest.VANISHED
    assert why["eio.wav"] == "cannot read file (Input/output error)"
    assert set(why) == {"grows.wav", "gone.wav", "eio.wav", "never_there.wav"}
    clips = {r.payload["path"] for r in edge.scroll(collection_name("chg", "dsp"))}
    assert clips == {"a.wav", "z.wav"}
    frames = {r.payload["path"] for r in edge.scroll(frames_collection_name("chg", "dsp"))}
    assert frames == clips  # nothing written for the skipped files
    # the grown file, complete now, is indexed by the next run
    monkeypatch.setattr(ingest, "decode", real_decode)
    monkeypatch.setattr(naming, "open_regular", real_open)
    rep = index.index_folder(edge, "chg", lib, ["dsp"], data_dir=data_dir)
    assert rep.added == 2 and not rep.failed  # grows.wav and eio.wav (reads fine now)


def test_long_file_that_changes_while_streaming_is_removed(edge, data_dir, tmp_path, monkeypatch):
    """A long file (segments) that grows while it streams: skipped, and its segments written so far removed."""
    import index.ingest as ingest

    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(str(lib / "long.wav"), tone(8000, 40.0, f=200), 8000)
    real = ingest.stream_segments

    def stream(path, *a, **k):
        for n, seg in enumerate(real(path, *a, **k)):
            if n == 20:
                with open(path, "ab") as fh:
                    fh.write(b"\x00" * 100)
            yield seg

    monkeypatch.setattr(ingest, "stream_segments", stream)
    rep = index.index_folder(edge, "chg", lib, ["dsp"], data_dir=data_dir)
    assert [(p, w.split(" (")[0]) for p, w in rep.failed] == [("long.wav", "changed while indexing")]
    assert rep.added == 0
    assert edge.count(collection_name("chg", "dsp")) == 0 and edge.count(frames_collection_name("chg", "dsp")) == 0
