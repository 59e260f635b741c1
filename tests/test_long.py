"""Long recordings, trimming, label parsers and descriptors (issue 8)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import index
from embedders.audio import stream_segments, trim_to_peak
from embedders.descriptors import describe
from index.ingest import IngestOptions, index_recording
from index.labels import make_labeler
from index.naming import collection_name, frames_collection_name

SR = 22050
ROOT = Path(__file__).resolve().parent.parent


def _recording(path: Path, seconds: int = 40) -> dict[str, float]:
    """Noise floor with three distinct events at known times."""
    from app.demo import bell, kick, speechlike

    rng = np.random.default_rng(3)
    x = 0.002 * rng.standard_normal(seconds * SR)
    events = {"bell": 7.0, "voice": 19.0, "kick": 31.0}
    for name, t in events.items():
        sig = {"bell": bell, "voice": speechlike, "kick": kick}[name](rng)[: SR]
        i = int(t * SR)
        x[i:i + sig.size] += 0.8 * sig / np.abs(sig).max()
    sf.write(str(path), x.astype(np.float32), SR)
    return events


def test_segment_counts_and_times(tmp_path):
    p = tmp_path / "rec.wav"
    _recording(p, seconds=40)
    segs = list(stream_segments(p, 1.0, 0.5, block_s=3.0))
    starts = [s for s, _, _, _ in segs]
    assert starts[:3] == [0.0, 0.5, 1.0]
    assert len([s for s, e, _, _ in segs if e - s == pytest.approx(1.0)]) == 79
    assert segs[-1][1] == pytest.approx(40.0)
    assert all(w.size == round((e - s) * r) for s, e, w, r in segs)


def test_long_file_is_segmented_and_search_finds_the_moment(tmp_path, data_dir):
    folder = tmp_path / "lib"
    folder.mkdir()
    p = folder / "field recording.wav"
    events = _recording(p)
    store = index.open_store(data_dir)
    rep = index_recording(store, "rec", p, ["dsp"], data_dir=data_dir)
    coll = collection_name("rec", "dsp")
    assert rep.added == 40 and store.count(coll) == 40
    pays = sorted((r.payload for r in store.scroll(coll)), key=lambda q: q["start_s"])
    assert [q["start_s"] for q in pays[:3]] == [0.0, 1.0, 2.0]
    assert len({q["file_id"] for q in pays}) == 1 and pays[0]["path"] == "field recording.wav"
    # query with a 1 s excerpt of the voice event: the top hit is that moment (within one hop)
    q = tmp_path / "query.wav"
    wave, _ = sf.read(str(p), dtype="float32")
    t = events["voice"]
    sf.write(str(q), wave[int(t * SR): int((t + 1) * SR)], SR)
    hits = index.search_file(store, "rec", "dsp", q, k=3, data_dir=data_dir)
    assert abs(hits[0].payload["start_s"] - t) <= 1.0
    grouped = index.search_file(store, "rec", "dsp", q, k=3, one_per_file=True, data_dir=data_dir)
    assert len(grouped) == 1
    # the whole file's trajectory is in the frames collection, in file time
    times, vecs = index.read_frames(store, "rec", "dsp", pays[0]["file_id"])
    assert times[0] < 1.0 and times[-1] > 38.0 and np.all(np.diff(times) >= 0)
    # re-indexing adds nothing
    rep2 = index_recording(store, "rec", p, ["dsp"], data_dir=data_dir)
    assert rep2.added == 0 and store.count(coll) == 40
    store.close()


def test_folder_auto_segments_long_files_only(tmp_path, data_dir, demo_folder):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(demo_folder / "kick", folder / "kick")
    _recording(folder / "long.wav", seconds=35)
    store = index.open_store(data_dir)
    index.index_folder(store, "mixed", folder, ["dsp"], data_dir=data_dir,
                       options=IngestOptions(descriptors=False, thumbnails=False))
    pays = [r.payload for r in store.scroll(collection_name("mixed", "dsp"))]
    assert len([q for q in pays if q["path"] == "long.wav"]) == 35
    assert len([q for q in pays if q["label"] == "kick"]) == 4
    store.close()


def test_trimming_centres_the_peak():
    x = np.zeros(SR * 3, np.float32)
    x[int(1.7 * SR)] = 1.0
    w = trim_to_peak(x, SR, 1.0)
    assert w.size == SR and abs(int(np.argmax(w)) - SR // 2) <= 1
    short = np.zeros(SR // 10, np.float32)
    short[100] = 1.0
    w = trim_to_peak(short, SR, 1.0)
    assert w.size == SR and abs(int(np.argmax(w)) - SR // 2) <= 1  # zero-padded, peak centred


@pytest.mark.parametrize("spec,rel,label,extra", [
    (None, "kick/k1.wav", "kick", {}),
    (None, "root.wav", None, {}),
    ("esc50", "audio/1-100032-A-0.wav", "0", {"fold": "1", "source": "100032", "take": "A"}),
    ("urbansound8k", "fold1/100032-3-0-0.wav", "3", {"source": "100032", "occurrence": "0", "slice": "0"}),
    ("pattern:{kit}_{label}_{n}", "x/808_snare_01.wav", "snare", {"kit": "808", "n": "01"}),
    ("pattern:{kit}_{label}_{n}", "x/nomatch.wav", "x", {}),
])
def test_label_parsers(spec, rel, label, extra, tmp_path):
    assert make_labeler(spec, tmp_path)(rel) == (label, extra)


def test_sidecar_labels(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label,bpm\na/1.wav,dog,120\nb.wav,cat,\n")
    lab = make_labeler("sidecar:labels.csv", tmp_path)
    assert lab("a/1.wav") == ("dog", {"bpm": 120})
    assert lab("b.wav") == ("cat", {})
    assert lab("c/other.wav") == ("c", {})
    (tmp_path / "l.json").write_text(json.dumps({"x.wav": "bird"}))
    assert make_labeler("sidecar:l.json", tmp_path)("x.wav") == ("bird", {})
    with pytest.raises(index.LibraryError, match="unknown label source"):
        make_labeler("nonsense", tmp_path)


def test_descriptors_of_synthetic_signals():
    t = np.arange(SR * 2) / SR
    tone = describe((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    assert abs(tone["spectral_centroid_hz"] - 440) < 30
    assert tone["loudness_dbfs"] == pytest.approx(-9.03, abs=0.2)
    assert tone["pitch_salience"] > 0.9
    silence = describe(np.zeros(SR, np.float32), SR)
    assert silence["loudness_dbfs"] <= -100
    noise = describe((0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    assert noise["spectral_centroid_hz"] > 3000 and noise["pitch_salience"] < 0.5
    assert noise["zero_crossing_rate"] > tone["zero_crossing_rate"] * 5
    clicks = np.zeros(SR * 6, np.float32)
    clicks[:: SR // 2] = 1.0  # 120 bpm click track
    d = describe(clicks, SR)
    assert d["tempo_bpm"] == pytest.approx(120, rel=0.05) and d["onset_rate_hz"] == pytest.approx(2, rel=0.25)


def test_descriptors_and_thumbnails_are_stored(data_dir, demo_folder):
    store = index.open_store(data_dir)
    index.index_folder(store, "demo", demo_folder / "pad", ["dsp"], data_dir=data_dir)
    rec = next(store.scroll(collection_name("demo", "dsp")))
    for key in ("loudness_dbfs", "spectral_centroid_hz", "spectral_bandwidth_hz", "zero_crossing_rate",
                "onset_rate_hz", "pitch_salience", "duration_s"):
        assert key in rec.payload
    assert (data_dir / "thumbs" / "demo" / f"{rec.id}.png").is_file()
    hits = index.search_id(store, "demo", "dsp", rec.id, k=10)
    assert len(hits) == 4
    store.close()


@pytest.mark.slow
def test_peak_memory_of_a_long_file_stays_bounded(tmp_path):
    """Index a 20-minute file in a subprocess; peak RSS must not grow with the file's length."""
    p = tmp_path / "long.flac"
    with sf.SoundFile(str(p), "w", samplerate=SR, channels=1, format="FLAC") as f:
        rng = np.random.default_rng(0)
        for _ in range(20):
            f.write((0.05 * rng.standard_normal(60 * SR)).astype(np.float32))
    code = f"""
import resource, sys
sys.path.insert(0, {str(ROOT)!r})
import index
from index.ingest import index_recording
import numpy as np, soundfile as sf
s = index.open_store({str(tmp_path / 'd')!r})
sf.write({str(tmp_path / 'warm.wav')!r}, np.zeros(3 * 22050, np.float32), 22050)
index_recording(s, "warm", {str(tmp_path / 'warm.wav')!r}, ["dsp"], data_dir={str(tmp_path / 'd')!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = index_recording(s, "long", {str(p)!r}, ["dsp"], data_dir={str(tmp_path / 'd')!r}, segment_s=1.0, hop_s=1.0)
print(r.added, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    added, before_kb, after_kb = map(int, out.stdout.split())
    assert added == 1200
    decoded_whole_mb = 20 * 60 * SR * 4 / 1e6  # 106 MB of float32 if decoded at once
    growth_mb = (after_kb - before_kb) / 1024
    assert growth_mb < decoded_whole_mb / 2, f"peak RSS grew {growth_mb:.0f} MB"
    print(f"peak RSS growth {growth_mb:.0f} MB (whole-file decode would be {decoded_whole_mb:.0f} MB)")


def test_search_filters_on_descriptor_ranges(data_dir, demo_folder):
    store = index.open_store(data_dir)
    index.index_folder(store, "demo", demo_folder, ["dsp"], data_dir=data_dir,
                       options=IngestOptions(thumbnails=False))
    q = next((demo_folder / "pad").glob("*.wav"))
    everything = index.search_file(store, "demo", "dsp", q, k=50, data_dir=data_dir)
    cen = sorted(h.payload["spectral_centroid_hz"] for h in everything)
    mid = cen[len(cen) // 2]
    low = index.search_file(store, "demo", "dsp", q, k=50, data_dir=data_dir,
                            ranges={"spectral_centroid_hz": (None, mid)})
    assert 0 < len(low) < len(everything)
    assert all(h.payload["spectral_centroid_hz"] <= mid for h in low)
    both = index.search_file(store, "demo", "dsp", q, k=50, data_dir=data_dir,
                             ranges={"spectral_centroid_hz": (mid, None), "loudness_dbfs": (-200, 0)})
    assert all(h.payload["spectral_centroid_hz"] >= mid for h in both)
    store.close()
