"""Test-only poison for the local engine's decoder child: files whose decoding kills it with a real SIGSEGV.

Installed in every decoder child process (`embedders.isolated`) through the documented hook
`AUDIO_EXPLORER_DECODER_SETUP_HOOK=tests.decode_poison.install`, set only in the environment of the
command under test; the test process and the command's own process decode normally. File names
choose the crash:

- `poison_segv*`: a segfault as soon as the file is decoded (a decoder bug in native code);
- `poison_long*`: a long recording streamed block by block that segfaults when its 4th 30 s block is
  read, i.e. after 90 s of it was handed over (more than one 64-segment write batch of 1 s segments);
- `slow*`: a decoder that hangs (sleeps 10 min) once it has written `<file>.decoding` beside the file,
  for a Ctrl-C test to interrupt.
"""
from __future__ import annotations

import ctypes
import time
from pathlib import Path

LONG_CRASH_BLOCK = 3  # blocks handed over before the crash


def _segfault() -> None:
    ctypes.string_at(0)  # reads address 0: the kernel sends SIGSEGV


def install() -> None:
    """Wrap `embedders.audio.decode` and `stream_blocks` in this (decoder child) process."""
    from embedders import audio

    real_decode, real_blocks = audio.decode, audio.stream_blocks

    def decode(path, *args, **kwargs):
        if Path(path).name.startswith("poison_segv"):
            _segfault()
        if Path(path).name.startswith("slow"):
            Path(f"{path}.decoding").write_text("")
            time.sleep(600)
        return real_decode(path, *args, **kwargs)

    def stream_blocks(path, *args, **kwargs):
        for i, block in enumerate(real_blocks(path, *args, **kwargs)):
            if i == LONG_CRASH_BLOCK and Path(path).name.startswith("poison_long"):
                _segfault()
            yield block

    audio.decode, audio.stream_blocks = decode, stream_blocks
