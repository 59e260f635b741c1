"""Label-free re-ranking on the two real sets: hubness reduction, query/database expansion, ensembles.

    python benchmarks/rerank_quality.py                 # both sets, cached vectors only
    python benchmarks/rerank_quality.py --json out.json

Works on the vectors `retrieval_quality.py` cached (`~/.cache/audio-explorer-bench/embeddings`;
run `retrieval_quality.py --set both --adapt --no-install` first). Nothing is embedded here.
Every method re-scores the library without labels; leave-one-out P@5 and cross-source P@5 are
computed exactly as `retrieval_quality.evaluate` does (same masks), from a full score matrix.

Methods (X = the library-adapted vectors of the fused default model, unit rows; S = X X^T):
  * baseline: S (the product's default before this script: adapted cosine);
  * CSLS(k): 2 S(x, y) - r_k(y), r_k(y) = mean similarity of y to its k nearest library clips
    (the query's own r_k(x) is the same for every candidate, so it does not change a ranking);
  * NICDM / local scaling(k): distance (1 - S) divided by sqrt(mean distance to the k nearest) of
    query and candidate;
  * mutual proximity (Gaussian, Schnitzer et al. 2012): P(d > d_xy | x) P(d > d_xy | y) with a
    normal fitted per clip to its distances to the library; and the empirical version (exact
    counts, O(n^3): reference only);
  * DBA(k): each stored vector replaced by the similarity-weighted mean of itself and its k nearest;
  * alpha-QE(k): the query replaced by the weighted mean of itself and its k nearest, re-searched;
  * k-reciprocal re-ranking (Zhong et al. 2017, Jaccard distance of k-reciprocal sets, lambda 0.3);
  * diffusion (Iscen et al. 2017): random walk with restart on the mutual kNN graph, over the whole
    set ("full-graph") or, as the app does (index/adapt.py), over the query's pool of RERANK_POOL
    raw nearest clips ("pool"; projections/diffusion.py; measured through retrieval_quality's
    `evaluate_search`, the app's search path, with cross-source searches filtered before pooling);
  * ensembles: per-model adapted vectors fused (adapt before fusion), other weights, more models;
    "per-part" = the app's whitening of a fused model part by part (projections/whitening.py blocks).

"held-out" rows compute every library statistic (r_k, DBA neighbours, MP normals) without the
query clip, as for an uploaded clip; the other rows keep it in (a stored clip searched from the
map). Hubness: skewness of the 5-occurrence counts (how often a clip is in others' top 5).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from projections.whitening import fit_whitening  # noqa: E402

DEFAULT_CACHE = Path("~/.cache/audio-explorer-bench").expanduser()
DEFAULT = "aisfx+birdnet+musicnn-mtt"
PARTS = (("aisfx", 1.0), ("birdnet", 0.7), ("musicnn-mtt", 0.5))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_set(cache: Path, name: str):
    """(labels, sources, {model: vectors}) of one cached set."""
    from retrieval_quality import read_manifest

    manifest = cache / ("dataset" if name == "music" else "sfx") / "manifest.csv"
    _, labels, sources = read_manifest(manifest)
    h = hashlib.sha1(manifest.read_bytes()).hexdigest()[:16]
    vecs = {}
    for f in sorted((cache / "embeddings").glob(f"*__{h}__5s.npz")):
        z = np.load(f)
        key = f.name.split("__")[0]
        vecs[key] = dict(z) if key == "aspects" else z["vectors"]
    return np.asarray(labels), np.asarray(sources), vecs


def scores_eval(s: np.ndarray, labels, sources, k: int = 5) -> tuple[float, float]:
    """Leave-one-out P@k and cross-source P@k from a score matrix s[query, candidate] (higher = nearer)."""
    n = len(labels)
    same_label = labels[:, None] == labels[None, :]
    same_source = sources[:, None] == sources[None, :]
    eye = np.eye(n, dtype=bool)

    def p(mask, rows):
        m = np.where(mask, -np.inf, s)[rows]
        idx = np.argpartition(-m, k - 1, axis=1)[:, :k]
        valid = np.isfinite(np.take_along_axis(m, idx, axis=1))
        hits = np.take_along_axis(same_label[rows], idx, axis=1) & valid
        return hits.sum(1) / np.maximum(valid.sum(1), 1)

    rows = np.arange(n)
    elig = (same_label & ~same_source).any(1)
    return float(p(eye, rows).mean()), float(p(same_source | eye, rows[elig]).mean())


def hubness(s: np.ndarray, k: int = 5) -> float:
    """Skewness of the k-occurrence distribution (0: no hubs)."""
    m = s.copy()
    np.fill_diagonal(m, -np.inf)
    idx = np.argpartition(-m, k - 1, axis=1)[:, :k]
    occ = np.bincount(idx.ravel(), minlength=len(s)).astype(np.float64)
    sd = occ.std()
    return float(((occ - occ.mean()) ** 3).mean() / max(sd ** 3, 1e-12))


def topk_sims(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most similar others (self excluded): (indices [n, k], sims [n, k]) sorted."""
    m = s.copy()
    np.fill_diagonal(m, -np.inf)
    idx = np.argsort(-m, axis=1)[:, :k]
    return idx, np.take_along_axis(m, idx, axis=1)


