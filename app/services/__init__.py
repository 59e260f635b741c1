"""What both faces (UI and CLI) call, split by concern:

- `Services`: the handle on one data folder (its Qdrant store, opened on first use) holding
- `libs` (`LibraryService`): libraries, models, indexing, deleting, training logs, thumbnails;
- `queries` (`QueryService`): search, class statistics, taggrams, waveforms;
- `vectors` (`VectorCache`): a (library, model)'s vectors read once until the collection changes;
- `curation` (`CurationService`): the selection, tags/labels, clusters, duplicates, exports;
- `labels` (`LabelService`): suggested labels, their quality, the review queue;
- `training` (`TrainingService`): training runs started from the UI, in the background;
- `maps` (`MapService`): fitted maps (`MapFit`), their values for the map component, the points
  published to the browser (`TokenStore`), trajectories, comparisons.
Formatting of status lines lives in `formatting`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import index
import projections

from app.access import Access
from app.errors import ServiceError
from app.services.curation import CurationService
from app.services.formatting import DESCRIPTORS, METHOD_LABELS
from app.services.labels import LabelService
from app.services.library import DEMO_LIBRARY, DEMO_MODELS, LibraryService
from app.services.locks import KeyLocks
from app.services.maps import MapFit, MapService, TokenStore
from app.services.queries import QueryService
from app.services.training import TrainingService
from app.services.vectors import VectorCache


class Services:
    """The app's handle on its data folder: Qdrant store, vectors, maps, library operations."""

    def __init__(self, data_dir: str | os.PathLike | None = None, store: index.Store | None = None,
                 access: Access | None = None):
        self.data_dir: Path = index.data_dir(data_dir)
        self.access = access or Access.from_env()  # who may change what (the UI's and the API's callbacks ask)
        self._store = store
        self._lock = threading.Lock()
        self.locks = KeyLocks()
        self.vectors = VectorCache(self)
        self.libs = LibraryService(self)
        self.queries = QueryService(self)
        self.maps = MapService(self, projections.MapCache(self.data_dir / "maps"))
        self.curation = CurationService(self)
        self.labels = LabelService(self)
        self.training = TrainingService(self)

    @property
    def store(self) -> index.Store:
        """The Qdrant store (opened on first use)."""
        with self._lock:
            if self._store is None:
                self._store = index.open_store(self.data_dir)
            return self._store


__all__ = ["CurationService", "DEMO_LIBRARY", "DEMO_MODELS", "DESCRIPTORS", "METHOD_LABELS", "KeyLocks", "LabelService", "LibraryService", "MapFit",
           "MapService", "QueryService", "ServiceError", "Services", "TokenStore", "TrainingService", "VectorCache"]
