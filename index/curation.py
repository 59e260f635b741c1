"""User edits and curation, as Qdrant payload updates on the clip's shared point id.

- Tags (`tags`, a list) and a user label (`label` with `label_source: "user"`, the folder's
  label kept as `folder_label`) are written to the clip's point in every model collection of
  the library, and to the library's edits collection (`naming.edits_collection_name`), which is
  the record re-indexing merges from (`merge_edits`): a re-index never clobbers an edit, and a
  model indexed after the edit gets it too.
- Edits of one library are serialised by a lock (no lost update between two tabs of one
  server); each edit returns what it replaced, which `restore` puts back (undo).
- Cluster ids (`cluster`, `cluster_name`) are written to the chosen model's collection only:
  clusters are a model's view of the library.
- Nothing half-written: an edit (or a clustering) first asks the store whether its disk has room
  (`Store.check_space`: one-line StoreError, nothing written), and a write that fails part-way is
  undone in the collections already written before the StoreError goes on.
- Near-duplicates: every clip's nearest neighbours above a cosine threshold, from batched
  Qdrant queries, joined into groups; exact duplicates share a content hash.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .libraries import LibraryError, get_library
from .naming import collection_name, edits_collection_name
from .store import Store, StoreError

EDIT_INDEXES = {"tags": "keyword", "label_source": "keyword", "cluster": "integer"}
MAX_TAG_LEN = 64
UNSET = object()  # "leave the label as it is"

_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()
Undo = list[tuple[str, "dict | None"]]  # (clip id, its edits record before the edit, None: had none)


def _lock(library: str) -> threading.Lock:
    with _locks_guard:
        return _locks[library]


@dataclass
class EditResult:
    """What an edit did."""

    changed: int                      # clips whose tags or label changed
    missing: list[str] = field(default_factory=list)  # ids asked for that are not in the library
    collections: int = 0              # model collections written
    clips: int = 0                    # clips the edit applied to (after expanding to whole files)
    undo: Undo = field(default_factory=list)  # what `restore` needs to undo the edit

    def summary(self) -> str:
        """One line for the user."""
        s = f"{self.changed} of {self.clips} clips changed in {self.collections} model collections"
        if self.missing:
            s += f"; {len(self.missing)} no longer in the library (skipped)"
        return s


def check_tag(tag: str) -> str:
    """A tag as stored (trimmed); ValueError for an empty or over-long one."""
    t = " ".join(str(tag).split())
    if not t:
        raise ValueError("a tag cannot be empty")
    if len(t) > MAX_TAG_LEN:
        raise ValueError(f"a tag has at most {MAX_TAG_LEN} characters ('{t[:20]}…' has {len(t)})")
    return t


def clip_collections(store: Store, library: str) -> list[str]:
    """The clip collections of every model of the library."""
    lib = get_library(store, library)
    return [c for c in (collection_name(library, m) for m in lib.models) if store.has_collection(c)]


def _ensure_edits(store: Store, library: str) -> str:
    coll = edits_collection_name(library)
    if not store.has_collection(coll):
        store.create_collection(coll, 1, indexes={"tags": "keyword", "file_id": "keyword"})
    return coll


def _edit_records(store: Store, library: str, ids: Sequence[str]) -> dict[str, dict]:
    coll = edits_collection_name(library)
    if not ids or not store.has_collection(coll):
        return {}
    return {r.id: r.payload for r in store.retrieve(coll, list(ids))}


def _current(store: Store, colls: list[str], ids: Sequence[str]) -> dict[str, dict]:
    """The present payload of each id (from the first collection that has it)."""
    out: dict[str, dict] = {}
    left = list(ids)
    for coll in colls:
        if not left:
            break
        for r in store.retrieve(coll, left):
            out[r.id] = r.payload
        left = [i for i in left if i not in out]
    return out


def whole_files(store: Store, library: str, ids: Sequence[str]) -> list[str]:
    """`ids` plus every other segment of the same files (a tag for the whole recording)."""
    colls = clip_collections(store, library)
    if not colls:
        return list(ids)
    cur = _current(store, colls, ids)
    file_ids = sorted({p.get("file_id") for p in cur.values() if p.get("file_id")})
    out = list(dict.fromkeys(ids))
    if file_ids:
        seen = set(out)
        for r in store.scroll(colls[0], flt={"file_id": file_ids}):
            if r.id not in seen:
                seen.add(r.id)
                out.append(r.id)
    return out


def _edit_payload(rec: dict) -> dict:
    """The clip payload fields an edits record stands for."""
    p: dict = {"tags": sorted(rec.get("tags") or [])}
    if rec.get("user_label"):
        p.update(label=rec["user_label"], label_source="user", folder_label=rec.get("folder_label"))
    else:
        p.update(label=rec.get("folder_label"), label_source=None, folder_label=rec.get("folder_label"))
    return p


def _write(store: Store, library: str, colls: list[str], records: dict[str, dict],
           done: list[str] | None = None) -> None:
    """Write edits records (id -> record) to the edits collection and every model collection
    (appending to `done` each collection as it is written to)."""
    if not records:
        return
    done = [] if done is None else done
    ecoll = _ensure_edits(store, library)
    ids = list(records)
    done.append(ecoll)
    store.upsert(ecoll, ids, np.ones((len(ids), 1), np.float32), [records[i] for i in ids])
    groups: dict[str, list[str]] = defaultdict(list)  # one payload update per distinct payload
    payloads: dict[str, dict] = {}
    for i, rec in records.items():
        p = _edit_payload(rec)
        key = repr(sorted(p.items()))
        groups[key].append(i)
        payloads[key] = p
    for coll in colls:
        done.append(coll)
        for key in EDIT_INDEXES:
            if key != "cluster":
                store.ensure_index(coll, key, EDIT_INDEXES[key])
        store.update_payloads(coll, [(members, {k: v for k, v in payloads[key].items() if v is not None},
                                      [k for k, v in payloads[key].items() if v is None])
                                     for key, members in groups.items()])


def _undo_records(last: Undo, cur: dict[str, dict]) -> dict[str, dict]:
    """The edits records that put back what an edit replaced (ids no longer present are left out)."""
    records = {}
    for i, rec in last:
        if i not in cur:
            continue
        p = cur[i]
        records[i] = rec or {"tags": [], "user_label": None, "folder_label": p.get("folder_label", p.get("label")),
                             "file_id": p.get("file_id"), "path": p.get("path")}
    return records


EDIT_KEYS = ("tags", "label", "label_source", "folder_label")  # the clip payload keys an edit writes


def _put_back(store: Store, library: str, colls: list[str], undo: Undo, cur: dict[str, dict]) -> None:
    """Restore exactly what `_write` replaced in `colls` (the edits collection among them): each
    clip's edit keys as they were in `cur`, and each edits record as it was (or none)."""
    ecoll = edits_collection_name(library)
    had = {i: rec for i, rec in undo if rec is not None}
    if ecoll in colls:
        if had:
            ids = list(had)
            store.upsert(ecoll, ids, np.ones((len(ids), 1), np.float32), [had[i] for i in ids])
        fresh = [i for i, rec in undo if rec is None]
        if fresh:
            store.delete(ecoll, fresh)
    groups: dict[str, list[str]] = defaultdict(list)  # one update per distinct set of old values
    values: dict[str, dict] = {}
    for i, _rec in undo:
        old = {k: cur.get(i, {}).get(k) for k in EDIT_KEYS if k in cur.get(i, {})}
        key = repr(sorted(old.items()))
        groups[key].append(i)
        values[key] = old
    for coll in colls:
        if coll == ecoll:
            continue
        for key, members in groups.items():
            old = values[key]
            if old:
                store.set_payload(coll, members, old)
            gone = [k for k in EDIT_KEYS if k not in old]
            if gone:
                store.delete_payload(coll, members, gone)


