"""Queries the views ask for: search (file, clip, text), class statistics, taggrams, waveforms."""
from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

import index
from index import aspects as aspect_queries
from index import classes as class_queries

if TYPE_CHECKING:
    from app.services import Services

Ranges = dict[str, tuple[float | None, float | None]]


class QueryService:
    """Read-only questions to Qdrant about one library."""

    def __init__(self, svc: "Services"):
        self._svc = svc

    def search_file(self, library: str, model: str, path: str | os.PathLike, k: int = 10,
                    label: str | None = None, one_per_file: bool = False,
                    ranges: Ranges | None = None, where: dict | None = None) -> list[index.Hit]:
        """Query by example with an audio file (optionally within numeric payload ranges, and only
        clips matching `where`, e.g. {"tags": "keep"})."""
        return index.search_file(self._svc.store, library, model, path, k=k, label=label,
                                 one_per_file=one_per_file, data_dir=self._svc.data_dir, ranges=ranges, where=where)

    def search(self, library: str, model: str, *, path: str | os.PathLike | None = None,
               point_id: str | None = None, point_ids: list[str] | None = None,
               start_s: float | None = None, end_s: float | None = None,
               weights: dict[str, float] | str | None = None, k: int = 10, label: str | None = None,
               one_per_file: bool = False, ranges: Ranges | None = None, where: dict | None = None,
               within: list[str] | None = None) -> tuple[list[index.Hit], list[str]]:
        """(hits, a "why similar" line per hit) of a search by file (or its start_s..end_s part), clip id
        or a selection of clips (`point_ids`),
        steered by aspect weights ("deep=1,timbre=0.5" or a dict; default: the deep model alone, as plain
        search), inside a set (`within` ids; `where` e.g. {"tags": "keep"} or {"cluster": 3}). Each hit
        carries its per-aspect similarities (`Hit.aspects`) where the library has aspect vectors."""
        hits, query = aspect_queries.search(
            self._svc.store, library, model, path=path, point_id=point_id, point_ids=point_ids,
            start_s=start_s, end_s=end_s,
            weights=weights, k=k, label=label, ranges=ranges, where=where, within=within,
            one_per_file=one_per_file, data_dir=self._svc.data_dir)
        return hits, [aspect_queries.why_similar(query, h) for h in hits]

    def search_range(self, library: str, model: str, rel_path: str, start_s: float | None, end_s: float | None,
                     **kw) -> tuple[list[index.Hit], list[str]]:
        """`search` with a time range of a clip of the library (Playback) as the query."""
        path = index.queries.clip_audio_path(self._svc.store, library, rel_path)
        return self.search(library, model, path=path, start_s=start_s, end_s=end_s, **kw)

    def search_id(self, library: str, model: str, point_id: str, k: int = 10,
                  label: str | None = None, ranges: Ranges | None = None) -> list[index.Hit]:
        """Neighbours of a clip in the library (itself first)."""
        return index.search_id(self._svc.store, library, model, point_id, k=k, label=label, ranges=ranges)

    def search_text(self, library: str, model: str, text: str, k: int = 10,
                    label: str | None = None) -> list[index.Hit]:
        """Search by description (CLAP)."""
        return index.search_text(self._svc.store, library, model, text, k=k, label=label,
                                 data_dir=self._svc.data_dir)

    def labels(self, library: str, model: str) -> list[str]:
        """Labels present in (library, model), by name."""
        return sorted(class_queries.label_counts(self._svc.store, library, model))

    def class_stats(self, library: str, model: str, k: int = 5, cross: str | None = None) -> dict:
        """Label counts, agreement@k, centroid similarity and nearest clips per class; with `cross` (a
        payload field: artist, kit, source...) also agreement@k with neighbours of other values only."""
        return class_queries.class_stats(self._svc.store, library, model, k=k, cross=cross or None)

    def taggram(self, library: str, model: str, rel_path: str) -> dict:
        """Tag scores over time for a clip (models with a taggram)."""
        return index.taggram(self._svc.store, library, model, rel_path, data_dir=self._svc.data_dir)

    def waveform(self, library: str, rel_path: str, columns: int = 800) -> dict:
        """Waveform envelope (min/max per column) and a log-mel spectrogram image (data URL) of a clip."""
        ov = index.clip_overview(self._svc.store, library, rel_path, columns)
        return {"waveform": {"min": ov["min"], "max": ov["max"]},
                "spectrogram_url": "data:image/png;base64," + base64.b64encode(ov["spectrogram_png"]).decode()}
