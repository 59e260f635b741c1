"""Suggested labels: the classifier of a (library, model) trained on its labelled clips, its
quality, the review queue (what to label next), and accepting / correcting a suggestion (a user
label, written as curation writes one) followed by a retrain."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from index import curation, suggest
from projections.classify import Quality

from app.errors import ServiceError

if TYPE_CHECKING:
    from app.services import Services

QUEUE_MODES = ("uncertain", "like")  # margin between the top two classes; most like one class


@dataclass
class QueueItem:
    """A clip to label next."""

    id: str
    path: str
    payload: dict
    suggestion: str
    conf: float               # probability of the suggestion
    margin: float             # top-1 minus top-2 probability
    score: float              # what the queue is ranked by (margin, or the class's probability)
    top: list[tuple[str, float]]  # the three most likely labels

    @property
    def label(self) -> None:
        """Queue items are unlabelled (hit rows show no label)."""
        return None

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"id": self.id, "path": self.path, "suggestion": self.suggestion, "conf": round(self.conf, 4),
                "margin": round(self.margin, 4), "top": [[c, round(p, 4)] for c, p in self.top]}


class LabelService:
    """Classifier runs and review queues of one data folder (the last run of each (library, model)
    is kept in memory; its predictions are in Qdrant)."""

    def __init__(self, svc: "Services"):
        self._svc = svc
        self._runs: dict[tuple[str, str], suggest.Classified] = {}
        self._quality: dict[tuple, Quality] = {}

    def train(self, library: str, model: str) -> suggest.Classified:
        """Fit on every labelled clip and write each unlabelled clip's suggestion to Qdrant."""
        try:
            with self._svc.locks(("classify", library, model)):
                run = suggest.train(self._svc.store, library, model)
        finally:
            self._svc.vectors.clear()
        self._runs[(library, model)] = run
        return run

    def last(self, library: str, model: str, train: bool = True) -> suggest.Classified | None:
        """The last run of (library, model) (trained now if there is none and `train`)."""
        run = self._runs.get((library, model))
        if run is None and train:
            run = self.train(library, model)
        return run

    def quality(self, library: str, model: str, by: str | None = "auto") -> Quality:
        """Grouped cross-validated quality and learning curve (cached while the labels hold)."""
        ids, _X, pays = self._svc.vectors.read(library, model)
        sig = hashlib.sha1(repr(sorted((i, p.get("label")) for i, p in zip(ids, pays)
                                       if suggest.is_labelled(p))).encode()).hexdigest()
        key = (library, model, by, sig)
        if key not in self._quality:
            with self._svc.locks(("classify-quality", library, model)):
                if key not in self._quality:
                    self._quality[key] = suggest.quality(self._svc.store, library, model, by=by)
        return self._quality[key]

    def queue(self, library: str, model: str, mode: str = "uncertain", cls: str | None = None,
              n: int = 20) -> list[QueueItem]:
        """The unlabelled clips to label next: smallest margin first ('uncertain'), or most like
        label `cls` first ('like')."""
        if mode not in QUEUE_MODES:
            raise ServiceError(f"queue mode must be one of {', '.join(QUEUE_MODES)} (got '{mode}')")
        run = self.last(library, model)
        classes = run.classifier.classes
        un = np.flatnonzero(~run.labelled)
        if mode == "like":
            if cls not in classes:
                raise ServiceError(f"no label '{cls}' to rank by: pick one of {', '.join(classes)}")
            score = run.proba[:, classes.index(cls)] if len(un) else np.zeros(0)
            order = np.argsort(-score, kind="stable")
        else:
            score = run.suggestions.margin
            order = np.argsort(score, kind="stable")
        out = []
        for j in order[:max(0, int(n))]:
            row = int(un[j])
            p = run.payloads[row]
            top = np.argsort(-run.proba[j])[:3]
            out.append(QueueItem(run.ids[row], p.get("path", ""), p, run.suggestions.label[j],
                                 float(run.suggestions.conf[j]), float(run.suggestions.margin[j]),
                                 float(score[j]), [(classes[t], float(run.proba[j, t])) for t in top]))
        return out

    def accept(self, library: str, model: str, ids: Sequence[str], label: str) -> tuple[curation.EditResult,
                                                                                          suggest.Classified]:
        """Give `ids` the user label `label` (a suggestion accepted, or a correction) in every model
        of the library, then retrain (model) and refresh its suggestions."""
        if not label or not str(label).strip():
            raise ServiceError("give a label to set")
        res = self._svc.curation.edit(library, list(ids), label=str(label).strip())
        return res, self.train(library, model)

    def counts(self, library: str, model: str) -> dict:
        """{labelled, unlabelled, suggested, by_label: {label: suggested clips}} as Qdrant holds them."""
        _ids, _X, pays = self._svc.vectors.read(library, model)
        lab = sum(1 for p in pays if suggest.is_labelled(p))
        by = suggest.prediction_counts(pays)
        return {"labelled": lab, "unlabelled": len(pays) - lab, "suggested": sum(by.values()), "by_label": by}

    def predicted_ids(self, library: str, model: str, label: str, min_conf: float = 0.0) -> list[str]:
        """Unlabelled clips suggested as `label` with confidence >= min_conf (a Qdrant filter)."""
        return suggest.predicted_ids(self._svc.store, library, model, label, min_conf)