# ----------------------------------------------------------------------------- methods

def csls(s: np.ndarray, k: int, held_out: bool = False) -> np.ndarray:
    """2 S - r_k(candidate) (- r_k(query), constant per query: kept for symmetry)."""
    idx, sims = topk_sims(s, k + 1)
    r = sims[:, :k].mean(1)
    out = 2 * s - r[None, :] - r[:, None]
    if held_out:  # candidate y's r_k without the query x (x in y's top k: take y's (k+1)-th instead)
        n = len(s)
        for y in range(n):
            for j in range(k):
                x = idx[y, j]
                r_wo = (sims[y, :k].sum() - sims[y, j] + sims[y, k]) / k
                out[x, y] = 2 * s[x, y] - r_wo - r[x]
    return out


def nicdm(s: np.ndarray, k: int) -> np.ndarray:
    """Local scaling: (1 - S) / sqrt(mu_k(x) mu_k(y)), mu_k = mean distance to the k nearest; as a score."""
    _, sims = topk_sims(s, k)
    mu = np.maximum((1 - sims).mean(1), 1e-9)
    return -(1 - s) / np.sqrt(mu[:, None] * mu[None, :])


def mp_gauss(s: np.ndarray, k: int | None = None) -> np.ndarray:
    """Gaussian mutual proximity; normals fitted to each clip's distances to all others (or its k nearest)."""
    from scipy.stats import norm

    d = 1 - s
    n = len(s)
    if k:
        _, sims = topk_sims(s, k)
        dd = 1 - sims
    else:
        m = ~np.eye(n, dtype=bool)
        dd = d[m].reshape(n, n - 1)
    mu, sd = dd.mean(1), np.maximum(dd.std(1), 1e-9)
    return norm.sf(d, mu[:, None], sd[:, None]) * norm.sf(d, mu[None, :], sd[None, :])


def mp_empirical(s: np.ndarray) -> np.ndarray:
    """Empirical mutual proximity: fraction of clips j farther from both x and y than y from x."""
    d = 1 - s
    n = len(s)
    out = np.zeros_like(d)
    for x in range(n):
        far_x = d[x][None, :] > d[x][:, None]  # [y, j]: d(x, j) > d(x, y)
        far_y = d > d[x][:, None]  # [y, j]: d(y, j) > d(x, y)
        out[x] = (far_x & far_y).sum(1) / n
    return out


def dba(x: np.ndarray, k: int, alpha: float = 3.0, query_too: bool = True) -> np.ndarray:
    """Database-side augmentation: stored vectors = sim^alpha-weighted mean of self + k nearest."""
    s = x @ x.T
    idx, sims = topk_sims(s, k)
    w = np.maximum(sims, 0) ** alpha
    xd = unit(x + (w[:, :, None] * x[idx]).sum(1))
    q = xd if query_too else x
    return q @ xd.T


def alpha_qe(x: np.ndarray, k: int, alpha: float = 3.0, db: np.ndarray | None = None) -> np.ndarray:
    """alpha-QE: each query = itself + sim^alpha-weighted mean of its k nearest (self excluded), re-searched."""
    db = x if db is None else db
    s = x @ db.T
    idx, sims = topk_sims(s, k)
    w = np.maximum(sims, 0) ** alpha
    q = unit(x + (w[:, :, None] * db[idx]).sum(1))
    return q @ db.T


