"""Class (label) statistics of a library, answered with Qdrant queries.

- label counts: facet on `label`;
- the clips nearest each class centroid: recommend with the average-vector strategy over
  the class's ids;
- agreement@k: neighbour indices from Qdrant (the kNN graph: its search matrix, or its Edge
  equivalent; batched queries for a sample of a big library), scored by the project's one
  agreement function, `projections.quality.knn_agreement`;
- centroid vectors for the similarity heatmap: Qdrant has no vector aggregation, so each
  centroid is a running mean over a filtered scroll (one page of vectors in memory at a time).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from embedders.base import l2_normalise
from projections.quality import AGREEMENT_SAMPLE, knn_agreement, knn_agreement_per_class, sample_rows

from .libraries import LibraryError
from .queries import _collection
from .store import Hit, Store

# Above CLASS_STATS_EXACT labelled clips, class statistics are estimated from CLASS_SAMPLE query clips
# per class (the Classes view must answer in seconds: exact statistics of 1M clips took 238 s in
# benchmarks/million.py, as the centroids scroll every vector and recommend sends each class's ids).
# The neighbours of the sampled clips are still searched among ALL points, by Qdrant.
# At most CLASS_SAMPLE per class and CLASS_QUERIES queries in all, at least 20 per class: each query is
# an exact scan below 200k points (7-15 ms at 100k on 2 busy cores) and HNSW above (~5 ms at 1M), so
# 600 queries answer in seconds; a class's agreement from 50 clips has a standard error <= 0.07.
CLASS_STATS_EXACT = 50_000
CLASS_SAMPLE = 500
CLASS_QUERIES = 600


def sample_per_class(n_classes: int) -> int:
    """Query clips per class of a sampled `class_stats`."""
    return max(20, min(CLASS_SAMPLE, CLASS_QUERIES // max(1, n_classes)))


def label_counts(store: Store, library: str, model: str) -> dict[str, int]:
    """{label: clips} for labelled clips, largest first (Qdrant facet)."""
    coll = _collection(store, library, model)
    return {k: v for k, v in store.facet(coll, "label", limit=10000).items() if k not in (None, "")}


def label_ids(store: Store, coll: str, label: str) -> list[str]:
    """Ids of the clips with a label (payload-only scroll)."""
    return [r.id for r in store.scroll(coll, flt={"label": label})]


def centroid(store: Store, coll: str, label: str, page: int = 512) -> np.ndarray:
    """Mean of the L2-normalised vectors of one label, streamed page by page."""
    total, n = None, 0
    for rec in store.scroll(coll, flt={"label": label}, with_vectors=True, batch=page):
        v = np.asarray(rec.vector, np.float64)
        total = v.copy() if total is None else total + v
        n += 1
    if total is None:
        raise LibraryError(f"no clips with label '{label}'")
    return (total / n).astype(np.float32)


def nearest_to_centroid(store: Store, library: str, model: str, label: str, k: int = 5,
                        same_label_only: bool = False, centre: np.ndarray | None = None) -> list[Hit]:
    """Clips nearest a class centroid (Qdrant recommend, average-vector strategy).

    Qdrant leaves the example points out of recommend results, so with
    `same_label_only` the class's own clips are ranked by a query with the centroid
    (``centre``, when the caller has it already).
    """
    coll = _collection(store, library, model)
    if same_label_only:
        centre = centroid(store, coll, label) if centre is None else centre
        return store.query(coll, centre, k, flt={"label": label})
    ids = label_ids(store, coll, label)
    if not ids:
        raise LibraryError(f"no clips with label '{label}'")
    return store.recommend_average(coll, ids, k)


def agreement(store: Store, library: str, model: str, k: int = 5, sample: int | None = -1,
              seed: int = 0) -> dict:
    """Fraction of each labelled clip's k nearest labelled neighbours that share its label.

    Returns {"overall": float, "per_label": {label: float}, "n": labelled clips, "sampled": m or
    None}; NaN (overall) or an absent label (per_label) where no clip was scored. Neighbours come
    from Qdrant: the exact kNN graph over labelled clips, or, when there are more than ``sample``
    of them (-1: ``AGREEMENT_SAMPLE``; None: never), a batched query for each of ``sample`` clips
    drawn at random (seeded, ``projections.quality.sample_rows``) against all labelled clips: the
    same statistic, estimated (its standard error is about 0.5 / sqrt(sample): at most 0.011 for
    2000). The score itself is ``projections.quality.knn_agreement``.
    """
    coll = _collection(store, library, model)
    labelled = {"__not__": {"label": None}}
    n = store.count(coll, labelled)
    if sample == -1:
        sample = AGREEMENT_SAMPLE
    if sample and n > sample:
        labels, neighbours, rows = _sampled_neighbours(store, coll, k, labelled, sample, seed)
    else:
        ids, neighbours, _scores = store.knn_graph(coll, k, flt=labelled)
        if len(ids) < 2:
            raise LibraryError(f"agreement needs at least 2 labelled clips (found {len(ids)})")
        by_id = {r.id: r.payload.get("label") for r in store.retrieve(coll, ids)}
        labels, rows, n = [by_id.get(i) for i in ids], None, len(ids)
    return {"overall": knn_agreement(neighbours, labels, rows),
            "per_label": knn_agreement_per_class(neighbours, labels, rows), "n": n,
            "sampled": None if rows is None else len(rows)}


def cross_agreement(store: Store, library: str, model: str, field: str, k: int = 5,
                    sample: int | None = AGREEMENT_SAMPLE, seed: int = 0) -> dict:
    """Agreement@k with neighbours from other sources only: each labelled clip's k nearest labelled
    clips whose ``field`` (artist, kit, source, ...) differs from its own (a Qdrant must-not filter
    per source value), so that takes of one recording or songs of one artist do not count (the
    artist effect). Clips without the field are not scored. Above ``sample`` scored clips a seeded
    random sample of them is queried (against all labelled clips). Returns {"field", "overall",
    "per_label", "n": clips scored, "sampled": m or None, "sources": distinct values}."""
    coll = _collection(store, library, model)
    labelled = {"__not__": {"label": None}}
    records = sorted(store.scroll(coll, labelled), key=lambda r: r.id)
    ids = [r.id for r in records]
    labels = [r.payload.get("label") for r in records]
    row_of = {pid: i for i, pid in enumerate(ids)}
    have = [i for i, r in enumerate(records) if r.payload.get(field) not in (None, "")]
    if not have:
        raise LibraryError(f"no labelled clip of library '{library}' has a '{field}' field")
    values = {i: records[i].payload.get(field) for i in have}
    if len({str(v) for v in values.values()}) < 2:
        raise LibraryError(f"every labelled clip of library '{library}' has the same '{field}': "
                           "there is no other source to take neighbours from")
    rows = np.asarray(have, dtype=np.int64)
    sampled = None
    if sample and len(rows) > sample:
        rows = rows[sample_rows(len(rows), sample, seed)]
        sampled = len(rows)
    by_value: dict[str, list[int]] = {}
    for i in rows.tolist():
        by_value.setdefault(str(values[i]), []).append(i)
    neighbours = np.full((len(rows), k), -1, dtype=np.int64)
    out_row = {int(i): n for n, i in enumerate(rows.tolist())}
    for members in by_value.values():
        value = values[members[0]]
        found = {r.id: r.vector for r in store.retrieve(coll, [ids[i] for i in members], with_vectors=True)}
        members = [i for i in members if ids[i] in found]
        if not members:
            continue
        hits = store.query_batch(coll, np.stack([found[ids[i]] for i in members]), k,
                                 {"__not__": [{"label": None}, {field: value}]})
        for i, row_hits in zip(members, hits):
            others = [row_of[h.id] for h in row_hits if h.id in row_of][:k]
            neighbours[out_row[i], :len(others)] = others
    return {"field": field, "overall": knn_agreement(neighbours, labels, rows),
            "per_label": knn_agreement_per_class(neighbours, labels, rows), "n": len(rows), "sampled": sampled,
            "sources": len({str(v) for v in values.values()})}


def _sampled_neighbours(store: Store, coll: str, k: int, labelled: dict, sample: int,
                        seed: int) -> tuple[list, np.ndarray, np.ndarray]:
    """(labels of all labelled clips in point-id order, neighbour rows [sample, k] (-1: none),
    the sampled rows): each sampled clip queried against all labelled clips, itself dropped."""
    records = sorted(store.scroll(coll, labelled), key=lambda r: r.id)
    ids = [r.id for r in records]
    labels = [r.payload.get("label") for r in records]
    row_of = {pid: i for i, pid in enumerate(ids)}
    rows = sample_rows(len(ids), sample, seed)
    found = {r.id: r.vector for r in store.retrieve(coll, [ids[i] for i in rows], with_vectors=True)}
    rows = np.array([i for i in rows if ids[i] in found], dtype=np.int64)  # a clip deleted meanwhile: skipped
    neighbours = np.full((len(rows), k), -1, dtype=np.int64)
    if len(rows):
        hits = store.query_batch(coll, np.stack([found[ids[i]] for i in rows]), k + 1, labelled)
        for out, (row, row_hits) in enumerate(zip(rows, hits)):
            others = [row_of[h.id] for h in row_hits if h.id != ids[row] and h.id in row_of][:k]
            neighbours[out, :len(others)] = others
    return labels, neighbours, rows


def class_stats(store: Store, library: str, model: str, k: int = 5, nearest: int = 5,
                exact_max: int | None = None, per_class: int | None = None, cross: str | None = None) -> dict:
    """Label counts, agreement@k (overall and per class), centroid cosine matrix, the most typical
    members of each class (nearest its centroid) and the nearest clips from outside the class
    (Qdrant recommend, average-vector strategy, which leaves the class's own clips out), both as
    lists of `Hit` by label. NaN where an agreement is undefined. JSON: `class_stats_json`.

    Above ``exact_max`` labelled clips (default CLASS_STATS_EXACT) every number is estimated from
    ``per_class`` (default `sample_per_class`) clips per class (`_sampled_class_stats`); ``sampled`` says
    {"n": clips sampled, "of": labelled clips, "per_class": ...}, None when exact.

    ``cross`` (a payload field such as artist or source): also agreement@k with neighbours from other
    values of it only (`cross_agreement`), as ``cross_agreement``."""
    stats = _class_stats(store, library, model, k, nearest, exact_max, per_class)
    stats["cross_agreement"] = cross_agreement(store, library, model, cross, k) if cross else None
    return stats


def _class_stats(store: Store, library: str, model: str, k: int, nearest: int, exact_max: int | None,
                 per_class: int | None) -> dict:
    coll = _collection(store, library, model)
    counts = label_counts(store, library, model)
    if len(counts) < 1:
        raise LibraryError(f"library '{library}' has no labelled clips (put clips in sub-folders to label them)")
    labels = sorted(counts)
    exact_max = CLASS_STATS_EXACT if exact_max is None else exact_max
    if sum(counts.values()) > exact_max:
        return _sampled_class_stats(store, coll, library, model, counts, k, nearest,
                                    sample_per_class(len(labels)) if per_class is None else per_class)
    agr = agreement(store, library, model, k)
    cents = np.stack([centroid(store, coll, lb) for lb in labels])
    unit = l2_normalise(cents)
    sim = unit @ unit.T
    typical = {lb: nearest_to_centroid(store, library, model, lb, k=nearest, same_label_only=True, centre=c)
               for lb, c in zip(labels, cents)}
    near = {lb: nearest_to_centroid(store, library, model, lb, k=nearest) for lb in labels}
    return {"library": library, "model": model, "k": k, "labels": labels, "counts": counts,
            "n_labelled": agr["n"], "agreement_sampled": agr["sampled"], "overall_agreement": agr["overall"],
            "agreement": {lb: agr["per_label"].get(lb, math.nan) for lb in labels},
            "centroid_similarity": np.round(sim, 6).tolist(), "typical": typical, "nearest": near, "sampled": None}


def _sampled_class_stats(store: Store, coll: str, library: str, model: str, counts: dict[str, int], k: int,
                         nearest: int, per_class: int) -> dict:
    """`class_stats` estimated from the first ``per_class`` clips of each class in point-id order
    (ids are hashes of the files and segments, so this draw knows nothing of the vectors; one
    filtered scroll page per class): each centroid is the mean of its sample; the typical clips are
    the class's clips nearest it and the nearest others the other classes' clips nearest it (both
    searched among all points); agreement@k is the sampled clips' k nearest labelled neighbours
    among all labelled clips (per class; overall weighted by the class counts). ~1/sqrt(per_class)
    standard error on each class's agreement."""
    labels = sorted(counts)
    labelled = {"__not__": {"label": None}}
    cents, per_label, n_sampled = [], {}, 0
    for lb in labels:
        recs = list(itertools.islice(store.scroll(coll, {"label": lb}, with_vectors=True, batch=per_class), per_class))
        if not recs:
            raise LibraryError(f"no clips with label '{lb}'")
        V = np.stack([np.asarray(r.vector, np.float32) for r in recs])
        cents.append(V.astype(np.float64).mean(axis=0).astype(np.float32))
        n_sampled += len(recs)
        hits = store.query_batch(coll, V, k + 1, labelled)
        fracs = []
        for rec, row in zip(recs, hits):
            others = [h for h in row if h.id != rec.id][:k]
            if others:
                fracs.append(sum(h.label == lb for h in others) / len(others))
        if fracs:
            per_label[lb] = float(np.mean(fracs))
    cents_arr = np.stack(cents)
    unit = l2_normalise(cents_arr)
    sim = unit @ unit.T
    typical = {lb: store.query(coll, c, nearest, flt={"label": lb}) for lb, c in zip(labels, cents_arr)}
    near = {lb: store.query(coll, c, nearest, flt={"__not__": {"label": lb}})  # as recommend: any clip outside
            for lb, c in zip(labels, cents_arr)}
    scored = [lb for lb in labels if lb in per_label]
    total = sum(counts[lb] for lb in scored)
    overall = sum(counts[lb] * per_label[lb] for lb in scored) / total if total else math.nan
    n = sum(counts.values())
    return {"library": library, "model": model, "k": k, "labels": labels, "counts": counts,
            "n_labelled": n, "agreement_sampled": n_sampled, "overall_agreement": overall,
            "agreement": {lb: per_label.get(lb, math.nan) for lb in labels},
            "centroid_similarity": np.round(sim, 6).tolist(), "typical": typical, "nearest": near,
            "sampled": {"n": n_sampled, "of": n, "per_class": per_class}}


def class_stats_json(stats: dict) -> dict:
    """``class_stats`` as JSON (the API and ``classes --json``): hits as {id, score, path, label},
    an undefined (NaN) agreement as None."""
    def number(x: float) -> float | None:
        return None if math.isnan(x) else x

    cross = stats.get("cross_agreement")
    if cross:
        cross = {**cross, "overall": number(cross["overall"]),
                 "per_label": {lb: number(v) for lb, v in cross["per_label"].items()}}
    return {**stats, "overall_agreement": number(stats["overall_agreement"]), "cross_agreement": cross,
            "agreement": {lb: number(v) for lb, v in stats["agreement"].items()},
            "typical": {lb: [h.to_dict(detail=False) for h in hits] for lb, hits in stats["typical"].items()},
            "nearest": {lb: [h.to_dict(detail=False) for h in hits] for lb, hits in stats["nearest"].items()}}
