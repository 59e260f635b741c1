"""Library operations: list, describe, index (a server folder or uploads), delete; models;
training logs; thumbnails; the first-run demo library."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import index
from index.ingest import IngestOptions, IngestReport, thumbnail_path
from index.libraries import Library

from app.errors import ServiceError

if TYPE_CHECKING:
    from app.services import Services

DEMO_LIBRARY = "demo"
DEMO_MODELS = ("dsp", "vgg-msd", "musicnn-msd")
Progress = Callable[[int, int, str], None]


class LibraryService:
    """Libraries and models of one data folder."""

    def __init__(self, svc: "Services"):
        self._svc = svc

    @property
    def _store(self) -> index.Store:
        return self._svc.store

    def list(self) -> list[Library]:
        """Every library."""
        return index.list_libraries(self._store)

    def names(self) -> list[str]:
        """Every library's name."""
        return [lib.name for lib in self.list()]

    def get(self, name: str) -> Library:
        """One library (LibraryError if unknown)."""
        return index.get_library(self._store, name)

    def models_of(self, name: str | None) -> list[str]:
        """The models a library is indexed with ([] for no library)."""
        return list(self.get(name).models) if name else []

    def table(self) -> list[dict]:
        """Name, root, models and clip counts per library; a damaged model's count is None and its
        one-line message (with the fix) is in "damaged"."""
        rows = []
        for lib in self.list():
            counts, damage = index.library_status(self._store, lib.name)
            rows.append({"name": lib.name, "root": lib.root, "models": list(lib.models), "counts": counts,
                         "clips": max((n for n in counts.values() if n is not None), default=0),
                         "damaged": list(damage.values())})
        return rows

    def models(self) -> list[dict]:
        """Every registered model with its availability."""
        return [{"name": a.name, "family": a.family, "status": a.status, "dim": a.dim, "reason": a.reason,
                 "description": a.description} for a in index.available_models(self._svc.data_dir)]

    def ready_models(self) -> list[str]:
        """Names of models that can run here now."""
        return [a.name for a in index.available_models(self._svc.data_dir) if a.ready]

    def trained_models(self) -> list[str]:
        """Names of models trained here (family 'trained')."""
        return [m["name"] for m in self.models() if m["family"] == "trained"]

    def training_log(self, name: str) -> list[dict]:
        """Per-epoch rows (epoch, train_loss, val_loss, ...) of a trained model."""
        return index.training_log(name, self._svc.data_dir)

    def thumbnail(self, library: str, point_id: str) -> Path | None:
        """The thumbnail PNG of a point, if one was made at ingest."""
        p = thumbnail_path(self._svc.data_dir, library, point_id)
        return p if p.is_file() else None

    def files_of(self, library: str, model: str) -> list[str]:
        """Relative paths of the files in (library, model), sorted."""
        _ids, _vecs, pays = self._svc.vectors.read(library, model)
        return sorted({p.get("path", "") for p in pays})

    def ensure_demo(self, progress: Progress | None = None) -> Library | None:
        """Build the synthetic demo library on first run (when there is no library at all)."""
        if self.list():
            return None
        from app.demo import write_demo_library

        folder = write_demo_library(self._svc.data_dir / "demo_audio")
        ready = set(self.ready_models())
        models = [m for m in DEMO_MODELS if m in ready]
        index.index_folder(self._store, DEMO_LIBRARY, folder, models, data_dir=self._svc.data_dir,
                           progress=progress)
        return self.get(DEMO_LIBRARY)

    def index(self, library: str, folder: str | None = None, uploads: list[str] | None = None,
              models: list[str] | None = None, progress: Progress | None = None, labels: str = "folder",
              segment: str = "auto", segment_s: float = 1.0, trim: bool = False) -> IngestReport:
        """Index a server-side folder, or uploaded files (copied into the data folder), into a library."""
        opts = IngestOptions(segment=segment, segment_s=segment_s, hop_s=segment_s, trim=trim,
                             labels=None if labels in ("", "folder") else labels)
        models = list(models or ["dsp"])
        index.naming.check_library_name(library)
        if folder and uploads:
            raise ServiceError("give a folder or uploads, not both")
        if uploads:
            dest = self._svc.data_dir / "uploads" / library
            dest.mkdir(parents=True, exist_ok=True)
            for f in uploads:
                src = Path(f)
                shutil.copy2(src, dest / src.name)
            folder = str(dest)
        if not folder:
            raise ServiceError("give a server-side folder or upload files")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ServiceError(f"not a folder on the server: {folder}")
        try:
            return index.index_folder(self._store, library, path, models, data_dir=self._svc.data_dir,
                                      progress=progress, options=opts)
        finally:
            self._svc.vectors.clear()

    def delete(self, name: str, model: str | None = None) -> list[str]:
        """Delete a library (or one model's collections in it); the names of the collections dropped."""
        try:
            if model:
                from index.libraries import delete_model

                delete_model(self._store, name, model)
                return [index.collection_name(name, model)]
            return index.delete_library(self._store, name)
        finally:
            self._svc.vectors.clear()


