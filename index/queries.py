"""Questions asked of a library, answered by Qdrant queries."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

import embedders
from embedders.audio import decode, decode_limit_s, info, printable, resample, stream_blocks

from . import adapt
from .libraries import LibraryError, get_library
from .naming import collection_name, frames_collection_name
from .store import Hit, Store


def _collection(store: Store, library: str, model: str) -> str:
    lib = get_library(store, library)
    if model not in lib.models:
        raise LibraryError(f"library '{library}' has no vectors for model '{model}' "
                           f"(indexed: {', '.join(lib.models) or 'none'})")
    coll = collection_name(library, model)
    if not store.has_collection(coll):
        raise LibraryError(f"library '{library}' has no collection for model '{model}'; index it first")
    return coll


Ranges = dict[str, tuple[float | None, float | None]]  # payload field -> (min, max), either may be None


def _flt(label: str | list[str] | None, ranges: Ranges | None = None, where: dict | None = None) -> dict | None:
    """A store filter: label match, numeric payload ranges (e.g. loudness_dbfs between -30 and -10)
    and exact payload matches (`where`, e.g. {"tags": "keep"} or {"cluster": 3})."""
    out: dict = dict(where or {})
    if label:
        out["label"] = label
    for key, (lo, hi) in (ranges or {}).items():
        bounds = {k: float(v) for k, v in (("gte", lo), ("lte", hi)) if v is not None}
        if bounds:
            out[key] = bounds
    return out or None


def embed_query(model: str, wave: np.ndarray, sample_rate: int,
                data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The clip vector of a query wave under `model`."""
    emb = embedders.load(model, data_dir)
    return emb.embed_clip(resample(wave, sample_rate, emb.sample_rate))


def search_vector(store: Store, library: str, model: str, vector: np.ndarray, k: int = 10,
                  label: str | list[str] | None = None, one_per_file: bool = False,
                  ranges: Ranges | None = None, where: dict | None = None) -> list[Hit]:
    """Nearest clips to a vector; optionally filtered by label, payload ranges and exact payload
    matches, and grouped to one hit per file (Qdrant groups)."""
    coll = _collection(store, library, model)
    flt = _flt(label, ranges, where)
    w = adapt.load_adaptation(store, library, model) if adapt.enabled() else None
    if w is not None:  # library-adapted cosine (index/adapt.py)
        return adapt.rerank(store, coll, w, vector, k, flt=flt, one_per_file=one_per_file)
    if one_per_file:
        groups = store.query_groups(coll, vector, group_by="path", groups=k, group_size=1, flt=flt)
        return [g[0] for g in groups if g]
    return store.query(coll, vector, k, flt=flt)


