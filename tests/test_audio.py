"""Decoding: every common format, mono mixdown, resampling, one-line errors."""
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from embedders.audio import AudioError, decode, decode_for, info, resample

SR = 22050


def tone(freq=440.0, dur=1.0, sr=SR, amp=0.5):
    t = np.arange(int(dur * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave, sr):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("ext,fmt", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")])
def test_soundfile_formats(tmp_path, ext, fmt):
    p = tmp_path / f"a.{ext}"
    sf.write(str(p), tone(), SR, format=fmt)
    wave, sr = decode(p)
    assert sr == SR and wave.dtype == np.float32
    assert abs(len(wave) / sr - 1.0) < 0.1
    assert abs(peak_hz(wave, sr) - 440) < 5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("ext,codec", [("m4a", "aac"), ("aac", "aac")])
def test_ffmpeg_formats(tmp_path, ext, codec):
    src = tmp_path / "src.wav"
    sf.write(str(src), tone(dur=1.5), SR)
    out = tmp_path / f"a.{ext}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", codec, str(out)], check=True)
    wave, sr = decode(out, 16000)
    assert sr == 16000 and abs(len(wave) / sr - 1.5) < 0.15
    assert abs(peak_hz(wave, sr) - 440) < 5
    assert info(out).duration_s == pytest.approx(1.5, abs=0.15)


def test_mono_mixdown_and_resampling(tmp_path):
    left, right = tone(440), tone(1000)
    p = tmp_path / "stereo.wav"
    sf.write(str(p), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    wave, sr = decode(p)
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-6)
    waves = decode_for(p, {16000, 48000})
    assert set(waves) == {16000, 48000}
    assert len(waves[16000]) == pytest.approx(16000, abs=2)
    assert len(waves[48000]) == pytest.approx(48000, abs=2)
    down = resample(tone(440, sr=44100), 44100, 16000)
    assert abs(peak_hz(down, 16000) - 440) < 5


def test_nan_and_clipping_are_sanitised(tmp_path):
    x = tone()
    x[100:200] = np.nan
    x[300] = 4.0
    p = tmp_path / "nan.wav"
    sf.write(str(p), x, SR, subtype="FLOAT")
    wave, _ = decode(p)
    assert np.all(np.isfinite(wave)) and wave.max() <= 1.0


@pytest.mark.parametrize("content,expect", [
    (b"", "empty file"),
    (b"hello, this is not audio at all\n" * 20, "not an audio file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "not an audio file"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, expect):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError) as exc:
        decode(p)
    msg = str(exc.value)
    assert expect in msg and "bad.wav" in msg and "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        decode(tmp_path / "nope.wav")
