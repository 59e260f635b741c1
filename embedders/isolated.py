"""Decode audio in a child process, so a native crash in a decoder kills only the child.

libsndfile and ffmpeg's libraries are C code: a bug that a file triggers (a SIGSEGV, an abort, an
out-of-memory kill) would take the whole indexing run with it. `IsolatedDecoder` runs
`embedders.audio`'s `info`, `decode` and `stream_blocks` in one long-lived child process per
indexing run, one request at a time over a pipe (a file per request: the file that was being
read when the child died is the culprit). A dead child is replaced on the next request and the
caller gets `DecoderCrashed` (an `AudioError`) naming the signal; every other error is raised in
the caller as the child raised it, so messages are the in-process ones.

The child is a fresh interpreter (`subprocess`, never a fork of a process whose torch or
TensorFlow threads exist) talking over a socket pair; it imports only `embedders.audio` and what
decoding needs (not the app, as `multiprocessing`'s spawn and forkserver would by re-importing the
main module), takes the caller's environment and working folder, ignores SIGINT (Ctrl-C stops the
caller, which kills its child), and exits when the caller's end of the socket closes, so a caller
that dies leaves no decoder behind. Start-up is measured in benchmarks/ingest_scale.py.

Test hook: `$AUDIO_EXPLORER_DECODER_SETUP_HOOK=module.function` is imported and called in every
decoder child when it starts (like Ray's `worker_process_setup_hook`); the tests install a real
segfault for chosen files with it (`tests/decode_poison.py`). `$AUDIO_EXPLORER_DECODE_IN_PROCESS=1`
makes indexing decode in its own process as before (no isolation).
"""
from __future__ import annotations

import importlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator

import numpy as np

from .audio import AudioError, AudioInfo, printable

HOOK_ENV = "AUDIO_EXPLORER_DECODER_SETUP_HOOK"
IN_PROCESS_ENV = "AUDIO_EXPLORER_DECODE_IN_PROCESS"
_ROOT = str(Path(__file__).resolve().parent.parent)  # the folder holding the embedders package


def in_process_requested() -> bool:
    """True when `$AUDIO_EXPLORER_DECODE_IN_PROCESS` asks to decode without a child process."""
    return os.environ.get(IN_PROCESS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class DecoderCrashed(AudioError):
    """The decoder child died while reading a file (a native crash, an abort, an out-of-memory kill)."""

    def __init__(self, name: str, exitcode: int | None, after: str = ""):
        self.exitcode = exitcode
        super().__init__(f"{printable(name)}: {crash_reason(exitcode, after)}")


class DecoderClosed(AudioError):
    """The decoder was closed (the run is stopping) while a file was being read."""


def crash_reason(exitcode: int | None, after: str = "") -> str:
    """The one-line report of a file whose decoder child died with `exitcode` (negative: a signal)."""
    if exitcode is not None and exitcode < 0:
        try:
            how = f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"signal {-exitcode}"
        if exitcode == -signal.SIGKILL:
            how += ": killed, perhaps out of memory"
    elif exitcode is None:
        how = "its process vanished"
    else:
        how = f"exit code {exitcode}"
    return f"the decoder crashed on it ({how}){' after ' + after if after else ''}; skipped, nothing of it written"


# ---- the child side ----------------------------------------------------------------------------

def _error_reply(exc: BaseException) -> tuple:
    try:
        blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)  # some extension exceptions pickle but do not unpickle
        return ("err", blob, "", "")
    except Exception:
        return ("err", None, type(exc).__name__, str(exc))


