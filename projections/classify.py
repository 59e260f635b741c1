"""Suggested labels: a class-balanced linear classifier on frozen vectors, its grouped
cross-validated quality, a learning curve, and what a review queue ranks by.

Arrays in, arrays out (scikit-learn's `LogisticRegression` after `StandardScaler`); nothing here
knows about Qdrant. Folds are grouped (`StratifiedGroupKFold`): rows of one group (the segments
of one file, or every clip of one source: kit, artist) never straddle a train and a test fold.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .base import ProjectionError, as_matrix

MAX_FOLDS = 5
CURVE_SIZES = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass
class LabelClassifier:
    """A fitted classifier of vectors into labels."""

    classes: list[str]          # [c] label names, the columns of `proba`
    pipeline: object            # sklearn Pipeline(StandardScaler, LogisticRegression)
    n_train: int                # labelled rows it was fitted on
    counts: dict[str, int]      # rows per label it was fitted on

    def proba(self, X: np.ndarray) -> np.ndarray:
        """[n, c] class probabilities."""
        if len(X) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        X = as_matrix(X)
        with _one_thread():
            return np.asarray(self.pipeline.predict_proba(X), np.float32)


@dataclass
class Suggestions:
    """Per row: the suggested label, its probability, and the margin to the runner-up."""

    label: list[str]            # [n]
    conf: np.ndarray            # [n] float32 in [0, 1]: probability of the suggested label
    margin: np.ndarray          # [n] float32: top-1 minus top-2 probability (small = uncertain)


def _one_thread():
    """BLAS on one thread while fitting: measured on this 2-core machine under load, lbfgs on 608 x 753
    took 2.2 s on one thread and 96 s on two (OpenBLAS threads waiting on busy cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _pipeline(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=500,
                                                              random_state=seed))


def _labels(labels: Sequence[object]) -> np.ndarray:
    return np.asarray(["" if v is None else str(v) for v in labels], dtype=object)


def fit(X: np.ndarray, labels: Sequence[object], C: float = 0.5, seed: int = 0) -> LabelClassifier:
    """Fit on the rows that have a label (None / "" rows are ignored). ProjectionError (one line)
    unless at least two labels have examples."""
    X = as_matrix(X)
    y = _labels(labels)
    if len(y) != len(X):
        raise ProjectionError(f"{len(X)} vectors but {len(y)} labels")
    keep = y != ""
    classes, counts = np.unique(y[keep], return_counts=True)
    if len(classes) < 2:
        raise ProjectionError(f"a classifier needs clips of at least two labels (this set has "
                              f"{len(classes)}{': ' + str(classes[0]) if len(classes) else ''})")
    pipe = _pipeline(C, seed)
    with warnings.catch_warnings(), _one_thread():
        warnings.simplefilter("ignore")  # lbfgs' ConvergenceWarning on tiny sets: the fit is still usable
        pipe.fit(X[keep], y[keep])
    return LabelClassifier([str(c) for c in pipe.classes_], pipe, int(keep.sum()),
                           {str(c): int(n) for c, n in zip(classes, counts)})


def suggest(clf: LabelClassifier, X: np.ndarray) -> Suggestions:
    """The classifier's suggestion for each row, with confidence and margin."""
    P = clf.proba(X)
    if len(P) == 0:
        return Suggestions([], np.zeros(0, np.float32), np.zeros(0, np.float32))
    order = np.argsort(-P, axis=1)
    top = P[np.arange(len(P)), order[:, 0]]
    second = P[np.arange(len(P)), order[:, 1]] if P.shape[1] > 1 else np.zeros(len(P), np.float32)
    return Suggestions([clf.classes[j] for j in order[:, 0]], top.astype(np.float32),
                       (top - second).astype(np.float32))