def _write_whole(store: Store, library: str, colls: list[str], records: dict[str, dict], undo: Undo,
                 cur: dict[str, dict]) -> None:
    """`_write`, all or nothing: the disk is checked first; a write failing part-way is undone in
    the collections already written, and the StoreError says so."""
    if not records:
        return
    store.check_space()
    done: list[str] = []
    try:
        _write(store, library, colls, records, done)
    except StoreError as exc:
        if not done:
            raise
        try:
            _put_back(store, library, done, undo, cur)
        except StoreError as again:
            raise StoreError(f"{exc} (the edit was written to {len(done)} collections and could not be undone: "
                             f"{again})") from None
        raise StoreError(f"{exc} (nothing was changed: the part already written was undone)") from None


def edit(store: Store, library: str, ids: Iterable[str], add: Iterable[str] = (), remove: Iterable[str] = (),
         label: object = UNSET, whole_file: bool = False) -> EditResult:
    """Add/remove tags and/or set the user label (a str; None reverts to the folder's label) of
    clips, in every model collection of the library. Unknown ids are reported, not fatal."""
    add_t = [check_tag(t) for t in add]
    rm_t = {check_tag(t) for t in remove}
    if label is not UNSET and label is not None:
        label = check_tag(str(label))
    ids = list(dict.fromkeys(str(i) for i in ids))
    if not ids:
        raise ValueError("nothing selected: select clips on the map (or give ids) first")
    if not add_t and not rm_t and label is UNSET:
        raise ValueError("nothing to do: give a tag to add or remove, or a label")
    with _lock(library):
        colls = clip_collections(store, library)
        if not colls:
            raise LibraryError(f"library '{library}' has no clips yet")
        if whole_file:
            ids = whole_files(store, library, ids)
        cur = _current(store, colls, ids)
        missing = [i for i in ids if i not in cur]
        present = [i for i in ids if i in cur]
        before = _edit_records(store, library, present)
        new: dict[str, dict] = {}
        undo: list[tuple[str, dict | None]] = []
        for i in present:
            p = cur[i]
            rec = dict(before.get(i) or {"tags": [], "user_label": None,
                                         "folder_label": p.get("folder_label", p.get("label")),
                                         "file_id": p.get("file_id"), "path": p.get("path")})
            tags = [t for t in rec.get("tags") or [] if t not in rm_t]
            tags += [t for t in add_t if t not in tags]
            rec["tags"] = sorted(tags)
            if label is not UNSET:
                rec["user_label"] = label
            old = before.get(i) or {"tags": [], "user_label": None}
            if sorted(old.get("tags") or []) != rec["tags"] or old.get("user_label") != rec["user_label"]:
                new[i] = rec
                undo.append((i, before.get(i)))
        _write_whole(store, library, colls, new, undo, cur)
        return EditResult(len(new), missing, len(colls), len(present), undo)