def time_range(wave: np.ndarray, sr: int, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """The part of a wave between start_s and end_s (seconds; None = its start / end); a one-line
    LibraryError for a range that is empty or outside the audio."""
    if start_s is None and end_s is None:
        return wave
    dur = len(wave) / sr
    a = 0.0 if start_s is None else float(start_s)
    b = dur if end_s is None else min(float(end_s), dur)
    if not (np.isfinite(a) and np.isfinite(b)) or a < 0 or b - a < 0.05 or a >= dur:
        raise LibraryError(f"bad time range {a:g}-{b:g} s: pick at least 0.05 s inside the clip's {dur:.2f} s")
    return wave[int(round(a * sr)):int(round(b * sr))]


def search_file(store: Store, library: str, model: str, path: str | os.PathLike, k: int = 10,
                label: str | list[str] | None = None, one_per_file: bool = False,
                data_dir: str | os.PathLike | None = None, ranges: Ranges | None = None,
                where: dict | None = None, start_s: float | None = None, end_s: float | None = None) -> list[Hit]:
    """Query by example: the clips most similar to an audio file (or to its start_s..end_s part).
    `where` may hold {"__ids__": [...]} to search inside a set of clips."""
    _collection(store, library, model)
    wave, sr = decode(path)
    wave = time_range(wave, sr, start_s, end_s)
    vec = embed_query(model, wave, sr, data_dir)
    return search_vector(store, library, model, vec, k, label, one_per_file, ranges, where)


def search_id(store: Store, library: str, model: str, point_id: str, k: int = 10,
              label: str | list[str] | None = None, ranges: Ranges | None = None,
              where: dict | None = None) -> list[Hit]:
    """The clips nearest a clip already in the library (itself first)."""
    coll = _collection(store, library, model)
    try:
        uuid.UUID(str(point_id))
    except ValueError:
        raise LibraryError(f"no clip with id {printable(str(point_id))[:80]!r}: clip ids are UUIDs") from None
    if not store.existing_ids(coll, [point_id]):
        raise LibraryError(f"no clip with id {point_id} in library '{library}' for model '{model}'")
    w = adapt.load_adaptation(store, library, model) if adapt.enabled() else None
    if w is not None:  # library-adapted cosine (index/adapt.py); the clip itself still comes first
        vec = store.retrieve(coll, [point_id], with_vectors=True)[0].vector
        return adapt.rerank(store, coll, w, vec, k, flt=_flt(label, ranges, where))
    return store.query_by_id(coll, point_id, k, flt=_flt(label, ranges, where))


def recommend(store: Store, library: str, model: str, positive_ids: list[str], negative_ids: list[str] | None = None,
              k: int = 10, exclude_ids: list[str] | None = None) -> list[Hit]:
    """Clips most like a set (Qdrant recommend, average-vector strategy: nearest to the positives'
    mean, away from the negatives'), the examples and `exclude_ids` left out."""
    coll = _collection(store, library, model)
    if not positive_ids:
        raise LibraryError("give at least one clip to find more like it")
    known = store.existing_ids(coll, list(positive_ids))
    if not known:
        raise LibraryError(f"none of these clips is in library '{library}' for model '{model}'")
    skip = set(exclude_ids or ())
    extra = min(len(skip), 2000)
    hits = store.recommend_average(coll, [i for i in positive_ids if i in known], k + extra,
                                   negative_ids=list(negative_ids or []) or None)
    return [h for h in hits if h.id not in skip][:k]


def search_text(store: Store, library: str, model: str, text: str, k: int = 10,
                label: str | list[str] | None = None, data_dir: str | os.PathLike | None = None) -> list[Hit]:
    """Search by a description, for models with a text tower (CLAP)."""
    emb = embedders.load(model, data_dir)
    if not getattr(emb, "supports_text", False):
        raise LibraryError(f"model '{model}' has no text tower; text search needs a CLAP model")
    vec = emb.embed_text([text])[0]
    return search_vector(store, library, model, vec, k, label)


def read_vectors(store: Store, library: str, model: str) -> tuple[list[str], np.ndarray, list[dict]]:
    """Every clip of (library, model) in one pass: ids, vectors [n, dim], payloads (stable order)."""
    coll = _collection(store, library, model)
    ids, vecs, pays = [], [], []
    for rec in store.scroll(coll, with_vectors=True):
        ids.append(rec.id)
        vecs.append(rec.vector)
        pays.append(rec.payload)
    dim = store.collection_dim(coll)
    return ids, (np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)), pays


