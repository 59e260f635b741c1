"""Decode any common audio file to mono float32 at a chosen rate.

libsndfile (soundfile) reads wav/flac/ogg/mp3 directly; anything it cannot read
(m4a/aac, odd containers) goes through ffmpeg. Every failure is an `AudioError`
with a one-line message that names the file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mp4"}
)
MIN_SAMPLES = 1


class AudioError(ValueError):
    """A file that cannot be used as audio; the message is one line."""


@dataclass
class AudioInfo:
    """What a file holds, read without decoding it whole."""

    duration_s: float
    sample_rate: int
    channels: int


def is_audio_path(path: str | os.PathLike) -> bool:
    """True when the file name has a known audio extension."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path.name}: file not found")
    if not path.is_file():
        raise AudioError(f"{path.name}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes)")


def info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate and channel count of an audio file."""
    path = Path(path)
    _check_file(path)
    try:
        import soundfile as sf

        i = sf.info(str(path))
        if i.frames > 0 and i.samplerate > 0:
            return AudioInfo(i.frames / i.samplerate, int(i.samplerate), int(i.channels))
    except Exception:
        pass
    return _ffprobe(path)


def _ffprobe(path: Path) -> AudioInfo:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise AudioError(f"{path.name}: format not readable without ffmpeg (install ffmpeg)")
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels:format=duration", "-of", "default=nw=1", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    fields = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
    try:
        return AudioInfo(float(fields["duration"]), int(fields["sample_rate"]), int(fields["channels"]))
    except (KeyError, ValueError):
        raise AudioError(f"{path.name}: not an audio file or unsupported format") from None


def _sanitise(wave: np.ndarray, name: str) -> np.ndarray:
    if wave.size < MIN_SAMPLES:
        raise AudioError(f"{name}: no audio samples (empty stream)")
    wave = np.asarray(wave, np.float32)
    if not np.all(np.isfinite(wave)):
        wave = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(wave, -1.0, 1.0)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:
        return None
    if data.shape[0] == 0:
        return None
    return data.mean(axis=1), int(sr)


def _read_ffmpeg(path: Path, sr: int | None) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{path.name}: cannot decode this format without ffmpeg (install ffmpeg)")
    if sr is None:
        sr = info(path).sample_rate
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr),
           "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    res = subprocess.run(cmd, capture_output=True, timeout=3600)
    if res.returncode != 0 or not res.stdout:
        reason = _one_line(res.stderr.decode("utf-8", "replace")) or "no audio stream"
        if "Invalid data" in reason or "could not find codec" in reason.lower() or "no audio" in reason:
            reason = "not an audio file or unsupported format"
        raise AudioError(f"{path.name}: cannot decode ({reason})")
    return np.frombuffer(res.stdout, np.float32).copy(), sr


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a copy is returned unchanged if rates match."""
    if sr_in == sr_out:
        return np.asarray(wave, np.float32)
    import soxr

    return soxr.resample(np.asarray(wave, np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def decode(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 wave in [-1, 1] and its rate (`sample_rate` if given, else the file's)."""
    path = Path(path)
    _check_file(path)
    got = _read_soundfile(path)
    if got is None:
        wave, sr = _read_ffmpeg(path, sample_rate)
    else:
        wave, sr = got
    wave = _sanitise(wave, path.name)
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return wave, sr


def decode_for(path: str | os.PathLike, rates: set[int] | list[int]) -> dict[int, np.ndarray]:
    """Decode once and resample to each rate in `rates`: {rate: wave}."""
    wave, sr = decode(path)
    return {r: resample(wave, sr, r) for r in set(rates)}


def write_wav(path: str | os.PathLike, wave: np.ndarray, sample_rate: int) -> Path:
    """Write a mono float wave as 16-bit PCM wav."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1, 1), sample_rate, subtype="PCM_16")
    return path


def stream_blocks(path: str | os.PathLike, block_s: float = 30.0,
                  sample_rate: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks of about `block_s` seconds, never decoding the whole file at once.

    Yields (block, rate); the rate is the file's own unless `sample_rate` is given (ffmpeg path)."""
    path = Path(path)
    _check_file(path)
    import soundfile as sf

    try:
        meta = sf.info(str(path))
        ok = meta.frames > 0
    except Exception:
        ok = False
    if ok:
        n = max(1, int(block_s * meta.samplerate))
        any_block = False
        for block in sf.blocks(str(path), blocksize=n, dtype="float32", always_2d=True):
            any_block = True
            out = _sanitise(block.mean(axis=1), path.name)
            if sample_rate and sample_rate != meta.samplerate:
                out = resample(out, meta.samplerate, sample_rate)
            yield out, (sample_rate or meta.samplerate)
        if not any_block:
            raise AudioError(f"{path.name}: no audio samples (empty stream)")
        return
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{path.name}: cannot decode this format without ffmpeg (install ffmpeg)")
    sr = sample_rate or info(path).sample_rate
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr),
           "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n_bytes = max(4, int(block_s * sr) * 4)
    got = False
    try:
        while True:
            buf = proc.stdout.read(n_bytes)
            if not buf:
                break
            buf = buf[: len(buf) // 4 * 4]
            got = True
            yield _sanitise(np.frombuffer(buf, np.float32).copy(), path.name), sr
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        proc.wait()
    if not got:
        raise AudioError(f"{path.name}: cannot decode ({_one_line(err) or 'not an audio file or unsupported format'})")


def stream_segments(path: str | os.PathLike, segment_s: float, hop_s: float, block_s: float = 30.0
                    ) -> Iterator[tuple[float, float, np.ndarray, int]]:
    """Fixed-length segments (start_s, end_s, wave, rate) of a file, streamed block by block.

    Memory holds one block plus one segment. The last segment may be shorter than `segment_s`."""
    if segment_s <= 0 or hop_s <= 0:
        raise ValueError("segment and hop lengths must be positive")
    buf = np.zeros(0, np.float32)
    offset = 0  # sample index of buf[0]
    next_start = 0
    sr = None
    for block, sr in stream_blocks(path, block_s=max(block_s, segment_s * 2)):
        buf = np.concatenate([buf, block])
        seg, hop = int(round(segment_s * sr)), max(1, int(round(hop_s * sr)))
        while next_start + seg <= offset + len(buf):
            a = next_start - offset
            yield next_start / sr, (next_start + seg) / sr, buf[a:a + seg].copy(), sr
            next_start += hop
        drop = max(0, next_start - offset)
        buf = buf[drop:]
        offset += drop
    if sr is not None and len(buf) > 0 and (next_start == 0 or next_start - offset < len(buf)):
        a = next_start - offset
        tail = buf[a:]
        if tail.size >= int(0.1 * sr) or next_start == 0:
            yield next_start / sr, (next_start + tail.size) / sr, tail.copy(), sr


def trim_to_peak(wave: np.ndarray, sr: int, window_s: float) -> np.ndarray:
    """A `window_s` window of the wave centred on its peak amplitude (zero-padded when shorter,
    the peak still centred as far as the clip allows)."""
    n = int(round(window_s * sr))
    if n <= 0:
        return wave
    peak = int(np.argmax(np.abs(wave))) if wave.size else 0
    if wave.size >= n:
        start = int(np.clip(peak - n // 2, 0, wave.size - n))
        return wave[start:start + n].copy()
    out = np.zeros(n, np.float32)
    start = int(np.clip(n // 2 - peak, 0, n - wave.size))
    out[start:start + wave.size] = wave
    return out