def restore(store: Store, library: str, last: Undo) -> EditResult:
    """Put back what an edit replaced (its `EditResult.undo`): the undo of that edit."""
    with _lock(library):
        colls = clip_collections(store, library)
        cur = _current(store, colls, [i for i, _ in last])
        records = _undo_records(last, cur)
        before = _edit_records(store, library, list(records))
        _write_whole(store, library, colls, records, [(i, before.get(i)) for i in records], cur)
        return EditResult(len(records), [i for i, _ in last if i not in cur], len(colls), len(last))


def merge_edits(store: Store, library: str, ids: Sequence[str], payloads: list[dict]) -> list[dict]:
    """Payloads about to be (re)written for `ids`, with the library's user edits applied (so
    re-indexing, and a model indexed later, keep them)."""
    recs = _edit_records(store, library, ids)
    if not recs:
        return payloads
    out = []
    for i, p in zip(ids, payloads):
        rec = recs.get(i)
        if rec is None:
            out.append(p)
            continue
        q = dict(p)
        rec = {**rec, "folder_label": p.get("label")}  # the folder's label as indexed now
        q.update({k: v for k, v in _edit_payload(rec).items() if v is not None})
        out.append(q)
    return out


def tag_counts(store: Store, library: str, model: str) -> dict[str, int]:
    """{tag: clips} in (library, model), most used first (Qdrant facet)."""
    coll = collection_name(library, model)
    if not store.has_collection(coll):
        raise LibraryError(f"library '{library}' has no collection for model '{model}'")
    store.ensure_index(coll, "tags", "keyword")
    return {k: v for k, v in store.facet(coll, "tags", limit=10000).items() if k not in (None, "")}


def ids_where(store: Store, library: str, model: str, flt: dict) -> list[str]:
    """Ids of the clips of (library, model) matching a payload filter (e.g. {"tags": "keep"})."""
    coll = collection_name(library, model)
    if not store.has_collection(coll):
        raise LibraryError(f"library '{library}' has no collection for model '{model}'")
    return [r.id for r in store.scroll(coll, flt=flt)]


def write_clusters(store: Store, library: str, model: str, ids: Sequence[str], clusters: Sequence[int],
                   names: dict[int, str]) -> None:
    """Persist cluster ids (and names) in (library, model)'s payload; noise gets cluster -1. All or
    nothing: the disk is checked first, and a write failing part-way puts the previous ids back."""
    coll = collection_name(library, model)
    store.check_space()
    store.ensure_index(coll, "cluster", "integer")
    groups: dict[int, list[str]] = defaultdict(list)
    for i, c in zip(ids, clusters):
        groups[int(c)].append(i)
    written: list[str] = []
    old = {r.id: (r.payload.get("cluster"), r.payload.get("cluster_name")) for r in store.retrieve(coll, list(ids))}
    try:
        for c, members in groups.items():
            written.extend(members)
            store.set_payload(coll, members, {"cluster": c, "cluster_name": names.get(c, "noise")})
    except StoreError as exc:
        previous: dict[tuple, list[str]] = defaultdict(list)
        for i in written:
            previous[old.get(i, (None, None))].append(i)
        try:
            for (c, name), members in previous.items():
                if c is None:
                    store.delete_payload(coll, members, ["cluster", "cluster_name"])
                else:
                    store.set_payload(coll, members, {"cluster": c, "cluster_name": name})
        except StoreError as again:
            raise StoreError(f"{exc} (the clusters were saved in part and the previous ones could not be put "
                             f"back: {again})") from None
        raise StoreError(f"{exc} (the clusters were not saved; the previous ones are kept)") from None


