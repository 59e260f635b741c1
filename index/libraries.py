"""Libraries: named sets of indexed audio, their metadata kept in Qdrant itself.

A damaged collection (its files truncated or corrupt: `index.store.DamagedCollectionError`)
never takes the others down: `library_counts` gives None for its model, `library_damage` the
one-line message, which names the library, the model and the fix (rebuild it from its audio
with `index ... --rebuild`); `open_store` words every such error that way.
"""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .naming import (META_COLLECTION, _model_part, check_library_name, collection_name, frames_collection_name,
                     library_prefix, meta_point_id, parse_collection_name)
from . import store as store_module
from .store import DamagedCollectionError, Store, StoreError


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
        try:
            target = (root / rel_path).resolve()
        except RuntimeError:  # Python 3.11: a symlink loop
            raise LibraryError(f"path '{rel_path}' is a symlink loop") from None
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


def library_counts(store: Store, name: str) -> dict[str, int | None]:
    """{model: number of clips} for each model of the library; None where the model's data is
    damaged (`library_damage` says how to rebuild it)."""
    return library_status(store, name)[0]


def library_damage(store: Store, name: str) -> dict[str, str]:
    """{model: one-line message with the fix} for each model of the library whose clip collection
    (or, when already found so in this process, frames collection) is damaged."""
    return library_status(store, name)[1]


def library_status(store: Store, name: str) -> tuple[dict[str, int | None], dict[str, str]]:
    """(counts, damage) of a library's models: see `library_counts` and `library_damage`.
    Opens each model's clip collection (a count); never raises for a damaged one."""
    lib = get_library(store, name)
    counts: dict[str, int | None] = {}
    damage: dict[str, str] = {}
    for model in lib.models:
        coll = collection_name(name, model)
        try:
            counts[model] = store.count(coll) if store.has_collection(coll) else 0
            known = store.damaged(frames_collection_name(name, model))
            if known is not None:
                damage[model] = str(known)
        except DamagedCollectionError as exc:
            counts[model] = None
            damage[model] = str(exc)
    return counts, damage


def describe_damage(store: Store, collection: str, detail: str) -> str:
    """The one-line message for a damaged collection: whose it is and how to repair it."""
    where = getattr(store, "root", None)
    folder = Path(where) / collection if where is not None else collection
    if collection == META_COLLECTION:
        return (f"the list of libraries ({collection}) is damaged ({detail}): move the folder {folder} away, "
                f"then index each library again")
    parsed = parse_collection_name(collection)
    if parsed is None:
        return f"collection {collection!r}: its Qdrant data is damaged ({detail})"
    library, part, kind = parsed
    if kind == "edits":
        return (f"library '{library}': its record of user edits ({collection}) is damaged ({detail}): delete "
                f"the folder {folder} to go on without it (the tags and labels already in the model "
                f"collections stay)")
    if kind == "aspect":
        return (f"library '{library}': its {part} aspect vectors ({collection}) are damaged ({detail}): delete the "
                f"folder {folder} and index the library again to recompute them (nothing else is lost)")
    root, model = "FOLDER", part
    try:
        recs = store.retrieve(META_COLLECTION, [meta_point_id(library)]) if store.has_collection(META_COLLECTION) else []
        if recs:
            root = shlex.quote(str(recs[0].payload.get("root") or "FOLDER"))
            model = next((m for m in recs[0].payload.get("models") or [] if _model_part(m) == part), part)
    except (StoreError, ValueError):
        pass
    what = "its Qdrant data" if kind == "clips" else "its frame trajectories' Qdrant data"
    return (f"library '{library}' model '{model}': {what} is damaged ({detail}): rebuild it from its audio with "
            f"`python app.py index {root} --library {library} --models {shlex.quote(model)} --rebuild`")


def open_store(data_dir: str | os.PathLike, url: str | None = None, api_key: str | None = None) -> Store:
    """`index.store.open_store`, whose damaged-collection errors name the library, the model and the fix."""
    store = store_module.open_store(Path(data_dir), url, api_key)
    store.describe_damage = lambda collection, detail: describe_damage(store, collection, detail)
    return store


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
    from .adapt import drop_adaptation

    drop_adaptation(store, name, model)
    lib.models = [m for m in lib.models if m != model]
    save_library(store, lib)
