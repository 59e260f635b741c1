"""Decode any common audio file to mono float32 at a chosen rate.

libsndfile (soundfile) reads wav/flac/ogg/mp3 directly; anything it cannot read
(m4a/aac, odd containers) goes through ffmpeg. Every failure is an `AudioError`
with a one-line message that names the file.

Guards against hostile files: a whole file is decoded into memory only up to
`decode_limit_s()` seconds (`$AUDIO_EXPLORER_MAX_DECODE_S`, default 10 min; longer files are
streamed, see `stream_blocks`), a streamed file only up to `duration_limit_s()`
(`$AUDIO_EXPLORER_MAX_DURATION_S`, default 4 h): a few KB of FLAC can claim hours of audio.
Sample rates outside 1 kHz..768 kHz are refused, multichannel audio is mixed down block by
block, and truncated WAV/FLAC files (the header promises more than the file holds) are refused.
Only regular files are read: a FIFO, socket or device is refused before anything opens it, and
libsndfile reads through a file object opened with O_NONBLOCK and checked with fstat (`open_regular`),
so a file swapped for a FIFO after the check cannot block either. ffmpeg and ffprobe run with a
timeout (`$AUDIO_EXPLORER_FFMPEG_TIMEOUT_S`, default 120 s without output) and their stderr goes
to a file, never a pipe that could fill up.
"""
from __future__ import annotations

import errno
import os
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mp4"}
)
MIN_SAMPLES = 1
MIN_RATE, MAX_RATE = 1_000, 768_000
MAX_DECODE_ENV, MAX_DURATION_ENV = "AUDIO_EXPLORER_MAX_DECODE_S", "AUDIO_EXPLORER_MAX_DURATION_S"
FFMPEG_TIMEOUT_ENV = "AUDIO_EXPLORER_FFMPEG_TIMEOUT_S"
DEFAULT_FFMPEG_TIMEOUT_S = 120.0  # ffmpeg / ffprobe silent this long (no output, not finished): killed
DEFAULT_MAX_DECODE_S = 600.0  # whole-file decodes (clips, search queries): 10 minutes
DEFAULT_MAX_DURATION_S = 4 * 3600.0  # streamed files (long recordings): 4 hours
_READ_BLOCK = 1 << 16  # frames per read when decoding whole files
_UNKNOWN_FRAMES = 1 << 60  # libsndfile's frame count for a stream of unknown length (INT64_MAX)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message is one line."""


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, socket, device or folder): never read."""


@dataclass
class AudioInfo:
    """What a file holds, read without decoding it whole."""

    duration_s: float  # inf when the header does not say (a stream of unknown length)
    sample_rate: int
    channels: int


def is_audio_path(path: str | os.PathLike) -> bool:
    """True when the file name has a known audio extension."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def decode_limit_s() -> float:
    """Longest audio decoded whole into memory (seconds; `$AUDIO_EXPLORER_MAX_DECODE_S`)."""
    return _env_seconds(MAX_DECODE_ENV, DEFAULT_MAX_DECODE_S)


def duration_limit_s() -> float:
    """Longest file accepted at all, streamed (seconds; `$AUDIO_EXPLORER_MAX_DURATION_S`)."""
    return _env_seconds(MAX_DURATION_ENV, DEFAULT_MAX_DURATION_S)


def ffmpeg_timeout_s() -> float:
    """How long ffmpeg / ffprobe may run without output before being killed (`$AUDIO_EXPLORER_FFMPEG_TIMEOUT_S`)."""
    return _env_seconds(FFMPEG_TIMEOUT_ENV, DEFAULT_FFMPEG_TIMEOUT_S)


def file_kind(mode: int) -> str:
    """What a file of this st_mode is, in words ("a named pipe (FIFO)", "a socket", ...)."""
    for test, words in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return words
    return "of an unknown kind"