@dataclass
class DuplicateGroup:
    """Clips that are the same sound."""

    ids: list[str]                 # the group's clips, the one to keep first
    paths: list[str]
    kind: str                      # "exact" (same bytes only) or "near" (cosine above the threshold; the
                                   # group may hold byte-identical copies too)
    similarity: float              # the lowest similarity that joined the group (1.0 for exact)


# Cosine thresholds that found copies best (pairwise F1 on real one-shots with mp3, resampled,
# +3 dB and trimmed copies: benchmarks/curation_scale.py, see benchmarks/README.md). A model's
# cosines spread differently: dsp's statistics vectors sit close together, so 0.98 groups
# different sounds there, while learned models need a looser bound to catch re-encoded copies.
DUPLICATE_THRESHOLDS = {"dsp": 0.999, "musicnn-msd": 0.95, "vgg-msd": 0.96}
DEFAULT_DUPLICATE_THRESHOLD = 0.98


def duplicate_threshold(model: str | None) -> float:
    """The measured best near-duplicate cosine threshold for `model` (0.98 where unmeasured)."""
    return DUPLICATE_THRESHOLDS.get(model or "", DEFAULT_DUPLICATE_THRESHOLD)


def near_duplicates(store: Store, library: str, model: str, threshold: float | None = None, k: int = 8,
                    batch: int = 256) -> list[DuplicateGroup]:
    """Groups of clips whose vectors' cosine is at least `threshold` (default: the model's measured
    best, `duplicate_threshold`) from batched Qdrant queries for each clip's k nearest neighbours,
    joined transitively, plus exact duplicates (same content hash, recorded at indexing as
    `copies`). Largest groups first."""
    if threshold is None:
        threshold = duplicate_threshold(model)
    if not 0 < threshold <= 1:
        raise ValueError(f"the threshold is a cosine similarity in (0, 1], got {threshold}")
    coll = collection_name(library, model)
    if not store.has_collection(coll):
        raise LibraryError(f"library '{library}' has no collection for model '{model}'")
    ids, vecs, pays = [], [], []
    for r in store.scroll(coll, with_vectors=True):
        ids.append(r.id)
        vecs.append(r.vector)
        pays.append(r.payload)
    pos = {i: n for n, i in enumerate(ids)}
    parent = list(range(len(ids)))
    weakest: dict[int, float] = {}

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    X = np.asarray(vecs, np.float32) if vecs else np.zeros((0, 1), np.float32)
    for start in range(0, len(ids), batch):
        rows = store.query_batch(coll, X[start:start + batch], k + 1)
        for n, hits in enumerate(rows):
            a = start + n
            for h in hits:
                b = pos.get(h.id)
                if b is None or b == a or h.score < threshold:
                    continue
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[rb] = ra
                    weakest[ra] = min(weakest.get(ra, 1.0), weakest.get(rb, 1.0), float(h.score))
                else:
                    weakest[ra] = min(weakest.get(ra, 1.0), float(h.score))
    groups: dict[int, list[int]] = defaultdict(list)
    for n in range(len(ids)):
        groups[find(n)].append(n)
    out = []
    for root, members in groups.items():
        # byte-identical files are one point whose other paths are in `copies` (recorded at indexing)
        entries = sorted((pays[n].get("path", ""), ids[n]) for n in members)
        entries += sorted((c, ids[n]) for n in members for c in pays[n].get("copies") or [])
        if len(entries) < 2:
            continue
        entries.sort()
        kind = "near" if len(members) > 1 else "exact"
        out.append(DuplicateGroup([i for _p, i in entries], [p for p, _i in entries], kind,
                                  round(weakest.get(root, 1.0), 6) if kind == "near" else 1.0))
    out.sort(key=lambda g: (-len(g.ids), g.paths[0]))
    return out
