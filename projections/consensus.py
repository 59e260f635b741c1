"""Unlabelled quality estimates of several embeddings of the same clips (arrays in, numbers out).

`consensus_scores`: for each model, the mean overlap of its k nearest neighbours with every
other model's (a model whose neighbourhoods the others agree with is likely the one that
hears what they hear, and more). Measured on the project's two real labelled sets
(benchmarks/retrieval_quality.py --adapt, 9 models and their adapted variants): Spearman rank
correlation with leave-one-out P@5 of 0.92 (music) and 0.97 (sfx), and on both sets the top
consensus model is the top P@5 model. With two models the overlap is symmetric and cannot
rank them: `mutual_rate` (the fraction of k-NN pairs that are mutual) is the fallback, a weak
one (rank correlation 0.20-0.65 there; random high-dimensional vectors score high on it too).
"""
from __future__ import annotations

import numpy as np


def knn_lists(x: np.ndarray, k: int = 10) -> np.ndarray:
    """[n, k] indices of each row's k nearest other rows by cosine."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    k = max(1, min(k, len(x) - 1))
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def consensus_scores(vectors: dict[str, np.ndarray], k: int = 10) -> dict[str, float]:
    """{model: mean k-NN overlap with the other models}; rows of every matrix are the same clips."""
    if len(vectors) < 2:
        raise ValueError("consensus needs at least two models")
    n = {len(v) for v in vectors.values()}
    if len(n) != 1:
        raise ValueError("every model must embed the same clips")
    nns = {m: knn_lists(v, k) for m, v in vectors.items()}
    out = {}
    for m, nn in nns.items():
        overlaps = []
        for o, other in nns.items():
            if o != m:
                overlaps.append(np.mean([len(set(a) & set(b)) for a, b in zip(nn, other)]) / nn.shape[1])
        out[m] = float(np.mean(overlaps))
    return out


def mutual_rate(x: np.ndarray, k: int = 10) -> float:
    """Fraction of (clip, neighbour) pairs in the k-NN lists that are mutual."""
    nn = knn_lists(x, k)
    sets = [set(row) for row in nn]
    return float(np.mean([[i in sets[j] for j in row] for i, row in enumerate(nn)]))
