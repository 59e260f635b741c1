"""Qdrant is the database: collections per (library, model), ingest, and queries.

This package is the only place that talks to Qdrant (through `index.store`).
"""
from __future__ import annotations

from .ingest import IngestReport, index_files, index_folder, scan_folder
from .libraries import (Library, LibraryError, delete_library, get_library, library_counts, library_damage,
                        library_status, list_libraries, open_store)
from .naming import collection_name, frames_collection_name, point_id
from . import naming
from .adapt import best_model
from .queries import (clip_overview, read_frame_latents, read_frames, read_vectors, recommend, search_file, search_id,
                      search_text,
                      search_vector,
                      taggram)
from .store import DamagedCollectionError, Hit, Store, StoreError
from embedders import EmbedderError, available as available_models, check as check_model
from embedders.audio import AudioError, info as audio_info
from embedders.paths import ENV_VAR as DATA_ENV_VAR, data_dir
from embedders.trained import training_log

__all__ = [
    "AudioError", "audio_info", "DamagedCollectionError", "DATA_ENV_VAR", "EmbedderError", "available_models",
    "best_model", "check_model", "data_dir",
    "Hit", "IngestReport", "Library", "LibraryError", "Store", "StoreError",
    "collection_name", "delete_library", "frames_collection_name", "get_library", "index_files",
    "index_folder", "library_counts", "library_damage", "library_status", "list_libraries", "open_store", "point_id", "read_frames",
    "read_frame_latents", "read_vectors", "recommend", "scan_folder", "clip_overview", "taggram", "naming", "search_file", "search_id", "search_text", "search_vector", "training_log",
]
