"""Aspect vectors in Qdrant, and search steered by aspect (timbre, spectrum, pitch, envelope + the deep model).

Storage: one companion collection per (library, aspect) (`naming.aspect_collection_name`), one point
per clip with the clip's id, written at index time after the model points (a point present in the
last aspect collection, ``envelope``, means the clip's aspects are complete). Why not named vectors
on the clip point: the store holds one vector per collection, a library has one collection per model
(users add models later, and Qdrant cannot add a named vector to an existing collection), and
aspects do not depend on the model: one copy per library, not one per model.

Steered search (`steered_search`): every aspect with a weight > 0 (and the deep model) is asked for
its nearest candidates in Qdrant, under the same set restriction; the union of candidates is
re-scored exactly with the stored vectors of every aspect (cosine; for the deep model the
library-adapted cosine where the library has one, as plain search scores it), the combined score is
the weighted mean of the per-aspect similarities, and each hit carries all of them (``Hit.aspects``).
With the deep model alone (the default weights) this is exactly the plain search.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

import embedders
from embedders.aspects import ASPECTS, DIMS, aspect_vectors
from embedders.base import Embedder, l2_normalise

from .libraries import LibraryError, get_library
from .naming import aspect_collection_name, collection_name
from .store import Hit, Store, StoreError

DEEP = "deep"
ALL = (DEEP, *ASPECTS)
ASPECT_INDEXES = {"file_id": "keyword", "path": "keyword"}
DEFAULT_WEIGHTS = {DEEP: 1.0}
MIN_CANDIDATES = 50  # per active aspect: at least this many, or 5 x k


class AspectsMissingError(LibraryError):
    """A library indexed before aspect vectors existed (or with them turned off)."""


def parse_weights(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """'deep=1,timbre=0.5,pitch=0' (or a dict) -> {aspect: weight}; unnamed aspects weigh 0, the
    deep model 1 unless named. ValueError (one line) on an unknown aspect or a bad weight."""
    if spec is None or spec == "":
        return dict(DEFAULT_WEIGHTS)
    pairs: list[tuple[str, object]]
    if isinstance(spec, str):
        pairs = []
        for part in spec.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"bad aspect weight '{part.strip()}': use NAME=WEIGHT, e.g. timbre=0.5")
            pairs.append((name.strip(), value.strip()))
    else:
        pairs = list(spec.items())
    out = {DEEP: 1.0}
    for name, value in pairs:
        if name not in ALL:
            raise ValueError(f"unknown aspect '{name}': use {', '.join(ALL)}")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"bad weight for '{name}': {value!r} is not a number") from None
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"bad weight for '{name}': weights are numbers >= 0 (0 turns the aspect off)")
        out[name] = w
    if not any(w > 0 for w in out.values()):
        raise ValueError("every aspect weight is 0: give at least one a weight above 0")
    return out


def is_plain(weights: Mapping[str, float]) -> bool:
    """Whether the weights ask for the deep model alone (plain search)."""
    return all(w == 0 for a, w in weights.items() if a != DEEP) and weights.get(DEEP, 0) > 0


# -- storage ------------------------------------------------------------------------------------

def ensure_aspect_collections(store: Store, library: str) -> None:
    """Create the library's aspect collections if missing."""
    for name in ASPECTS:
        coll = aspect_collection_name(library, name)
        if not store.has_collection(coll):
            store.create_collection(coll, DIMS[name], indexes=ASPECT_INDEXES)


def missing_aspects(store: Store, library: str, ids: Sequence[str]) -> set[str]:
    """The ids among `ids` whose aspect vectors are not (all) stored."""
    if not ids:
        return set()
    try:  # existing_ids only: a Ray worker's store answers it from the driver's snapshot
        return set(ids) - store.existing_ids(aspect_collection_name(library, ASPECTS[-1]), list(ids))
    except StoreError:  # no aspect collection yet
        return set(ids)