def not_regular_reason(mode: int) -> str:
    """The one-line reason a non-regular file is skipped."""
    return f"not a regular file ({file_kind(mode)}): not read"


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """A regular file opened for reading (binary). Opened with O_NONBLOCK, so a FIFO or device
    (even one swapped in after a check) never blocks the open, then checked with fstat:
    NotRegularFile (an OSError) unless it is a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, not_regular_reason(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def printable(text: str) -> str:
    """`text` with control characters (newlines, tabs, ...) escaped, for one-line messages."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _name(path: Path) -> str:
    return printable(path.name)


def _hms(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _check_rate(sr: int, path: Path) -> None:
    if not MIN_RATE <= int(sr) <= MAX_RATE:
        raise AudioError(f"{_name(path)}: unsupported sample rate {int(sr)} Hz "
                         f"(accepted: {MIN_RATE} to {MAX_RATE} Hz)")


def _too_long(path: Path, seconds: float, limit: float, what: str) -> AudioError:
    return AudioError(f"{_name(path)}: {_hms(seconds)} of audio is over the {_hms(limit)} limit {what}")


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _check_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{_name(path)}: file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioError(f"{_name(path)}: symlink loop (not followed)") from None
        raise AudioError(f"{_name(path)}: cannot read file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(f"{_name(path)}: {not_regular_reason(st.st_mode)}")
    if st.st_size == 0:
        raise AudioError(f"{_name(path)}: empty file (0 bytes)")


def _open_audio(path: Path) -> BinaryIO:
    """`open_regular`, its failures as AudioError."""
    try:
        return open_regular(path)
    except NotRegularFile as exc:
        raise AudioError(f"{_name(path)}: {exc.strerror}") from None
    except FileNotFoundError:
        raise AudioError(f"{_name(path)}: file not found") from None
    except OSError as exc:
        raise AudioError(f"{_name(path)}: cannot read file ({exc.strerror or exc})") from None


def _sf_info(path: Path):
    """libsndfile's header info, read through `open_regular` (never blocks on a FIFO)."""
    import soundfile as sf

    with _open_audio(path) as fh:
        return sf.info(fh)


def info(path: str | os.PathLike) -> AudioInfo:
    """Duration, rate and channel count of an audio file."""
    path = Path(path)
    _check_file(path)
    try:
        i = _sf_info(path)
        if i.frames > 0 and i.samplerate > 0:
            duration = i.frames / i.samplerate if i.frames < _UNKNOWN_FRAMES else float("inf")
            return AudioInfo(duration, int(i.samplerate), int(i.channels))
    except Exception:
        pass
    return _ffprobe(path)


def _ffprobe(path: Path) -> AudioInfo:
    exe = shutil.which("ffprobe")
    if exe is None:
        raise AudioError(f"{_name(path)}: format not readable without ffmpeg (install ffmpeg)")
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels:format=duration", "-of", "default=nw=1", str(path)]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=ffmpeg_timeout_s())
    except subprocess.TimeoutExpired:
        raise AudioError(f"{_name(path)}: ffprobe gave no answer within {ffmpeg_timeout_s():g} s "
                         f"(${FFMPEG_TIMEOUT_ENV}); skipped") from None
    fields = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
    try:
        duration = float("inf") if fields.get("duration") == "N/A" else float(fields["duration"])
        return AudioInfo(duration, int(fields["sample_rate"]), int(fields["channels"]))
    except (KeyError, ValueError):
        raise AudioError(f"{_name(path)}: not an audio file or unsupported format") from None


def _sanitise(wave: np.ndarray, name: str) -> np.ndarray:
    if wave.size < MIN_SAMPLES:
        raise AudioError(f"{name}: no audio samples (empty stream)")
    wave = np.asarray(wave, np.float32)
    if not np.all(np.isfinite(wave)):
        wave = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(wave, -1.0, 1.0)


_WAV_DATA_RE = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.M)


def _truncation(path: Path, meta) -> str:
    """A reason when a WAV or FLAC header promises more audio than the file holds, else ""."""
    fmt = str(getattr(meta, "format", "")).upper()
    if fmt in ("WAV", "WAVEX", "RF64", "W64"):
        m = _WAV_DATA_RE.search(getattr(meta, "extra_info", "") or "")
        if m:
            claimed, present = int(m.group(1)), int(m.group(2))
            # 0 and 0xFFFFFFFF-like sizes are placeholders written by streaming encoders
            if 0 < claimed < 0x7FFFFFF0 and present < 0.99 * claimed:
                return f"truncated file: the header promises {claimed} bytes of audio, {present} are there"
    return ""


def _check_flac_length(path: Path, decoded_s: float) -> None:
    """AudioError when libsndfile reads a FLAC header whose length the decoded audio falls short of."""
    try:
        meta = _sf_info(path)
    except Exception:
        return
    if str(meta.format).upper() == "FLAC" and 0 < meta.frames < _UNKNOWN_FRAMES and meta.samplerate > 0:
        promised = meta.frames / meta.samplerate
        if decoded_s < 0.99 * promised:
            raise AudioError(f"{_name(path)}: truncated file: the header promises {_hms(promised)}, "
                             f"{_hms(decoded_s)} decodes")


def _read_soundfile(path: Path, max_s: float) -> tuple[np.ndarray, int] | None:
    """(mono wave, rate) through libsndfile, or None when libsndfile cannot read the file."""
    import soundfile as sf

    with _open_audio(path) as fh:
        return _read_soundfile_from(fh, path, max_s, sf)


def _read_soundfile_from(fh: BinaryIO, path: Path, max_s: float, sf) -> tuple[np.ndarray, int] | None:
    try:
        meta = sf.info(fh)
    except Exception:
        return None
    if meta.frames <= 0 or meta.samplerate <= 0 or meta.frames >= _UNKNOWN_FRAMES:
        return None  # unknown length: libsndfile fails at its end, ffmpeg reads it whole
    _check_rate(meta.samplerate, path)
    reason = _truncation(path, meta)
    if reason:
        raise AudioError(f"{_name(path)}: {reason}")
    sr = int(meta.samplerate)
    limit = int(max_s * sr)
    if meta.frames > limit:
        raise _too_long(path, meta.frames / sr, max_s, "for decoding a whole file (long files are streamed)")
    parts, n = [], 0
    try:
        fh.seek(0)
        with sf.SoundFile(fh) as f:
            for block in f.blocks(blocksize=_READ_BLOCK, dtype="float32", always_2d=True):
                parts.append(block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1))
                n += block.shape[0]
                if n > limit:  # the header under-stated the length
                    raise _too_long(path, n / sr, max_s, "for decoding a whole file (long files are streamed)")
    except AudioError:
        raise
    except Exception as exc:
        if n == 0:
            return None  # ffmpeg may still read it (and says why if not)
        raise AudioError(f"{_name(path)}: corrupt or truncated file after {_hms(n / sr)} "
                         f"({printable(_one_line(str(exc))) or type(exc).__name__})") from None
    if n == 0:
        return None
    if str(meta.format).upper() == "FLAC" and n < 0.99 * meta.frames:
        raise AudioError(f"{_name(path)}: truncated file: the header promises {_hms(meta.frames / sr)}, "
                         f"{_hms(n / sr)} decodes")
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), sr


