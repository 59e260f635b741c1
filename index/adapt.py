"""Library-adapted search: a per-(library, model) whitening fitted on the library's own vectors.

The transform (projections/whitening.py, method "diag": centering + per-dimension
whitening with shrinkage; no labels) is fitted after indexing and stored in Qdrant with
the model's collections, in a companion collection `<clip collection>__adapt` (one point,
1-d vector, the mean and scale in its payload), so it travels and is dropped with the
library. The model collections keep their raw vectors and schema.

A fused model (embedders/fusion.py) is whitened part by part (`blocks`: each part's columns
centred and scaled on their own, then re-weighted by the fusion's weights), so adapting keeps the
fusion's weights (whitening the concatenation as one vector evens them out).

Search applies it the same way to the query (an uploaded clip, a stored clip, a text-tower
vector) and to the candidates: the `RERANK_POOL` nearest clips by raw cosine are fetched
with their vectors, adapted, and ranked by diffusion on the pool's mutual-kNN graph
(projections/diffusion.py: a candidate reached through a chain of close neighbours ranks above
one only moderately close to the query); a hit's `score` stays its adapted cosine, and a copy of
the query (adapted cosine >= 0.9999, e.g. the clip itself) always comes first. Measured on the two
real benchmark sets (benchmarks/rerank_quality.py, README): per-part whitening + diffusion lift
sfx P@5 0.560 -> 0.59 and music cross-source 0.683 -> 0.71; hubness reduction (CSLS, mutual
proximity, local scaling), DBA and query expansion did not do better. `AUDIO_EXPLORER_DIFFUSION=0`
ranks the pool by adapted cosine instead.

Refitted at the end of an indexing run when the library's clip count moved by more than
`REFIT_CHANGE` since the fit; below `MIN_CLIPS` clips nothing is fitted (raw search).
`AUDIO_EXPLORER_ADAPT=0` turns adapted search off (raw cosine everywhere).
"""
from __future__ import annotations

import os
import time

import numpy as np

from projections.consensus import consensus_scores, knn_lists, mutual_rate
from projections.diffusion import pool_diffusion
from projections.whitening import DEFAULT_ALPHA, DEFAULT_METHOD, Whitening, fit_whitening

from .naming import collection_name, meta_point_id
from .store import Store
from .store.interface import Hit

ADAPT_SUFFIX = "__adapt"
ADAPT_ENV = "AUDIO_EXPLORER_ADAPT"
DIFFUSION_ENV = "AUDIO_EXPLORER_DIFFUSION"
SAME_CLIP = 0.9999  # adapted cosine of a copy of the query: ranked first whatever the diffusion says
MIN_CLIPS = 50
REFIT_CHANGE = 0.2
RERANK_POOL = 100
FIT_MAX = 20000  # vectors the transform is fitted on (the first in point-id order: ids are content hashes)


def adapt_collection_name(library: str, model: str) -> str:
    """The companion collection holding the (library, model) transform."""
    return collection_name(library, model) + ADAPT_SUFFIX


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether adapted search is on (`AUDIO_EXPLORER_ADAPT`, default on)."""
    return _flag(ADAPT_ENV)


def diffusion_enabled() -> bool:
    """Whether adapted search ranks its pool by diffusion (`AUDIO_EXPLORER_DIFFUSION`, default on)."""
    return _flag(DIFFUSION_ENV)


def model_blocks(model: str, dim: int) -> list[tuple[int, int, float]] | None:
    """A fused model's part ranges (embedders.fusion.part_blocks) when they match `dim`, else None."""
    from embedders.fusion import part_blocks

    bl = part_blocks(model)
    return bl if bl and bl[-1][1] == dim else None


def _point(library: str, model: str) -> str:
    return meta_point_id(f"{library}/adapt/{model}")