def write_aspects(store: Store, library: str, ids: Sequence[str], waves: Sequence[np.ndarray],
                  sample_rates: Sequence[int], payloads: Sequence[dict]) -> None:
    """Compute and store the aspect vectors of clips (one wave per id); the last aspect last. The
    collections must exist (`ensure_aspect_collections`, called by the indexing run's driver)."""
    if not ids:
        return
    vecs = [aspect_vectors(w, sr) for w, sr in zip(waves, sample_rates)]
    pays = [{k: p[k] for k in ("path", "file_id", "start_s", "end_s") if k in p} for p in payloads]
    for name in ASPECTS:
        store.upsert(aspect_collection_name(library, name), list(ids),
                     np.stack([v[name] for v in vecs]).astype(np.float32), pays)


def delete_aspects(store: Store, library: str, ids: Sequence[str]) -> None:
    """Remove clips' aspect vectors (the last aspect first, so a half-deleted clip reads as missing)."""
    for name in reversed(ASPECTS):
        coll = aspect_collection_name(library, name)
        if ids and store.has_collection(coll):
            store.delete(coll, list(ids))


def aspect_status(store: Store, library: str, model: str) -> dict:
    """{"clips": n, "with_aspects": m, "ready": bool} for (library, model)."""
    n = store.count(collection_name(library, model))
    coll = aspect_collection_name(library, ASPECTS[-1])
    m = store.count(coll) if store.has_collection(coll) else 0
    return {"clips": n, "with_aspects": m, "ready": n > 0 and m >= n}


def _require_aspects(store: Store, library: str) -> None:
    if not all(store.has_collection(aspect_collection_name(library, a)) for a in ASPECTS):
        root = get_library(store, library).root
        raise AspectsMissingError(
            f"library '{library}' has no aspect vectors (indexed before aspects existed, or with --no-aspects): "
            f"index it again (`python app.py index {root} --library {library} --models ...`) to add them; "
            f"what is indexed is kept")


# -- queries ------------------------------------------------------------------------------------

class Query:
    """What a steered search compares with: the deep vector, the aspect vectors, and (for "why
    similar") the query's descriptors and top tags."""

    def __init__(self, deep: np.ndarray | None, aspects: dict[str, np.ndarray] | None,
                 descriptors: dict | None = None, top_tags: list[str] | None = None, id: str | None = None):
        self.deep, self.aspects, self.id = deep, aspects or {}, id
        self.descriptors, self.top_tags = descriptors or {}, list(top_tags or [])


def query_from_wave(model: str, wave: np.ndarray, sr: int, data_dir: str | os.PathLike | None = None,
                    with_aspects: bool = True) -> Query:
    """The deep vector (and top tags, for taggram models), aspect vectors and descriptors of a wave."""
    from embedders.audio import resample
    from embedders.descriptors import describe

    emb = embedders.load(model, data_dir)
    w = resample(wave, sr, emb.sample_rate)
    tags = None
    if emb.tag_names and type(emb).embed_clip is Embedder.embed_clip:
        fr = emb.embed_frames(w)
        vec = l2_normalise(fr.vectors.mean(axis=0))
        scores = emb.clip_tags(fr)
        tags = [emb.tag_names[i] for i in np.argsort(-scores)[:5]] if scores is not None else None
    else:
        vec = emb.embed_clip(w)
    try:
        desc = describe(wave, sr)
    except Exception:  # descriptors only explain; never fail a search for them
        desc = {}
    return Query(vec, aspect_vectors(wave, sr) if with_aspects else None, desc, tags)