def k_reciprocal(s: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """Zhong et al. 2017 re-ranking (Jaccard distance of k-reciprocal encodings), as a score."""
    n = len(s)
    d = np.maximum(2 - 2 * s, 0)
    order = np.argsort(d, axis=1)
    v = np.zeros((n, n))
    for i in range(n):
        fw = order[i, :k1 + 1]
        recip = fw[np.any(order[fw, :k1 + 1] == i, axis=1)]
        exp = recip
        for c in recip:
            cf = order[c, :int(round(k1 / 2)) + 1]
            cr = cf[np.any(order[cf, :int(round(k1 / 2)) + 1] == c, axis=1)]
            if len(np.intersect1d(cr, recip)) > 2 / 3 * len(cr):
                exp = np.union1d(exp, cr)
        w = np.exp(-d[i, exp])
        v[i, exp] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[order[i, :k2]].mean(0) for i in range(n)])
    mins = np.minimum(v[:, None, :], v[None, :, :]).sum(2)
    jac = 1 - mins / (2 - mins)
    return -((1 - lam) * jac + lam * d)


def diffusion(s: np.ndarray, k: int = 20, alpha: float = 0.9, gamma: float = 3.0) -> np.ndarray:
    """Iscen et al. 2017: random walk with restart on the mutual kNN graph, closed form (small n only)."""
    n = len(s)
    idx, sims = topk_sims(s, k)
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), k)
    a[rows, idx.ravel()] = np.maximum(sims.ravel(), 0) ** gamma
    a = np.minimum(a, a.T)  # mutual neighbours
    deg = np.maximum(a.sum(1), 1e-12)
    dn = 1 / np.sqrt(deg)
    w = dn[:, None] * a * dn[None, :]
    l_inv = np.linalg.inv(np.eye(n) - alpha * w)
    # query y = its own row of the kNN sims (self included): f = L^-1 y
    y = np.zeros((n, n))
    y[rows, idx.ravel()] = np.maximum(sims.ravel(), 0) ** gamma
    y[np.arange(n), np.arange(n)] = 1.0
    return y @ l_inv.T


def fused(parts: dict[str, np.ndarray], weights, adapt_parts: bool = False, adapt_after: bool = True) -> np.ndarray:
    """Fusion as embedders/fusion.py does it (unit parts x weight, concatenated), optionally each part
    library-adapted first, then (adapt_after) adapted as a whole."""
    w = np.asarray([wt for _, wt in weights], np.float64)
    w = w / np.sqrt((w ** 2).sum())
    cols = []
    for (name, _), wt in zip(weights, w):
        v = parts[name]
        v = fit_whitening(v).apply(v) if adapt_parts else unit(v)
        cols.append(unit(v) * wt)
    x = np.concatenate(cols, axis=1)
    return fit_whitening(x).apply(x).astype(np.float64) if adapt_after else unit(x)


# ----------------------------------------------------------------------------- runner