def save_adaptation(store: Store, library: str, model: str, w: Whitening) -> None:
    """Store a fitted transform with the (library, model) collections."""
    if w.diag is None:
        raise ValueError("only per-dimension ('diag' / 'center') transforms are stored with a library")
    coll = adapt_collection_name(library, model)
    if not store.has_collection(coll):
        store.create_collection(coll, 1)
    store.upsert(coll, [_point(library, model)], np.ones((1, 1), np.float32), [{
        "model": model, "method": w.method, "alpha": w.alpha, "n_fit": w.n_fit, "fitted": time.time(),
        "mean": [float(v) for v in w.mean], "diag": [float(v) for v in w.diag],
        "blocks": [[a, b, wt] for a, b, wt in w.blocks] if w.blocks else None}])


def load_adaptation(store: Store, library: str, model: str) -> Whitening | None:
    """The stored transform of (library, model), or None."""
    coll = adapt_collection_name(library, model)
    if not store.has_collection(coll):
        return None
    recs = store.retrieve(coll, [_point(library, model)])
    if not recs:
        return None
    p = recs[0].payload
    mean = np.asarray(p["mean"], np.float64)
    blocks = [(int(a), int(b), float(wt)) for a, b, wt in p["blocks"]] if p.get("blocks") else None
    return Whitening(mean, np.zeros((mean.size, 0)), np.zeros(0), 1.0, float(p["alpha"]), int(p["n_fit"]),
                     np.asarray(p["diag"], np.float64), str(p["method"]), blocks)


def drop_adaptation(store: Store, library: str, model: str) -> None:
    """Forget the transform of (library, model) (raw search from now on)."""
    coll = adapt_collection_name(library, model)
    if store.has_collection(coll):
        store.delete_collection(coll)


def fit_adaptation(store: Store, library: str, model: str, method: str = DEFAULT_METHOD,
                   alpha: float = DEFAULT_ALPHA) -> Whitening | None:
    """Fit the transform on every clip vector of (library, model) and store it; None (and any
    old one dropped) when the library has fewer than MIN_CLIPS clips."""
    coll = collection_name(library, model)
    vecs = []
    for r in store.scroll(coll, with_vectors=True):  # id order = content-hash order: a fair sample
        vecs.append(r.vector)
        if len(vecs) >= FIT_MAX:
            break
    if len(vecs) < MIN_CLIPS:
        drop_adaptation(store, library, model)
        return None
    x = np.stack(vecs)
    blocks = model_blocks(model, x.shape[1]) if method == "diag" else None
    w = fit_whitening(x, alpha=alpha, method=method, blocks=blocks)
    save_adaptation(store, library, model, w)
    return w


def refresh_adaptations(store: Store, library: str, models: list[str]) -> list[str]:
    """Fit or refit the transforms whose library changed by more than REFIT_CHANGE since their
    fit (or that have none), then, if any was, every model's quality estimate (what
    `best_model` picks the default model by); returns the models refitted. `models`: all of
    the library's models."""
    out = []
    for model in models:
        coll = collection_name(library, model)
        if not store.has_collection(coll):
            continue
        n = store.count(coll)
        old = load_adaptation(store, library, model)
        stale = old is not None and old.blocks is None and old.method == "diag" and model_blocks(model, old.dim)
        if old is not None and not stale and abs(n - old.n_fit) <= REFIT_CHANGE * max(old.n_fit, 1):
            continue
        if old is None and n < MIN_CLIPS:
            continue
        fit_adaptation(store, library, model)
        out.append(model)
    if out:  # the estimates compare models: recompute them all
        store_quality(store, library, quality_estimates(store, library, models))
    return out


def rerank(store: Store, coll: str, w: Whitening, vector: np.ndarray, k: int, flt=None,
           one_per_file: bool = False) -> list[Hit]:
    """The k best of the RERANK_POOL raw nearest clips, adapted and ranked by diffusion (module
    docstring; by adapted cosine with AUDIO_EXPLORER_DIFFUSION=0); score = adapted cosine; one hit
    per file with `one_per_file`."""
    pool = store.query(coll, np.asarray(vector, np.float32), max(RERANK_POOL, 10 * k), flt=flt, with_vectors=True)
    if not pool:
        return []
    q = w.apply(np.asarray(vector, np.float64))
    cand = w.apply(np.stack([h.vector for h in pool]))
    scores = cand @ q
    rank = pool_diffusion(q, cand) if diffusion_enabled() and len(pool) > 1 else scores.astype(np.float64)
    rank = np.where(scores >= SAME_CLIP, np.inf, rank)  # the clip itself (or an exact copy) first
    out: list[Hit] = []
    seen: set[str] = set()
    for i in np.lexsort((-scores, -rank)):
        h = pool[int(i)]
        if one_per_file:
            if h.path in seen:
                continue
            seen.add(h.path)
        out.append(Hit(h.id, float(scores[i]), h.payload))
        if len(out) == k:
            break
    return out