def query_from_id(store: Store, library: str, model: str, point_id: str) -> Query:
    """The stored vectors, descriptors and top tags of a clip of the library."""
    import uuid

    try:
        uuid.UUID(str(point_id))
    except ValueError:
        raise LibraryError(f"no clip with id {str(point_id)[:80]!r}: clip ids are UUIDs") from None
    found = store.retrieve(collection_name(library, model), [point_id], with_vectors=True)
    if not found:
        raise LibraryError(f"no clip with id {point_id} in library '{library}' for model '{model}'")
    aspects = {}
    for name in ASPECTS:
        coll = aspect_collection_name(library, name)
        rec = store.retrieve(coll, [point_id], with_vectors=True) if store.has_collection(coll) else []
        if rec:
            aspects[name] = rec[0].vector
    p = found[0].payload
    return Query(found[0].vector, aspects, p, p.get("top_tags"), id=point_id)


WHY_FIELDS = ("tempo_bpm", "loudness_dbfs", "spectral_centroid_hz", "onset_rate_hz", "duration_s")


def query_from_ids(store: Store, library: str, model: str, ids: Sequence[str]) -> Query:
    """Several clips (a selection) as one query: the re-normalised mean of their deep vectors and of
    each aspect's vectors; descriptors are the members' medians, top tags the most common ones."""
    import uuid
    from collections import Counter

    ids = list(dict.fromkeys(str(i) for i in ids))
    if len(ids) == 1:
        return query_from_id(store, library, model, ids[0])
    for i in ids:
        try:
            uuid.UUID(i)
        except ValueError:
            raise LibraryError(f"no clip with id {i[:80]!r}: clip ids are UUIDs") from None
    recs = store.retrieve(collection_name(library, model), ids, with_vectors=True)
    if not recs:
        raise LibraryError(f"none of these clips is in library '{library}' for model '{model}'")
    aspects = {}
    for name in ASPECTS:
        coll = aspect_collection_name(library, name)
        got = store.retrieve(coll, ids, with_vectors=True) if store.has_collection(coll) else []
        if got:
            aspects[name] = l2_normalise(np.mean([r.vector for r in got], axis=0))
    desc = {}
    for key in WHY_FIELDS:
        vals = [r.payload[key] for r in recs if isinstance(r.payload.get(key), (int, float))]
        if vals:
            desc[key] = float(np.median(vals))
    tags = Counter(t for r in recs for t in (r.payload.get("top_tags") or []))
    return Query(l2_normalise(np.mean([r.vector for r in recs], axis=0)), aspects, desc,
                 [t for t, _ in tags.most_common(5)])


