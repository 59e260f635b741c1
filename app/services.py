"""What both faces (UI and CLI) call: one object holding the store and the map cache."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

import index
import projections
from index import classes as class_queries
from index.libraries import Library

DEMO_LIBRARY = "demo"
DEMO_MODELS = ("dsp", "vgg-msd", "musicnn-msd")


class ServiceError(ValueError):
    """A one-line problem to show the user."""


class Services:
    """The app's handle on its data folder: Qdrant store, map cache, models."""

    def __init__(self, data_dir: str | os.PathLike | None = None, store: index.Store | None = None):
        self.data_dir: Path = index.data_dir(data_dir)
        self._store = store
        self._lock = threading.Lock()
        self.maps = projections.MapCache(self.data_dir / "maps")
        self._fitted: dict[str, object] = {}

    @property
    def store(self) -> index.Store:
        """The Qdrant store (opened on first use)."""
        with self._lock:
            if self._store is None:
                self._store = index.open_store(self.data_dir)
            return self._store

    # ---- libraries and models -------------------------------------------------------
    def libraries(self) -> list[Library]:
        """Every library."""
        return index.list_libraries(self.store)

    def library(self, name: str) -> Library:
        """One library (LibraryError if unknown)."""
        return index.get_library(self.store, name)

    def library_table(self) -> list[dict]:
        """Name, root, models and clip counts per library."""
        rows = []
        for lib in self.libraries():
            counts = index.library_counts(self.store, lib.name)
            rows.append({"name": lib.name, "root": lib.root, "models": list(lib.models), "counts": counts,
                         "clips": max(counts.values(), default=0)})
        return rows

    def models(self) -> list[dict]:
        """Every registered model with its availability."""
        return [{"name": a.name, "family": a.family, "status": a.status, "dim": a.dim, "reason": a.reason,
                 "description": a.description} for a in index.available_models(self.data_dir)]

    def ready_models(self) -> list[str]:
        """Names of models that can run here now."""
        return [a.name for a in index.available_models(self.data_dir) if a.ready]

    def ensure_demo(self, progress=None) -> Library | None:
        """Build the synthetic demo library on first run (when there is no library at all)."""
        if self.libraries():
            return None
        from app.demo import write_demo_library

        folder = write_demo_library(self.data_dir / "demo_audio")
        ready = set(self.ready_models())
        models = [m for m in DEMO_MODELS if m in ready]
        index.index_folder(self.store, DEMO_LIBRARY, folder, models, data_dir=self.data_dir, progress=progress)
        return self.library(DEMO_LIBRARY)

    def index_folder(self, library: str, folder: str | os.PathLike, models: list[str], progress=None):
        """Index a server-side folder into a library."""
        return index.index_folder(self.store, library, folder, models, data_dir=self.data_dir, progress=progress)

    def delete_library(self, name: str) -> list[str]:
        """Delete a library and its collections."""
        return index.delete_library(self.store, name)

    # ---- search -------------------------------------------------------------------------
    def search_file(self, library: str, model: str, path: str, k: int = 10, label=None,
                    one_per_file: bool = False) -> list[index.SearchHit]:
        """Query by example with an audio file."""
        return index.search_file(self.store, library, model, path, k=k, label=label,
                                 one_per_file=one_per_file, data_dir=self.data_dir)

    def search_id(self, library: str, model: str, point_id: str, k: int = 10, label=None) -> list[index.SearchHit]:
        """Neighbours of a clip in the library (itself first)."""
        return index.search_id(self.store, library, model, point_id, k=k, label=label)

    def search_text(self, library: str, model: str, text: str, k: int = 10, label=None) -> list[index.SearchHit]:
        """Search by description (CLAP)."""
        return index.search_text(self.store, library, model, text, k=k, label=label, data_dir=self.data_dir)

    def audio_path(self, library: str, rel_path: str) -> Path:
        """Absolute path of a clip inside its library (refuses anything outside)."""
        return self.library(library).resolve(rel_path)

    # ---- classes ------------------------------------------------------------------------
    def class_stats(self, library: str, model: str, k: int = 5) -> dict:
        """Label counts, agreement@k, centroid similarity and nearest clips per class."""
        return class_queries.class_stats(self.store, library, model, k=k)

    # ---- maps ---------------------------------------------------------------------------
    def read_vectors(self, library: str, model: str):
        """ids, vectors [n, dim], payloads of a (library, model) collection."""
        return index.read_vectors(self.store, library, model)