# ----------------------------------------------------------------------------- default model

QUALITY_SAMPLE = 2000  # clips scored per model (the first in point-id order: ids are content hashes)
QUALITY_K = 10


def quality_estimates(store: Store, library: str, models: list[str]) -> dict[str, dict]:
    """{model: {"score", "kind", "n"}}: how good each model's neighbours are likely to be.

    With labels on at least 20 clips of 2+ classes: kNN label agreement (k=10) over the
    labelled clips ("labels"). Without: with 3+ models, the mean overlap of a model's 10
    nearest neighbours with every other model's ("consensus", projections/consensus.py: on the
    two real benchmark sets it picks the best-P@5 model); with 2 models, the fraction of
    mutual nearest neighbours ("mutual"). Vectors are the adapted ones where a transform exists.
    """
    models = [m for m in models if store.has_collection(collection_name(library, m))]
    if not models:
        return {}
    labels: dict[str, str | None] = {}
    first: dict[str, np.ndarray] = {}
    for r in store.scroll(collection_name(library, models[0]), with_vectors=True):  # a fair sample (hash order)
        first[r.id] = r.vector
        labels[r.id] = r.payload.get("label")
        if len(first) >= QUALITY_SAMPLE:
            break
    vecs: dict[str, dict[str, np.ndarray]] = {models[0]: first}
    for model in models[1:]:
        recs = store.retrieve(collection_name(library, model), list(first), with_vectors=True)
        vecs[model] = {r.id: r.vector for r in recs}
    shared = sorted(set.intersection(*(set(v) for v in vecs.values())))
    if len(shared) < 3:
        return {}
    mats = {}
    for model, got in vecs.items():
        x = np.stack([got[i] for i in shared]).astype(np.float64)
        w = load_adaptation(store, library, model) if enabled() else None
        mats[model] = w.apply(x).astype(np.float64) if w is not None else x / np.maximum(
            np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    lab = np.asarray([labels.get(i) for i in shared], object)
    has = np.asarray([v is not None for v in lab])
    out: dict[str, dict] = {}
    if has.sum() >= 20 and len(set(lab[has])) >= 2:
        for model, x in mats.items():
            nn = knn_lists(x[has], QUALITY_K)
            ll = lab[has]
            out[model] = {"score": float((ll[nn] == ll[:, None]).mean()), "kind": "labels", "n": int(has.sum())}
        return out
    if len(mats) >= 3:
        scores, kind = consensus_scores(mats, QUALITY_K), "consensus"
    else:
        scores, kind = {m: mutual_rate(x, QUALITY_K) for m, x in mats.items()}, "mutual"
    return {m: {"score": v, "kind": kind, "n": len(shared)} for m, v in scores.items()}


def store_quality(store: Store, library: str, estimates: dict[str, dict]) -> None:
    """Keep each model's estimate with its transform (payload "quality")."""
    for model, q in estimates.items():
        coll = adapt_collection_name(library, model)
        if store.has_collection(coll) and store.retrieve(coll, [_point(library, model)]):
            store.set_payload(coll, [_point(library, model)], {"quality": q})


def best_model(store: Store, library: str, models: list[str]) -> str | None:
    """The model with the best stored quality estimate (None when none has one)."""
    best, best_score = None, -np.inf
    for model in models:
        coll = adapt_collection_name(library, model)
        if not store.has_collection(coll):
            continue
        recs = store.retrieve(coll, [_point(library, model)])
        q = recs[0].payload.get("quality") if recs else None
        if q and q.get("score") is not None and q["score"] > best_score:
            best, best_score = model, float(q["score"])
    return best