def _cos(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    m = np.asarray(m, np.float64)
    return (m @ q) / np.maximum(np.linalg.norm(m, axis=1) * np.linalg.norm(q), 1e-12)


def deep_similarity(store: Store, library: str, model: str, q: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The deep model's similarity as plain search scores it: the library-adapted cosine where the
    library has a fitted adaptation (index/adapt.py), else the raw cosine."""
    from . import adapt

    w = adapt.load_adaptation(store, library, model) if adapt.enabled() else None
    if w is None:
        return _cos(q, m)
    return _cos(w.apply(np.asarray(q, np.float64)), w.apply(np.asarray(m, np.float64)))


def member_ids(store: Store, library: str, model: str, flt: dict | None) -> list[str] | None:
    """The ids of the clips matching a payload filter (None for no filter): how a set restriction on
    payload (label, tag, cluster, ranges) reaches the aspect collections, which hold no such payload."""
    if not flt:
        return None
    if set(flt) == {"__ids__"}:
        return [str(i) for i in flt["__ids__"]]
    return [r.id for r in store.scroll(collection_name(library, model), flt=flt)]


def steered_search(store: Store, library: str, model: str, query: Query, weights: Mapping[str, float],
                   k: int = 10, flt: dict | None = None, one_per_file: bool = False) -> list[Hit]:
    """Nearest clips by the weighted mean of per-aspect cosine similarities (see the module docstring);
    each hit's ``aspects`` holds its similarity under every aspect stored (weight 0 ones too)."""
    weights = parse_weights(dict(weights))
    active = {a: float(w) for a, w in weights.items() if w > 0}
    clips = collection_name(library, model)
    if any(a != DEEP for a in active):
        _require_aspects(store, library)
    if query.deep is None and DEEP in active:
        raise LibraryError("this query has no vector for the deep model")
    members = member_ids(store, library, model, flt)
    if members is not None and not members:
        return []
    aflt = {"__ids__": members} if members is not None else None
    n_cand = max(MIN_CANDIDATES, 5 * int(k)) * (3 if one_per_file else 1)
    cands: dict[str, None] = {}
    for name, w in active.items():
        if name == DEEP:
            hits = store.query(clips, query.deep, n_cand, flt=aflt)
        else:
            if name not in query.aspects:
                raise AspectsMissingError(f"the query clip has no {name} aspect vector; index it again")
            hits = store.query(aspect_collection_name(library, name), query.aspects[name], n_cand, flt=aflt)
        cands.update((h.id, None) for h in hits)
    ids = list(cands)
    if not ids:
        return []
    recs = store.retrieve(clips, ids, with_vectors=True)
    ids = [r.id for r in recs]  # only clips this model has
    sims: dict[str, np.ndarray] = {}
    if query.deep is not None:
        sims[DEEP] = deep_similarity(store, library, model, query.deep, np.stack([r.vector for r in recs]))
    for name in ASPECTS:
        coll = aspect_collection_name(library, name)
        if name not in query.aspects or not store.has_collection(coll):
            continue
        got = {r.id: r.vector for r in store.retrieve(coll, ids, with_vectors=True)}
        col = np.full(len(ids), np.nan)
        have = [i for i, pid in enumerate(ids) if pid in got]
        if have:
            col[have] = _cos(query.aspects[name], np.stack([got[ids[i]] for i in have]))
        sims[name] = col
    total = sum(active.values())
    combined = sum(w * np.nan_to_num(sims[a], nan=0.0) for a, w in active.items()) / total
    order = np.argsort(-combined, kind="stable")
    hits, seen = [], set()
    for i in order:
        rec = recs[i]
        if one_per_file:
            key = rec.payload.get("path", rec.id)
            if key in seen:
                continue
            seen.add(key)
        per = {a: round(float(s[i]), 6) for a, s in sims.items() if np.isfinite(s[i])}
        hits.append(Hit(id=rec.id, score=float(combined[i]), payload=rec.payload, aspects=per))
        if len(hits) == k:
            break
    return hits


# -- why similar --------------------------------------------------------------------------------

def why_similar(query: Query, hit: Hit) -> str:
    """One line on what a hit shares with the query and how it differs: shared top tags, close and
    differing descriptors, its closest aspect ("both ~120 bpm; 4 dB quieter; brighter")."""
    q, h = query.descriptors, hit.payload
    parts: list[str] = []
    shared = [t for t in query.top_tags if t in (h.get("top_tags") or [])][:3]
    if shared:
        parts.append("both " + ", ".join(shared))
    qt, ht = q.get("tempo_bpm"), h.get("tempo_bpm")
    if qt and ht:
        if abs(qt - ht) <= 0.05 * qt:
            parts.append(f"both ~{round((qt + ht) / 2)} bpm")
        else:
            parts.append(f"{'faster' if ht > qt else 'slower'} ({round(ht)} vs {round(qt)} bpm)")
    ql, hl = q.get("loudness_dbfs"), h.get("loudness_dbfs")
    if ql is not None and hl is not None:
        d = hl - ql
        parts.append("same loudness" if abs(d) < 2 else f"{abs(d):.0f} dB {'louder' if d > 0 else 'quieter'}")
    qc, hc = q.get("spectral_centroid_hz"), h.get("spectral_centroid_hz")
    if qc and hc:
        r = hc / qc
        parts.append("similar brightness" if 0.8 <= r <= 1.25 else ("brighter" if r > 1 else "darker"))
    qo, ho = q.get("onset_rate_hz"), h.get("onset_rate_hz")
    if qo is not None and ho is not None and max(qo, ho) > 0.5:
        r = (ho + 0.1) / (qo + 0.1)
        if r > 1.5 or r < 1 / 1.5:
            parts.append("busier" if r > 1 else "sparser")
    qd, hd = q.get("duration_s"), h.get("duration_s")
    if qd and hd and (hd / qd > 2 or hd / qd < 0.5):
        parts.append("longer" if hd > qd else "shorter")
    per = {a: s for a, s in (hit.aspects or {}).items() if a != DEEP}
    if per:
        best = max(per, key=per.get)
        if per[best] >= 0.5:
            parts.append(f"closest in {best} ({per[best]:.2f})")
    return "; ".join(parts)


# -- one entry point for every face --------------------------------------------------------------

def annotate(store: Store, library: str, query: Query, hits: list[Hit]) -> list[Hit]:
    """Set each hit's ``aspects`` (similarity under the deep model and every stored aspect) without
    changing its score or rank: the per-aspect bars of a plain search."""
    if not hits:
        return hits
    ids = [h.id for h in hits]
    for h in hits:
        h.aspects = {DEEP: round(float(h.score), 6)} if query.deep is not None else {}
    for name in ASPECTS:
        coll = aspect_collection_name(library, name)
        if name not in query.aspects or not store.has_collection(coll):
            continue
        got = {r.id: r.vector for r in store.retrieve(coll, ids, with_vectors=True)}
        for h in hits:
            if h.id in got:
                h.aspects[name] = round(float(_cos(query.aspects[name], got[h.id][None, :])[0]), 6)
    return hits


def search(store: Store, library: str, model: str, *, path: str | os.PathLike | None = None,
           point_id: str | None = None, point_ids: Sequence[str] | None = None,
           start_s: float | None = None, end_s: float | None = None,
           weights: Mapping[str, float] | str | None = None, k: int = 10, label: str | list[str] | None = None,
           ranges: dict | None = None, where: dict | None = None, within: Sequence[str] | None = None,
           one_per_file: bool = False, data_dir: str | os.PathLike | None = None,
           with_aspects: bool = True) -> tuple[list[Hit], Query]:
    """Search by an audio file (or its start_s..end_s part), a clip id or several (`point_ids`, a
    selection: their mean vectors, see `query_from_ids`), steered by aspect weights,
    optionally inside a set (`within` ids, and/or label / payload ranges / `where` matches).
    Returns the hits and the query (for `why_similar`). With the default weights (deep model alone)
    the hits are the plain search's, annotated with per-aspect similarities (`with_aspects`)."""
    from embedders.audio import decode

    from .queries import _collection, _flt, search_id, search_vector, time_range

    w = parse_weights(weights)
    _collection(store, library, model)
    where = dict(where or {})
    if within is not None:
        if not within:
            return [], Query(None, None)
        where["__ids__"] = [str(i) for i in within]
    flt = _flt(label, ranges, where)
    have_aspects = all(store.has_collection(aspect_collection_name(library, a)) for a in ASPECTS)
    if point_ids is not None:
        if not point_ids:
            raise LibraryError("the selection is empty: select clips on the Map first")
        query = query_from_ids(store, library, model, point_ids)
    elif point_id is not None:
        query = query_from_id(store, library, model, str(point_id))
    elif path is not None:
        wave, sr = decode(path)
        wave = time_range(wave, sr, start_s, end_s)
        query = query_from_wave(model, wave, sr, data_dir, with_aspects=have_aspects and (with_aspects or not is_plain(w)))
    else:
        raise LibraryError("give an audio file or a clip id to search with")
    if is_plain(w):
        if point_id is not None and point_ids is None and not one_per_file:
            hits = search_id(store, library, model, str(point_id), k, label, ranges, where or None)
        else:
            hits = search_vector(store, library, model, query.deep, k, label, one_per_file, ranges, where or None)
        return (annotate(store, library, query, hits) if with_aspects else hits), query
    return steered_search(store, library, model, query, w, k, flt, one_per_file), query