def _ffmpeg_cmd(exe: str, path: Path, sr: int) -> list[str]:
    return [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr),
            "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]


def _ffmpeg_reason(err: str) -> str:
    reason = _one_line(err) or "no audio stream"
    if "Invalid data" in reason or "could not find codec" in reason.lower() or "no audio" in reason \
            or "does not contain any stream" in reason:
        reason = "not an audio file or unsupported format"
    return printable(reason)


class _FFmpeg:
    """An ffmpeg decoding subprocess: its stdout read with a stall timeout (`ffmpeg_timeout_s`:
    killed when silent that long), its stderr written to a file (a pipe could fill up and
    deadlock it)."""

    def __init__(self, exe: str, path: Path, sr: int):
        self.path = path
        self.timeout = ffmpeg_timeout_s()
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(_ffmpeg_cmd(exe, path, sr), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=self.err)
        except OSError as exc:
            self.err.close()
            raise AudioError(f"{_name(path)}: cannot run ffmpeg ({exc.strerror or exc})") from None

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the stream)."""
        fd = self.proc.stdout.fileno()
        out = bytearray()
        while len(out) < n:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                self.proc.kill()
                raise AudioError(f"{_name(self.path)}: ffmpeg gave no output for {self.timeout:g} s "
                                 f"(${FFMPEG_TIMEOUT_ENV}); skipped")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def kill(self) -> None:
        self.proc.kill()

    def close(self) -> str:
        """Stop ffmpeg (if it is still running) and return what it wrote to stderr."""
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            size = self.err.seek(0, os.SEEK_END)
            self.err.seek(max(0, size - 8192))
            return self.err.read().decode("utf-8", "replace")
        finally:
            self.err.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def _read_ffmpeg(path: Path, sr: int | None, max_s: float) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{_name(path)}: cannot decode this format without ffmpeg (install ffmpeg)")
    if sr is None:
        sr = info(path).sample_rate
    _check_rate(sr, path)
    limit_bytes = int(max_s * sr) * 4
    proc = _FFmpeg(exe, path, sr)
    data = bytearray()
    try:
        while True:
            buf = proc.read(1 << 20)
            if not buf:
                break
            data += buf
            if len(data) > limit_bytes:  # a bomb: stop decoding at once
                proc.kill()
                raise _too_long(path, len(data) / 4 / sr, max_s,
                                "for decoding a whole file (long files are streamed)")
    finally:
        err = proc.close()
    del data[len(data) // 4 * 4:]
    if proc.returncode != 0 or not data:
        raise AudioError(f"{_name(path)}: cannot decode ({_ffmpeg_reason(err)})")
    return np.frombuffer(data, np.float32), sr  # a writable array over the bytearray, no copy


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality); a copy is returned unchanged if rates match."""
    if sr_in == sr_out:
        return np.asarray(wave, np.float32)
    import soxr

    return soxr.resample(np.asarray(wave, np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def decode(path: str | os.PathLike, sample_rate: int | None = None,
           max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 wave in [-1, 1] and its rate (`sample_rate` if given, else the file's).

    Files longer than `max_duration_s` (default `decode_limit_s()`) are refused with an AudioError
    before they fill memory; stream long files with `stream_blocks` / `stream_segments`."""
    path = Path(path)
    _check_file(path)
    max_s = float(max_duration_s or decode_limit_s())
    got = _read_soundfile(path, max_s)
    if got is None:
        wave, sr = _read_ffmpeg(path, sample_rate, max_s)
        _check_flac_length(path, wave.size / sr)
    else:
        wave, sr = got
    wave = _sanitise(wave, _name(path))
    if sample_rate is not None and sr != sample_rate:
        wave, sr = resample(wave, sr, sample_rate), sample_rate
    return wave, sr


def decode_for(path: str | os.PathLike, rates: set[int] | list[int]) -> dict[int, np.ndarray]:
    """Decode once and resample to each rate in `rates`: {rate: wave}."""
    wave, sr = decode(path)
    return {r: resample(wave, sr, r) for r in set(rates)}


def stream_blocks(path: str | os.PathLike, block_s: float = 30.0, sample_rate: int | None = None,
                  max_duration_s: float | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks of about `block_s` seconds, never decoding the whole file at once.

    Yields (block, rate); the rate is the file's own unless `sample_rate` is given (ffmpeg path).
    A file longer than `max_duration_s` (default `duration_limit_s()`) is an AudioError: at once
    when its header says so, else when the stream passes the limit. A read error part-way
    (a truncated or corrupt file) is an AudioError too."""
    path = Path(path)
    _check_file(path)
    limit_s = float(max_duration_s or duration_limit_s())
    import soundfile as sf

    fh = _open_audio(path)
    try:
        try:
            meta = sf.info(fh)
            ok = 0 < meta.frames < _UNKNOWN_FRAMES and meta.samplerate > 0  # unknown length: ffmpeg below
        except Exception:
            ok = False
        if ok:
            yield from _stream_soundfile(fh, path, meta, block_s, sample_rate, limit_s, sf)
            return
    finally:
        fh.close()
    yield from _stream_ffmpeg(path, block_s, sample_rate, limit_s)


def _stream_soundfile(fh: BinaryIO, path: Path, meta, block_s: float, sample_rate: int | None,
                      limit_s: float, sf) -> Iterator[tuple[np.ndarray, int]]:
    _check_rate(meta.samplerate, path)
    reason = _truncation(path, meta)
    if reason:
        raise AudioError(f"{_name(path)}: {reason}")
    if meta.frames / meta.samplerate > limit_s:
        raise _too_long(path, meta.frames / meta.samplerate, limit_s, "for one file")
    n = max(1, int(block_s * meta.samplerate))
    done = 0
    try:
        fh.seek(0)
        for block in sf.blocks(fh, blocksize=n, dtype="float32", always_2d=True):
            done += block.shape[0]
            if done > limit_s * meta.samplerate:
                raise _too_long(path, done / meta.samplerate, limit_s, "for one file")
            out = _sanitise(block[:, 0] if block.shape[1] == 1 else block.mean(axis=1), _name(path))
            if sample_rate and sample_rate != meta.samplerate:
                out = resample(out, meta.samplerate, sample_rate)
            yield out, (sample_rate or meta.samplerate)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile gives up part-way: truncated or corrupt
        where = f" after {_hms(done / meta.samplerate)}" if done else ""
        raise AudioError(f"{_name(path)}: corrupt or truncated file{where} "
                         f"({printable(_one_line(str(exc))) or type(exc).__name__})") from None
    if done == 0:
        raise AudioError(f"{_name(path)}: no audio samples (empty stream)")
    if str(meta.format).upper() == "FLAC" and done < 0.99 * meta.frames:
        raise AudioError(f"{_name(path)}: truncated file: the header promises "
                         f"{_hms(meta.frames / meta.samplerate)}, {_hms(done / meta.samplerate)} decodes")


def _stream_ffmpeg(path: Path, block_s: float, sample_rate: int | None,
                   limit_s: float) -> Iterator[tuple[np.ndarray, int]]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(f"{_name(path)}: cannot decode this format without ffmpeg (install ffmpeg)")
    sr = sample_rate or info(path).sample_rate
    _check_rate(sr, path)
    proc = _FFmpeg(exe, path, sr)
    n_bytes = max(4, int(block_s * sr) * 4)
    got, total = False, 0
    err = ""
    try:
        while True:
            buf = proc.read(n_bytes)
            if not buf:
                break
            buf = buf[: len(buf) // 4 * 4]
            got = True
            total += len(buf) // 4
            if total > limit_s * sr:
                proc.kill()
                raise _too_long(path, total / sr, limit_s, "for one file")
            yield _sanitise(np.frombuffer(buf, np.float32).copy(), _name(path)), sr
    finally:
        err = proc.close()
    if not got:
        raise AudioError(f"{_name(path)}: cannot decode ({_ffmpeg_reason(err)})")


def stream_segments(path: str | os.PathLike, segment_s: float, hop_s: float, block_s: float = 30.0,
                    max_duration_s: float | None = None,
                    blocks=None) -> Iterator[tuple[float, float, np.ndarray, int]]:
    """Fixed-length segments (start_s, end_s, wave, rate) of a file, streamed block by block.

    Memory holds one block plus one segment. The last segment may be shorter than `segment_s`.
    `blocks`: what streams the blocks, called like `stream_blocks` (the default), e.g. a decoder
    in a child process (`embedders.isolated.IsolatedDecoder.stream_blocks`)."""
    if segment_s <= 0 or hop_s <= 0:
        raise ValueError("segment and hop lengths must be positive")
    buf = np.zeros(0, np.float32)
    offset = 0  # sample index of buf[0]
    next_start = 0
    sr = None
    for block, sr in (blocks or stream_blocks)(path, block_s=max(block_s, segment_s * 2),
                                               max_duration_s=max_duration_s):
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