def _child_main(fd: int) -> None:
    """Serve requests on the socket `fd` until it closes: ("info", path), ("decode", path, max_s),
    ("stream", path, block_s, max_s), ("next",), ("stop",), ("quit",)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C and kills this process
    conn = Connection(fd)
    from . import audio

    hook = os.environ.get(HOOK_ENV, "").strip()
    if hook:
        mod, _, fn = hook.rpartition(".")
        getattr(importlib.import_module(mod), fn)()
    blocks: Iterator | None = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the caller is gone
        op = msg[0]
        try:
            if op == "quit":
                return
            if op == "info":
                reply: tuple = ("ok", audio.info(msg[1]))
            elif op == "decode":
                wave, sr = audio.decode(msg[1], max_duration_s=msg[2])
                reply = ("wave", wave, sr)
            elif op == "stream":
                if blocks is not None:
                    blocks.close()
                blocks = audio.stream_blocks(msg[1], block_s=msg[2], max_duration_s=msg[3])
                reply = ("ok",)
            elif op == "next":
                try:
                    block, sr = next(blocks)
                    reply = ("wave", block, sr)
                except StopIteration:
                    blocks = None
                    reply = ("end",)
            elif op == "stop":
                if blocks is not None:
                    blocks.close()
                blocks = None
                reply = ("ok",)
            else:
                reply = _error_reply(ValueError(f"unknown decoder request {op!r}"))
        except Exception as exc:
            if op == "next":
                blocks = None
            reply = _error_reply(exc)
        try:
            if reply[0] == "wave":  # the samples go as raw bytes: no pickled copy on either side
                wave = np.ascontiguousarray(reply[1], np.float32)
                conn.send(("wave", wave.size, reply[2]))
                conn.send_bytes(memoryview(wave).cast("B"))
            else:
                conn.send(reply)
        except (BrokenPipeError, EOFError, OSError):
            return


# ---- the caller side ---------------------------------------------------------------------------

def _raise_remote(reply: tuple) -> None:
    _, blob, name, text = reply
    if blob is not None:
        raise pickle.loads(blob)
    raise type(name or "DecoderError", (Exception,), {})(text)  # same type name, same message


class IsolatedDecoder:
    """`info`, `decode` and `stream_blocks` of `embedders.audio`, run in a child process.

    One child serves the decoder's whole life (started on the first request, replaced after a
    crash). Thread-safe (one request at a time). Use as a context manager, or call `close()`."""

    def __init__(self, start: bool = False):
        self._proc = None
        self._conn = None
        self._lock = threading.RLock()  # re-entrant: a thread reading a stream may ask for info
        self._closed = False
        self.started = 0  # children started (1 + crashes, in a normal life)
        if start:  # start the child now: it imports while the caller does other work
            try:
                self._start()
            except AudioError:
                pass  # each request says why (one line per file)

    def __enter__(self) -> "IsolatedDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The current child's pid (None before the first request or after a crash)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            code = (f"import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import sys; "
                    f"sys.path.insert(0, {_ROOT!r}); from embedders.isolated import _child_main; "
                    f"_child_main({theirs.fileno()})")
            proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),),
                                    stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            ours.close()
            raise AudioError(f"cannot start the decoder process ({exc.strerror or exc})") from None
        finally:
            theirs.close()  # only the child holds its end: its death is EOF here
        self._proc, self._conn = proc, Connection(ours.detach())
        self.started += 1

    def _reap(self) -> int | None:
        """Wait for a dead (or dying) child and forget it; its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _call(self, msg: tuple, name: str, after: str = "") -> tuple:
        if self._closed:
            raise DecoderClosed(f"{printable(name)}: not decoded: indexing is stopping")
        if self._proc is None:
            self._start()
            if self._closed:  # closed by another thread meanwhile: no child may outlive close()
                self._proc.kill()
                self._reap()
                raise DecoderClosed(f"{printable(name)}: not decoded: indexing is stopping")
        try:
            self._conn.send(msg)
            reply = self._conn.recv()
            if reply[0] == "wave":
                buf = bytearray(4 * reply[1])
                if reply[1]:
                    self._conn.recv_bytes_into(buf)
                else:
                    self._conn.recv_bytes()
                reply = ("ok", np.frombuffer(buf, np.float32), reply[2])  # writable, owns its bytes
        except (EOFError, OSError):
            code = self._reap()
            if self._closed:
                raise DecoderClosed(f"{printable(name)}: not decoded: indexing is stopping") from None
            raise DecoderCrashed(name, code, after) from None
        if reply[0] == "err":
            _raise_remote(reply)
        return reply

    def info(self, path: str | os.PathLike) -> AudioInfo:
        """`embedders.audio.info` in the child."""
        with self._lock:
            return self._call(("info", str(path)), os.path.basename(path))[1]

    def decode(self, path: str | os.PathLike, max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
        """`embedders.audio.decode` (the file's own rate) in the child."""
        with self._lock:
            _, wave, sr = self._call(("decode", str(path), max_duration_s), os.path.basename(path))
            return wave, sr

    def stream_blocks(self, path: str | os.PathLike, block_s: float = 30.0,
                      max_duration_s: float | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """`embedders.audio.stream_blocks` in the child, one block per request (the child never
        runs ahead). Holds the decoder until the stream ends or is closed."""
        name = os.path.basename(path)
        with self._lock:
            self._call(("stream", str(path), block_s, max_duration_s), name)
            seconds, finished = 0.0, False
            try:
                while True:
                    reply = self._call(("next",), name, after=_hms(seconds) if seconds else "")
                    if reply[0] == "end":
                        finished = True
                        return
                    _, block, sr = reply
                    seconds += len(block) / sr
                    yield block, sr
            except Exception:
                finished = True  # the child ended the stream (an error) or died
                raise
            finally:
                if not finished and self._proc is not None and not self._closed:
                    try:
                        self._call(("stop",), name)
                    except Exception:
                        pass

    def close(self) -> None:
        """Stop the child (at once, even while another thread waits on it)."""
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        if self._lock.acquire(blocking=False):
            try:
                try:
                    self._conn.send(("quit",))
                except OSError:
                    pass
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                self._reap()
            finally:
                self._lock.release()
        else:  # a request is in flight in another thread: kill the child; that thread gets DecoderClosed
            try:
                proc.kill()
            except OSError:
                pass


def _hms(seconds: float) -> str:
    from .audio import _hms as hms

    return hms(seconds)