@dataclass
class Quality:
    """Cross-validated quality of the classifier (grouped folds)."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, dict]          # label -> {precision, recall, f1, support}
    n_folds: int
    grouped_by: str                     # what a fold keeps together ("file", "source: artist", ...)
    n_groups: int
    curve: list[dict] = field(default_factory=list)  # [{per_class, n_train, accuracy, macro_f1}]

    def to_dict(self) -> dict:
        """JSON-ready (NaN as None)."""
        def clean(v):
            if isinstance(v, float) and np.isnan(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v
        return clean({"accuracy": self.accuracy, "macro_f1": self.macro_f1, "per_class": self.per_class,
                      "n_folds": self.n_folds, "grouped_by": self.grouped_by, "n_groups": self.n_groups,
                      "learning_curve": self.curve})


def grouped_folds(y: np.ndarray, groups: Sequence[object], n_folds: int = MAX_FOLDS,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of stratified folds in which no group straddles train and test.
    ProjectionError when there are fewer than two groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    g = np.asarray([str(v) for v in groups], dtype=object)
    n_groups = len(set(g.tolist()))
    if n_groups < 2:
        raise ProjectionError(f"cross-validation needs at least two groups (files or sources); this set has {n_groups}")
    biggest = max(np.unique(np.asarray(y, dtype=object).astype(str), return_counts=True)[1])
    k = min(n_folds, n_groups, int(biggest))  # StratifiedGroupKFold wants a class with k members
    if k < 2:
        raise ProjectionError("cross-validation needs a label with at least two clips")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only n members": folds are still valid
        return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, g) if len(tr) and len(te)]


def _scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[float, float, dict[str, dict]]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    per = {c: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4), "f1": round(float(f[i]), 4),
               "support": int(s[i])} for i, c in enumerate(classes)}
    present = s > 0
    macro = float(np.mean(f[present])) if present.any() else float("nan")
    return float(accuracy_score(y_true, y_pred)), macro, per


def _fit_predict(X: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, C: float, seed: int) -> np.ndarray:
    if len(set(y[tr].tolist())) < 2:  # a fold whose training part holds one label predicts it everywhere
        return np.full(len(te), y[tr][0], dtype=object)
    pipe = _pipeline(C, seed)
    with warnings.catch_warnings(), _one_thread():
        warnings.simplefilter("ignore")
        pipe.fit(X[tr], y[tr])
        return pipe.predict(X[te])


def _subsample(y: np.ndarray, rows: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for c in sorted(set(y[rows].tolist())):
        members = rows[y[rows] == c]
        out.append(members if len(members) <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(out))


def evaluate(X: np.ndarray, labels: Sequence[object], groups: Sequence[object], grouped_by: str = "file",
             n_folds: int = MAX_FOLDS, curve_sizes: Sequence[int] = CURVE_SIZES, C: float = 0.5,
             seed: int = 0) -> Quality:
    """Cross-validated accuracy and macro-F1 (overall and per class) of `fit` on the labelled rows,
    folds grouped by `groups`; and the learning curve: the same folds with at most n labelled
    rows per class in each training part, for each n in `curve_sizes` below the largest class,
    then all."""
    X = as_matrix(X)
    y = _labels(labels)
    g = np.asarray([str(v) for v in groups], dtype=object)
    keep = np.flatnonzero(y != "")
    X, y, g = X[keep], y[keep], g[keep]
    classes = sorted(set(y.tolist()))
    if len(classes) < 2:
        raise ProjectionError("quality needs clips of at least two labels")
    folds = grouped_folds(y, g, n_folds, seed)
    pred = np.empty(len(y), dtype=object)
    for tr, te in folds:
        pred[te] = _fit_predict(X, y, tr, te, C, seed)
    acc, macro, per = _scores(y, pred, classes)
    rng = np.random.default_rng(seed)
    biggest = max(int((y == c).sum()) for c in classes)
    curve = []
    for n in [s for s in curve_sizes if s < biggest] + [None]:
        if n is None:
            curve.append({"per_class": "all", "n_train": int(np.mean([len(tr) for tr, _ in folds])),
                          "accuracy": round(acc, 4), "macro_f1": round(macro, 4)})
            break
        cp = np.empty(len(y), dtype=object)
        n_train = []
        for tr, te in folds:
            sub = _subsample(y, tr, n, rng)
            n_train.append(len(sub))
            cp[te] = _fit_predict(X, y, sub, te, C, seed)
        a, m, _ = _scores(y, cp, classes)
        curve.append({"per_class": n, "n_train": int(np.mean(n_train)), "accuracy": round(a, 4),
                      "macro_f1": round(m, 4)})
    return Quality(round(acc, 4), round(macro, 4), per, len(folds), grouped_by, len(set(g.tolist())), curve)