def rows_for(labels, sources, vecs) -> list[tuple[str, np.ndarray]]:
    """(method name, score matrix) for one set."""
    raw = unit(vecs[DEFAULT])
    x = fit_whitening(vecs[DEFAULT]).apply(vecs[DEFAULT]).astype(np.float64)
    s = x @ x.T
    out = [("raw cosine (no adaptation)", raw @ raw.T), ("baseline: adapted cosine (default)", s)]
    for k in (5, 10, 20, 50):
        out.append((f"CSLS k={k}", csls(s, k)))
    out.append(("CSLS k=10 held-out", csls(s, 10, held_out=True)))
    out.append(("CSLS k=10 on raw cosine", csls(raw @ raw.T, 10)))
    for k in (10, 20):
        out.append((f"NICDM k={k}", nicdm(s, k)))
    out.append(("MP gaussian (all)", mp_gauss(s)))
    out.append(("MP gaussian k=50", mp_gauss(s, 50)))
    out.append(("MP empirical", mp_empirical(s)))
    for k in (3, 5, 10):
        out.append((f"DBA k={k} (query+db)", dba(x, k)))
    out.append(("DBA k=5 (db only)", dba(x, 5, query_too=False)))
    for k in (3, 5, 10):
        out.append((f"alpha-QE k={k}", alpha_qe(x, k)))
    out.append(("k-reciprocal k1=20 k2=6", k_reciprocal(s)))
    out.append(("diffusion k=20", diffusion(s)))
    from index.adapt import model_blocks
    from retrieval_quality import evaluate_search

    blocks = model_blocks(DEFAULT, vecs[DEFAULT].shape[1])
    wp = fit_whitening(vecs[DEFAULT], blocks=blocks)
    xp = wp.apply(vecs[DEFAULT]).astype(np.float64)
    out.append(("per-part adapted (whitening by part)", xp @ xp.T))
    out.append(("per-part + full-graph diffusion k=20 a=0.8", diffusion(xp @ xp.T, 20, 0.8)))
    for name, w_, kw in (("adapted + pool diffusion k=30 a=0.8", fit_whitening(vecs[DEFAULT]), {}),
                         ("per-part + pool diffusion k=30 a=0.8 (new default)", wp, {}),
                         ("per-part + pool diffusion k=20 a=0.8", wp, {"k": 20}),
                         ("per-part + pool diffusion k=30 a=0.9", wp, {"alpha": 0.9}),
                         ("per-part + pool diffusion k=50 a=0.8", wp, {"k": 50})):
        r = evaluate_search(vecs[DEFAULT], w_, labels, sources, diffusion=kw)
        out.append((name, (r["p_at_k"], r["p_at_k_cross_source"])))
    parts = {n: vecs[n] for n, _ in PARTS}
    out.append(("ens: parts adapted, then fused+adapted", (lambda z: z @ z.T)(fused(parts, PARTS, True, True))))
    out.append(("ens: parts adapted, fused (no 2nd adapt)", (lambda z: z @ z.T)(fused(parts, PARTS, True, False))))
    eq = tuple((n, 1.0) for n, _ in PARTS)
    out.append(("ens: equal weights 1/1/1 +adapt", (lambda z: z @ z.T)(fused(parts, eq))))
    more = {**parts, "musicnn-msd": vecs["musicnn-msd"], "vgg-mtt": vecs["vgg-mtt"], "dsp": vecs["dsp"]}
    for extra, wt in (("musicnn-msd", 0.5), ("dsp", 0.3), ("vgg-mtt", 0.3)):
        ws = PARTS + ((extra, wt),)
        out.append((f"ens: + {extra} {wt} +adapt", (lambda z: z @ z.T)(fused(more, ws))))
    asp = vecs.get("aspects")
    if asp:
        for wa in (0.2, 0.35):
            cols = [x * np.sqrt(1.0)] + [np.sqrt(wa) * unit(fit_whitening(asp[a]).apply(asp[a]))
                                         for a in ("timbre", "spectrum", "envelope")]
            z = unit(np.concatenate(cols, axis=1))
            out.append((f"ens: default+adapt + aspects t/s/e {wa}", z @ z.T))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name in ("music", "sfx"):
        labels, sources, vecs = load_set(args.cache.expanduser(), name)
        if DEFAULT not in vecs:
            print(f"error: no cached {DEFAULT} vectors for the {name} set: run retrieval_quality.py --set both "
                  f"--adapt first", file=sys.stderr)
            return 1
        for method, s in rows_for(labels, sources, vecs):
            if isinstance(s, tuple):  # measured on the product's search path (pool of RERANK_POOL)
                p, px, hub = s[0], s[1], float("nan")
            else:
                (p, px), hub = scores_eval(s, labels, sources, args.k), hubness(s, args.k)
            res.setdefault(method, {})[name] = (p, px, hub)
            print(f"  {name:5} {method:<44} {p:.3f} {px:.3f}  hub {res[method][name][2]:.2f}", flush=True)
    base = res["baseline: adapted cosine (default)"]
    k = args.k
    print(f"\n| method | music P@{k} | music xsrc | sfx P@{k} | sfx xsrc | hubness music / sfx |")
    print("|---|---|---|---|---|---|")
    for method, r in res.items():
        m, s_ = r["music"], r["sfx"]
        dm, ds = m[0] - base["music"][0], s_[0] - base["sfx"][0]
        print(f"| {method} | {m[0]:.3f} ({dm:+.3f}) | {m[1]:.3f} | {s_[0]:.3f} ({ds:+.3f}) | {s_[1]:.3f} | "
              f"{m[2]:.2f} / {s_[2]:.2f} |")
    load = os.getloadavg()[0]
    print(f"\n(cached vectors of {DEFAULT}; {time.perf_counter() - t0:.0f} s; load average {load:.1f})")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
