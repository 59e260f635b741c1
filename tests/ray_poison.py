"""Test-only poison for the Ray engine's workers: files that kill the worker process on every try.

Installed in every Ray worker process of the test cluster with Ray's own
`runtime_env={"worker_process_setup_hook": "tests.ray_poison.install"}`; the test process itself is
untouched. The file names choose the crash:

- `poison_segv*`: a real SIGSEGV while it is decoded (as a decoder bug in native code would give);
- `poison_exit*`: `os._exit` while its batch is embedded (a model crashing in native code);
- `poison_long*`: a long file whose worker exits after 66 segments were embedded (past one
  64-segment write batch), so a crash part-way through a long file is covered.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path


def _segfault() -> None:
    ctypes.string_at(0)  # reads address 0: the kernel sends SIGSEGV


def install() -> None:
    """Wrap the local engine's decode, embed and segment stream (what the Ray actors run)."""
    from index import ingest

    real_decode, real_embed, real_stream = ingest.decode, ingest._embed_and_write, ingest.stream_segments

    def decode(path, *args, **kwargs):
        if Path(path).name.startswith("poison_segv"):
            _segfault()
        return real_decode(path, *args, **kwargs)

    def embed(store, library, emb, items, trim):
        if any(it.path.name.startswith("poison_exit") for it in items):
            os._exit(3)
        return real_embed(store, library, emb, items, trim)

    def stream(path, *args, **kwargs):
        for i, seg in enumerate(real_stream(path, *args, **kwargs)):
            if i == 66 and Path(path).name.startswith("poison_long"):
                os._exit(4)
            yield seg

    ingest.decode, ingest._embed_and_write, ingest.stream_segments = decode, embed, stream