def read_frames(store: Store, library: str, model: str, file_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A file's trajectory: times_s [T] (seconds into the file) and frame vectors [T, dim], in time order."""
    _collection(store, library, model)
    coll = frames_collection_name(library, model)
    recs = list(store.scroll(coll, flt={"file_id": file_id}, with_vectors=True))
    if not recs:
        raise LibraryError(f"no frames stored for file {file_id}")
    recs.sort(key=lambda r: r.payload.get("time_s", 0.0))
    return (np.array([r.payload["time_s"] for r in recs], np.float64),
            np.stack([r.vector for r in recs]).astype(np.float32))


def read_frame_latents(store: Store, library: str, model: str, file_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A latent-space model's trajectory in its raw coordinates (the `latent` payload of its frames):
    times_s [T], latents [T, dim]; None when the frames carry no raw latent (indexed before it was kept)."""
    _collection(store, library, model)
    recs = list(store.scroll(frames_collection_name(library, model), flt={"file_id": file_id}))
    if not recs or any(not r.payload.get("latent") for r in recs):
        return None
    recs.sort(key=lambda r: r.payload.get("time_s", 0.0))
    return (np.array([r.payload["time_s"] for r in recs], np.float64),
            np.asarray([r.payload["latent"] for r in recs], np.float32))


def clip_audio_path(store: Store, library: str, rel_path: str) -> Path:
    """Absolute path of a clip's audio, refused when outside the library root."""
    return get_library(store, library).resolve(rel_path)


def clip_overview(store: Store, library: str, rel_path: str, columns: int = 800) -> dict:
    """Waveform envelope and a log-mel spectrogram PNG of a clip of the library (a file longer
    than the whole-decode limit is streamed: see `_streamed_overview`)."""
    from embedders.descriptors import spectrogram_png, waveform_envelope

    path = clip_audio_path(store, library, rel_path)
    if info(path).duration_s > decode_limit_s():
        return _streamed_overview(path, columns)
    wave, sr = decode(path)
    mins, maxs = waveform_envelope(wave, columns)
    return {"duration_s": len(wave) / sr, "min": np.round(mins, 3).tolist(), "max": np.round(maxs, 3).tolist(),
            "spectrogram_png": spectrogram_png(wave, sr, (columns, 96))}


def _streamed_overview(path: Path, columns: int, excerpt_s: float = 0.2) -> dict:
    """The overview of a long recording in bounded memory: the exact min/max envelope, streamed, and
    a spectrogram drawn from one short excerpt at the start of each column (a montage)."""
    from embedders.descriptors import spectrogram_png

    duration = info(path).duration_s
    mins, maxs = np.full(columns, np.inf, np.float32), np.full(columns, -np.inf, np.float32)
    excerpts: list[np.ndarray] = []
    pos, sr = 0, 0
    for block, sr in stream_blocks(path, block_s=30.0):
        if not np.isfinite(duration):  # unknown length: nothing to lay columns on; envelope stays flat
            break
        col_n = max(1, int(duration * sr / columns))
        ex_n = max(1, min(col_n, int(excerpt_s * sr)))
        first, last = pos // col_n, (pos + len(block) - 1) // col_n
        for c in range(int(first), min(int(last), columns - 1) + 1):
            a, b = max(c * col_n - pos, 0), min((c + 1) * col_n - pos, len(block))
            if c == columns - 1:
                b = len(block)
            seg = block[a:b]
            if seg.size:
                mins[c], maxs[c] = min(mins[c], float(seg.min())), max(maxs[c], float(seg.max()))
            start = c * col_n - pos
            if 0 <= start < len(block):
                excerpts.append(block[start:start + ex_n].copy())  # a view would keep the block
        pos += len(block)
    mins[~np.isfinite(mins)], maxs[~np.isfinite(maxs)] = 0.0, 0.0
    montage = np.concatenate(excerpts) if excerpts else np.zeros(max(sr, 1), np.float32)
    return {"duration_s": pos / sr if sr else 0.0, "min": np.round(mins, 3).tolist(),
            "max": np.round(maxs, 3).tolist(), "spectrogram_png": spectrogram_png(montage, sr or 22050, (columns, 96))}


def taggram(store: Store, library: str, model: str, rel_path: str,
            data_dir: str | os.PathLike | None = None) -> dict:
    """Tag scores over time of a clip: {times_s, tags, scores [T, n_tags]} (models with a taggram)."""
    _collection(store, library, model)
    emb = embedders.load(model, data_dir)
    if not emb.tag_names:
        raise LibraryError(f"model '{model}' has no taggram")
    wave, _ = decode(clip_audio_path(store, library, rel_path), emb.sample_rate)
    fr = emb.embed_frames(wave)
    return {"path": rel_path, "model": model, "times_s": np.round(fr.times_s, 4).tolist(),
            "tags": list(emb.tag_names), "scores": np.round(fr.tags, 5).tolist()}
