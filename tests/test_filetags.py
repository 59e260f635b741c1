"""Labels from the files' own metadata: genre/artist/album/title written with mutagen into MP3
(ID3), FLAC and Ogg Vorbis (Vorbis comments) and M4A (MP4 atoms) files made in the test, read at
index time into the payload, `--labels tag:genre` as the label source, the map's colour fields,
and artist as the source field of grouped folds."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import index
from app.services import Services
from index import filetags

ROOT = Path(__file__).resolve().parent.parent

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install ffmpeg)")


def tone(path, freq, sr=22050, dur=1.0, noise=0.0, seed=0):
    t = np.arange(int(sr * dur)) / sr
    rng = np.random.default_rng(seed)
    w = 0.4 * np.sin(2 * np.pi * freq * t) * np.exp(-t * 2) + noise * rng.normal(size=t.size)
    sf.write(str(path), w.astype(np.float32), sr)


def encode(wav, out):
    codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "64k"], ".flac": ["-c:a", "flac"],
             ".ogg": ["-c:a", "libvorbis", "-q:a", "2"], ".m4a": ["-c:a", "aac", "-b:a", "64k"]}[out.suffix]
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(wav), "-map_metadata", "-1", *codec, str(out)],
                   check=True, timeout=60)


def write_tags(path, genre, artist, album, title):
    """Each format's own tag container, written with mutagen's format classes (not easy mode)."""
    s = path.suffix
    if s == ".mp3":
        from mutagen.id3 import ID3, TALB, TCON, TIT2, TPE1

        tags = ID3()
        tags.add(TCON(encoding=3, text=genre))
        tags.add(TPE1(encoding=3, text=artist))
        tags.add(TALB(encoding=3, text=album))
        tags.add(TIT2(encoding=3, text=title))
        tags.save(str(path))
    elif s in (".flac", ".ogg"):
        from mutagen.flac import FLAC
        from mutagen.oggvorbis import OggVorbis

        f = FLAC(str(path)) if s == ".flac" else OggVorbis(str(path))
        f["GENRE"], f["ARTIST"], f["ALBUM"], f["TITLE"] = genre, artist, album, title
        f.save()
    else:
        from mutagen.mp4 import MP4

        f = MP4(str(path))
        f["\xa9gen"], f["\xa9ART"], f["\xa9alb"], f["\xa9nam"] = genre, artist, album, title
        f.save()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A flat folder (no sub-folders) of 16 tagged files, 4 formats, 2 genres by 4 artists, plus
    one untagged WAV. {file name: (genre, artist)}."""
    root = tmp_path_factory.mktemp("tagged")
    folder = root / "music"
    folder.mkdir()
    truth = {}
    fmts = [".mp3", ".flac", ".ogg", ".m4a"]
    n = 0
    for a in range(4):
        genre = "techno" if a % 2 == 0 else "ambient"
        for k in range(4):
            wav = root / f"src{n}.wav"
            # techno: bright noisy bursts; ambient: low soft tones (an easy split for dsp features)
            if genre == "techno":
                tone(wav, 2500 + 150 * k + 40 * a, noise=0.2, seed=n)
            else:
                tone(wav, 110 + 10 * k + 5 * a, seed=n)
            out = folder / f"track{n:02d}{fmts[n % 4]}"
            encode(wav, out)
            write_tags(out, genre, f"artist {a}", f"album {a}", f"Track {n} \x00")
            truth[out.name] = (genre, f"artist {a}")
            n += 1
    tone(folder / "untagged.wav", 440)
    return folder, truth


def test_tags_are_read_from_every_format(tagged):
    folder, truth = tagged
    for name, (genre, artist) in truth.items():
        got = filetags.read_tags(folder / name)
        assert got["genre"] == genre and got["artist"] == artist, (name, got)
        assert got["album"] == artist.replace("artist", "album") and got["title"].startswith("Track ")
        assert "\x00" not in got["title"]
    assert filetags.read_tags(folder / "untagged.wav") == {}
    bad = folder.parent / "not_audio.mp3"
    bad.write_bytes(b"\xff\xfb garbage" * 10)
    assert filetags.read_tags(bad) == {}  # never an error: the decoder reports real problems


@pytest.mark.slow
def test_tag_genre_labels_a_flat_folder(tagged, tmp_path):
    folder, truth = tagged
    svc = Services(tmp_path / "data")
    rep = svc.libs.index("music", folder=str(folder), models=["dsp"], labels="tag:genre")
    ids, _X, pays = index.read_vectors(svc.store, "music", "dsp")
    by = {p["path"]: p for p in pays}
    assert len(by) == 17, rep
    for name, (genre, artist) in truth.items():
        p = by[name]
        assert p["label"] == genre and p["genre"] == genre and p["artist"] == artist and p["album"]
    assert by["untagged.wav"]["label"] is None and "genre" not in by["untagged.wav"]
    # colour fields and filters
    opts = svc.maps.color_options("music", "dsp")
    assert {"file tag: genre", "file tag: artist", "file tag: album"} <= set(opts)
    col = svc.maps.colors(pays, "file tag: artist")
    assert col["mode"] == "categorical" and col["values"] == [p.get("artist") for p in pays]
    assert len(svc.curation.ids_matching("music", "dsp", {"artist": "artist 1"})) == 4
    # genre centroids work on the flat folder
    assert sorted(svc.queries.labels("music", "dsp")) == ["ambient", "techno"]
    # quality: artist is the source field, folds are cross-artist
    q = svc.labels.quality("music", "dsp")
    assert q.grouped_by == "source: artist" and q.n_groups == 4
    qf = svc.labels.quality("music", "dsp", by="file")
    assert qf.grouped_by == "file" and qf.n_groups == 16
    # the Classes view with neighbours from other artists only (the artist effect left out)
    from app.views import classes

    head, rows, _fig, _html = classes.compute(svc, "music", "dsp", 3, "artist")
    assert "with neighbours of another artist only" in head and "16 clips scored, 4 distinct values of artist" in head
    assert rows["headers"][-1] == "other artist" and len(rows["value"][0]) == 4
    x = svc.queries.class_stats("music", "dsp", k=3, cross="artist")["cross_agreement"]
    assert x["n"] == 16 and set(x["per_label"]) == {"ambient", "techno"}
    svc.store.close()  # the CLI opens the Edge shard itself
    out = subprocess.run([sys.executable, "app.py", "classes", "--library", "music", "--model", "dsp", "-k", "3",
                          "--cross", "artist"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "AUDIO_EXPLORER_DATA": str(tmp_path / "data")})
    assert out.returncode == 0, out.stderr
    assert "agreement@3 with neighbours of another artist only:" in out.stdout and "other artist" in out.stdout
    # the folder label source still reads the tags into the payload
    svc2 = Services(tmp_path / "data2")
    svc2.libs.index("music", folder=str(folder), models=["dsp"])
    p = {q["path"]: q for q in index.read_vectors(svc2.store, "music", "dsp")[2]}["track00.mp3"]
    assert p["label"] is None and p["genre"] == "techno" and p["artist"] == "artist 0"


def test_unknown_tag_field_is_one_line(tmp_path, tagged):
    folder, _ = tagged
    svc = Services(tmp_path / "data")
    with pytest.raises(ValueError, match="unknown file tag 'mood' for labels: use tag:genre"):
        svc.libs.index("music", folder=str(folder), models=["dsp"], labels="tag:mood")
