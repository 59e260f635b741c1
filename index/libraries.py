"""Libraries: named sets of indexed audio, their metadata kept in Qdrant itself."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .naming import (META_COLLECTION, check_library_name, collection_name, frames_collection_name,
                     library_prefix, meta_point_id)
from .store import Store


class LibraryError(ValueError):
    """A user-facing problem with a library (unknown, empty, bad name)."""


class UnknownLibraryError(LibraryError):
    """No library of that name."""


@dataclass
class Library:
    """One indexed set of audio."""

    name: str
    root: str  # absolute folder the relative paths are under
    models: list[str] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0
    kind: str = "folder"  # "folder" | "uploads" | "recording"

    def resolve(self, rel_path: str) -> Path:
        """Absolute path of a clip, refusing anything outside the library root."""
        root = Path(self.root).resolve()
        target = (root / rel_path).resolve()
        if target != root and root not in target.parents:
            raise LibraryError(f"path '{rel_path}' is outside library '{self.name}'")
        return target


def _ensure_meta(store: Store) -> None:
    if not store.has_collection(META_COLLECTION):
        store.create_collection(META_COLLECTION, 1, indexes={"name": "keyword"})


def save_library(store: Store, lib: Library) -> None:
    """Create or update a library's metadata point."""
    check_library_name(lib.name)
    _ensure_meta(store)
    lib.updated = time.time()
    if not lib.created:
        lib.created = lib.updated
    store.upsert(META_COLLECTION, [meta_point_id(lib.name)], np.ones((1, 1), np.float32), [asdict(lib)])


def get_library(store: Store, name: str) -> Library:
    """The library `name`; LibraryError if unknown."""
    check_library_name(name)
    if store.has_collection(META_COLLECTION):
        recs = store.retrieve(META_COLLECTION, [meta_point_id(name)])
        if recs:
            p = recs[0].payload
            return Library(**{k: p[k] for k in Library.__dataclass_fields__ if k in p})
    known = ", ".join(lib.name for lib in list_libraries(store)) or "none yet"
    raise UnknownLibraryError(f"unknown library '{name}' (libraries: {known})")


def list_libraries(store: Store) -> list[Library]:
    """Every library, by name."""
    if not store.has_collection(META_COLLECTION):
        return []
    libs = [Library(**{k: r.payload[k] for k in Library.__dataclass_fields__ if k in r.payload})
            for r in store.scroll(META_COLLECTION)]
    return sorted(libs, key=lambda lib: lib.name)


def library_counts(store: Store, name: str) -> dict[str, int]:
    """{model: number of clips} for each model of the library."""
    lib = get_library(store, name)
    out = {}
    for model in lib.models:
        coll = collection_name(name, model)
        out[model] = store.count(coll) if store.has_collection(coll) else 0
    return out


def delete_library(store: Store, name: str) -> list[str]:
    """Drop every collection of the library and its metadata; returns the dropped collections."""
    get_library(store, name)
    prefix = library_prefix(name)
    dropped = [c for c in store.list_collections() if c.startswith(prefix)]
    for coll in dropped:
        store.delete_collection(coll)
    store.delete(META_COLLECTION, [meta_point_id(name)])
    return dropped


def delete_model(store: Store, name: str, model: str) -> None:
    """Drop one model's collections from a library."""
    lib = get_library(store, name)
    store.delete_collection(frames_collection_name(name, model))
    store.delete_collection(collection_name(name, model))
    lib.models = [m for m in lib.models if m != model]
    save_library(store, lib)
