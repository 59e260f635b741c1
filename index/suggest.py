"""Suggested labels in Qdrant: a classifier trained on a (library, model)'s labelled clips (folder,
parsed or user labels) writes `pred_label` / `pred_conf` into the payload of every unlabelled clip.

- Predictions are a model's view (like clusters): written to that model's collection only.
- Only the `pred_*` keys are written; a clip's `label` is never touched. A clip that has a label
  (or got one since the last run) carries no prediction: its `pred_*` keys are removed.
- All or nothing: the disk is checked first; a write failing part-way puts the previous values back.
- Written under the library's edit lock (`index.curation`), so a label set meanwhile is respected.
- Re-indexing writes only new points; `index --rebuild` drops a model's predictions (run
  `classify` again). User labels themselves live in the edits collection and are never lost.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from projections import classify as clf_mod
from projections.classify import LabelClassifier, Quality, Suggestions

from .curation import _lock
from .libraries import LibraryError
from .naming import collection_name
from .queries import read_vectors
from .store import Store, StoreError

PRED_FIELDS = ("pred_label", "pred_conf")
PRED_INDEXES = {"pred_label": "keyword", "pred_conf": "float"}
SOURCE_FIELDS = ("source", "kit", "artist")  # payload fields that name where a clip came from
CONF_DECIMALS = 3


@dataclass
class Classified:
    """One training run on (library, model) and the predictions it wrote."""

    library: str
    model: str
    classifier: LabelClassifier
    ids: list[str]                  # [n] every clip of the collection
    vectors: np.ndarray             # [n, dim]
    payloads: list[dict]            # [n] as read (before the predictions were written)
    labelled: np.ndarray            # [n] bool
    suggestions: Suggestions        # for the unlabelled rows, in order of `np.flatnonzero(~labelled)`
    proba: np.ndarray               # [n_unlabelled, n_classes]
    written: int                    # unlabelled clips given a prediction
    cleared: int                    # labelled clips whose old prediction was removed
    fit_s: float
    write_s: float

    @property
    def unlabelled_ids(self) -> list[str]:
        """Ids of the clips that got a prediction, in the order of `suggestions`."""
        return [self.ids[i] for i in np.flatnonzero(~self.labelled)]

    def summary(self) -> str:
        """One line for the user."""
        c = self.classifier
        return (f"classifier on {c.n_train} labelled clips of {len(c.classes)} labels ({self.model}): "
                f"{self.written} unlabelled clips got a suggested label "
                f"(fit {self.fit_s:.2f} s, written {self.write_s:.2f} s)")


def _collection(store: Store, library: str, model: str) -> str:
    coll = collection_name(library, model)
    if not store.has_collection(coll):
        raise LibraryError(f"library '{library}' has no collection for model '{model}'")
    return coll


def is_labelled(payload: dict) -> bool:
    """Whether a clip has a real label (folder, parsed or user-set)."""
    return payload.get("label") not in (None, "")


def source_field(payloads: Sequence[dict]) -> str | None:
    """The first of SOURCE_FIELDS that most (>= 80 %) labelled clips carry, with at least two values."""
    lab = [p for p in payloads if is_labelled(p)]
    for key in SOURCE_FIELDS:
        vals = [p.get(key) for p in lab if p.get(key) not in (None, "")]
        if lab and len(vals) >= 0.8 * len(lab) and len(set(map(str, vals))) >= 2:
            return key
    return None


def groups_of(ids: Sequence[str], payloads: Sequence[dict], by: str = "file") -> list[str]:
    """The fold group of each clip: its file (`file_id`: a long file's segments stay together) or a
    source field (clips without it form one group per file)."""
    out = []
    for i, p in zip(ids, payloads):
        fid = str(p.get("file_id") or i)
        if by == "file":
            out.append(fid)
        else:
            v = p.get(by)
            out.append(f"{by}:{v}" if v not in (None, "") else f"file:{fid}")
    return out


def train(store: Store, library: str, model: str, write: bool = True, C: float = 0.5) -> Classified:
    """Fit the classifier on every labelled clip of (library, model) and (with `write`) store
    each unlabelled clip's suggestion and confidence in its payload."""
    coll = _collection(store, library, model)
    ids, X, pays = read_vectors(store, library, model)
    if not ids:
        raise LibraryError(f"library '{library}' has no clips for model '{model}'")
    labelled = np.asarray([is_labelled(p) for p in pays], bool)
    t0 = time.perf_counter()
    clf = clf_mod.fit(X[labelled], [pays[i]["label"] for i in np.flatnonzero(labelled)], C=C)
    un = np.flatnonzero(~labelled)
    proba = clf.proba(X[un])
    sugg = clf_mod.suggest(clf, X[un])
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    written = cleared = 0
    if write:
        written, cleared = write_predictions(store, library, model, [ids[i] for i in un], sugg.label,
                                             sugg.conf, stale=[ids[i] for i in np.flatnonzero(labelled)
                                                               if any(k in pays[i] for k in PRED_FIELDS)])
    return Classified(library, model, clf, ids, X, pays, labelled, sugg, proba, written, cleared, fit_s,
                      time.perf_counter() - t1)


def write_predictions(store: Store, library: str, model: str, ids: Sequence[str], labels: Sequence[str],
                      confs: Sequence[float], stale: Sequence[str] = ()) -> tuple[int, int]:
    """Write `pred_label` / `pred_conf` to the clips `ids` that are still unlabelled, and remove them
    from `stale` clips (labelled ones). (written, cleared). All or nothing."""
    coll = _collection(store, library, model)
    with _lock(library):
        store.check_space()
        cur = {r.id: r.payload for r in store.retrieve(coll, list(ids) + list(stale))}
        # a clip labelled since the vectors were read keeps its label and gets no prediction
        stale = [i for i in stale if i in cur] + [i for i in ids if i in cur and is_labelled(cur[i])]
        groups: dict[tuple[str, float], list[str]] = defaultdict(list)
        for i, lab, c in zip(ids, labels, confs):
            if i in cur and not is_labelled(cur[i]):
                groups[(str(lab), round(float(c), CONF_DECIMALS))].append(i)
        for key, kind in PRED_INDEXES.items():
            store.ensure_index(coll, key, kind)
        updates = [(members, {"pred_label": lab, "pred_conf": conf}, []) for (lab, conf), members in groups.items()]
        if stale:
            updates.append((list(stale), {}, list(PRED_FIELDS)))
        try:
            store.update_payloads(coll, updates)
        except StoreError as exc:
            _put_back(store, coll, cur)
            raise StoreError(f"{exc} (the suggestions were not saved; the previous ones are kept)") from None
        return sum(len(m) for m in groups.values()), len(stale)


def _put_back(store: Store, coll: str, cur: dict[str, dict]) -> None:
    had: dict[tuple, list[str]] = defaultdict(list)
    for i, p in cur.items():
        had[(p.get("pred_label"), p.get("pred_conf"))].append(i)
    try:
        store.update_payloads(coll, [(m, {"pred_label": lab, "pred_conf": c}, []) if lab is not None
                                     else (m, {}, list(PRED_FIELDS)) for (lab, c), m in had.items()])
    except StoreError:
        pass  # the first error is the one reported


def quality(store: Store, library: str, model: str, by: str | None = "auto",
            curve_sizes: Sequence[int] = clf_mod.CURVE_SIZES) -> Quality:
    """Cross-validated quality of the classifier on (library, model)'s labelled clips: folds grouped
    by source (`by`: a payload field; "auto" picks one of SOURCE_FIELDS where the clips carry it)
    or else by file (a file's segments never straddle folds)."""
    ids, X, pays = read_vectors(store, library, model)
    lab = [i for i, p in enumerate(pays) if is_labelled(p)]
    if not lab:
        raise LibraryError(f"library '{library}' has no labelled clips for model '{model}'")
    lp = [pays[i] for i in lab]
    field = source_field(lp) if by == "auto" else (by or None)
    if field is not None and field != "file" and not any(p.get(field) not in (None, "") for p in lp):
        raise LibraryError(f"no labelled clip of library '{library}' has a '{field}' field to group folds by")
    by_name = "file" if field in (None, "file") else field
    groups = groups_of([ids[i] for i in lab], lp, by_name)
    return clf_mod.evaluate(X[lab], [p["label"] for p in lp], groups,
                            grouped_by="file" if by_name == "file" else f"source: {by_name}",
                            curve_sizes=curve_sizes)


def predicted_ids(store: Store, library: str, model: str, label: str, min_conf: float = 0.0) -> list[str]:
    """Ids of the unlabelled clips whose suggested label is `label` with confidence >= min_conf."""
    coll = _collection(store, library, model)
    return [r.id for r in store.scroll(coll, flt={"pred_label": label, "pred_conf": {"gte": float(min_conf)}})]


def prediction_counts(payloads: Sequence[dict]) -> dict[str, int]:
    """{suggested label: unlabelled clips}, most first."""
    return dict(Counter(p["pred_label"] for p in payloads
                        if p.get("pred_label") and not is_labelled(p)).most_common())
