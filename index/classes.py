"""Class (label) statistics of a library, answered with Qdrant queries.

- label counts: facet on `label`;
- the clips nearest each class centroid: recommend with the average-vector strategy over
  the class's ids;
- agreement@k: the kNN graph (Qdrant's search matrix, or its Edge equivalent);
- centroid vectors for the similarity heatmap: Qdrant has no vector aggregation, so each
  centroid is a running mean over a filtered scroll (one page of vectors in memory at a time).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .libraries import LibraryError
from .queries import _collection
from .store import Store


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
                        same_label_only: bool = False, centre: np.ndarray | None = None) -> list[dict]:
    """Clips nearest a class centroid (Qdrant recommend, average-vector strategy).

    Qdrant leaves the example points out of recommend results, so with
    `same_label_only` the class's own clips are ranked by a query with the centroid
    (``centre``, when the caller has it already).
    """
    coll = _collection(store, library, model)
    if same_label_only:
        centre = centroid(store, coll, label) if centre is None else centre
        hits = store.query(coll, centre, k, flt={"label": label})
    else:
        ids = label_ids(store, coll, label)
        if not ids:
            raise LibraryError(f"no clips with label '{label}'")
        hits = store.recommend_average(coll, ids, k)
    return [{"id": h.id, "score": round(float(h.score), 6), "path": h.payload.get("path"),
             "label": h.payload.get("label")} for h in hits]


AGREEMENT_SAMPLE = 2000  # above this many labelled clips, agreement is estimated from a sample


def agreement(store: Store, library: str, model: str, k: int = 5, sample: int | None = -1,
              seed: int = 0) -> dict:
    """Fraction of each labelled clip's k nearest labelled neighbours that share its label.

    Returns {"overall": float, "per_label": {label: float}, "n": labelled clips, "sampled": m or
    None}. Neighbours come from Qdrant: the exact kNN graph over labelled clips, or, when there are
    more than ``sample`` of them (-1: ``AGREEMENT_SAMPLE``; None: never), a batched query for each of ``sample`` clips drawn at random
    (seeded) against all labelled clips: the same statistic, estimated (its standard error is
    about 0.5 / sqrt(sample): at most 0.011 for 2000).
    """
    coll = _collection(store, library, model)
    labelled = {"__not__": {"label": None}}
    n = store.count(coll, labelled)
    if sample == -1:
        sample = AGREEMENT_SAMPLE
    if sample and n > sample:
        return _sampled_agreement(store, coll, k, labelled, n, sample, seed)
    ids, nbr, _scores = store.knn_graph(coll, k, flt=labelled)
    if len(ids) < 2:
        raise LibraryError(f"agreement needs at least 2 labelled clips (found {len(ids)})")
    labels = {r.id: r.payload.get("label") for r in store.retrieve(coll, ids)}
    lab = [labels[i] for i in ids]
    per: dict[str, list[float]] = defaultdict(list)
    for row, own in enumerate(lab):
        js = [j for j in nbr[row] if j >= 0]
        if not js:
            continue
        per[own].append(float(np.mean([lab[j] == own for j in js])))
    return _summarise(per, len(ids), None)


def _sampled_agreement(store: Store, coll: str, k: int, labelled: dict, n: int, sample: int, seed: int) -> dict:
    ids = [r.id for r in store.scroll(coll, labelled)]
    rng = np.random.default_rng(seed)
    chosen = store.retrieve(coll, [ids[i] for i in np.sort(rng.choice(len(ids), sample, replace=False))],
                            with_vectors=True)
    per: dict[str, list[float]] = defaultdict(list)
    for start in range(0, len(chosen), 256):
        part = chosen[start : start + 256]
        rows = store.query_batch(coll, np.stack([r.vector for r in part]), k + 1, labelled)
        for rec, hits in zip(part, rows):
            others = [h for h in hits if h.id != rec.id][:k]
            if others:
                own = rec.payload.get("label")
                per[own].append(float(np.mean([h.payload.get("label") == own for h in others])))
    return _summarise(per, n, len(chosen))


def _summarise(per: dict[str, list[float]], n: int, sampled: int | None) -> dict:
    all_scores = [s for v in per.values() for s in v]
    return {"overall": float(np.mean(all_scores)) if all_scores else 0.0,
            "per_label": {k_: float(np.mean(v)) for k_, v in sorted(per.items())}, "n": n, "sampled": sampled}


def class_stats(store: Store, library: str, model: str, k: int = 5, nearest: int = 5) -> dict:
    """Label counts, agreement@k (overall and per class), centroid cosine matrix, the most typical
    members of each class (nearest its centroid) and the nearest clips from outside the class
    (Qdrant recommend, average-vector strategy, which leaves the class's own clips out)."""
    coll = _collection(store, library, model)
    counts = label_counts(store, library, model)
    if len(counts) < 1:
        raise LibraryError(f"library '{library}' has no labelled clips (put clips in sub-folders to label them)")
    labels = sorted(counts)
    agr = agreement(store, library, model, k)
    cents = np.stack([centroid(store, coll, lb) for lb in labels])
    unit = cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    typical = {lb: nearest_to_centroid(store, library, model, lb, k=nearest, same_label_only=True, centre=c)
               for lb, c in zip(labels, cents)}
    near = {lb: nearest_to_centroid(store, library, model, lb, k=nearest) for lb in labels}
    return {"library": library, "model": model, "k": k, "labels": labels, "counts": counts,
            "n_labelled": agr["n"], "agreement_sampled": agr["sampled"], "overall_agreement": agr["overall"],
            "agreement": {lb: agr["per_label"].get(lb, 0.0) for lb in labels},
            "centroid_similarity": np.round(sim, 6).tolist(), "typical": typical, "nearest": near}
