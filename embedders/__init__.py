"""Audio -> vectors: the model registry.

Listing models is cheap (no torch/TF import); weights load on `load(name)`.
Each family module exposes `specs(data_dir) -> list[ModelSpec]` (models it lists) and may
expose `resolve(name, data_dir) -> ModelSpec | None` for parametric names
(e.g. `wav2vec2-base-l6`).
"""
from __future__ import annotations

from .cpu import pin_numba_target

pin_numba_target()  # before librosa / umap-learn import numba

import importlib
import threading
from pathlib import Path

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, l2_normalise
from .paths import data_dir as resolve_data_dir

FAMILY_MODULES = ["dsp", "musicnn", "hf", "tfhub", "crepe", "birdnet", "aisfx", "fusion", "trained"]

_cache: dict[tuple[str, str], Embedder] = {}
_lock = threading.RLock()  # re-entrant: a fused model loads its parts inside load()

__all__ = [
    "Availability", "Embedder", "EmbedderError", "Frames", "ModelSpec", "l2_normalise",
    "available", "get_spec", "load", "specs",
]


def _families():
    for mod in FAMILY_MODULES:
        yield importlib.import_module(f"{__name__}.{mod}")


def specs(data_dir: str | Path | None = None) -> list[ModelSpec]:
    """Every listed model of every family."""
    root = resolve_data_dir(data_dir)
    out: list[ModelSpec] = []
    for fam in _families():
        out.extend(s for s in fam.specs(root) if s.listed)
    return out


def get_spec(name: str, data_dir: str | Path | None = None) -> ModelSpec:
    """The registry entry for `name`; EmbedderError (one line) if unknown."""
    root = resolve_data_dir(data_dir)
    for fam in _families():
        for s in fam.specs(root):
            if s.name == name:
                return s
        resolve = getattr(fam, "resolve", None)
        if resolve is not None:
            s = resolve(name, root)
            if s is not None:
                return s
    known = ", ".join(s.name for s in specs(root))
    raise EmbedderError(f"unknown model '{name}' (known: {known})")


def check(name: str, data_dir: str | Path | None = None) -> Availability:
    """Availability of one model (ready / downloadable / unavailable and why)."""
    root = resolve_data_dir(data_dir)
    s = get_spec(name, root)
    if s.check is None:
        return Availability(s.name, s.family, "ready", dim=s.dim, description=s.description)
    return s.check(data_dir=root)


def available(data_dir: str | Path | None = None) -> list[Availability]:
    """Every listed model with whether it can run here and, if not, why."""
    root = resolve_data_dir(data_dir)
    out = []
    for s in specs(root):
        if s.check is None:
            out.append(Availability(s.name, s.family, "ready", dim=s.dim, description=s.description))
        else:
            out.append(s.check(data_dir=root))
    return out


def load(name: str, data_dir: str | Path | None = None) -> Embedder:
    """Build (once per process) and return the embedder `name`; EmbedderError if it cannot run."""
    root = resolve_data_dir(data_dir)
    key = (name, str(root))
    with _lock:
        if key in _cache:
            return _cache[key]
        s = get_spec(name, root)
        if s.check is not None:
            av = s.check(data_dir=root)
            if av.status == "unavailable":
                raise EmbedderError(f"model '{name}' is unavailable: {av.reason}")
        emb = s.build(data_dir=root)
        _cache[key] = emb
        return emb


def forget(name: str | None = None) -> None:
    """Drop cached embedders (all, or those named `name`), e.g. after retraining."""
    with _lock:
        for key in [k for k in _cache if name is None or k[0] == name]:
            del _cache[key]
