"""Suggested labels on real recordings: the linear classifier's quality per model, and the
supervised-contrastive head trained on the other folds, on the labelled set of
benchmarks/retrieval_quality.py (608 clips, 15 classes, 26 sources; its data set and embedding
cache are reused: `python benchmarks/retrieval_quality.py` builds them).

    python benchmarks/classifier_quality.py                       # the models whose embeddings are cached
    python benchmarks/classifier_quality.py --models dsp,vgg-msd --no-install --json out.json

What it measures, per model (frozen clip vectors, 5 s per clip):
  * macro-F1 / accuracy of `projections.classify` (StandardScaler + class-balanced
    LogisticRegression, as the app's Review tab trains) in 5-fold cross-validation with folds
    grouped by SOURCE (kit, soundfont, speaker, package: no source is in a training and a test
    fold, so recognising the recording chain earns nothing), and, as the baseline of the same run,
    grouped by clip (every clip its own group: the usual, optimistic split);
  * the learning curve with source-grouped folds: at most 5, 10, 20 labelled clips per class to
    learn from, then all;
  * P@5 of the SupCon head (`embedders.training.supcon`, default SupConConfig) trained on the
    other source-grouped folds, on each held-out fold's clips (neighbours among that fold's
    clips, itself excluded), against the base vectors' P@5 on the same held-out clips (ratio).
Classes with fewer than two sources cannot be predicted across sources (piano, strings, brass:
2 sources each are enough; every class here has >= 2).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import retrieval_quality as rq  # noqa: E402  (the data set and embedding cache)


def p_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Mean fraction of each clip's k nearest neighbours (cosine, itself excluded) sharing its label."""
    X = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    k = min(k, len(X) - 1)
    nn = np.argsort(-S, axis=1)[:, :k]
    return float(np.mean(labels[nn] == labels[:, None]))


def supcon_heldout(vectors: np.ndarray, labels: list[str], sources: list[str], folds, model: str,
                   epochs: int | None, seed: int = 0) -> dict:
    """P@5 of a SupCon head trained on the other folds, on each held-out fold (and the base's)."""
    from embedders.training import common, supcon
    from projections.quality import knn_agreement

    y = np.asarray(labels, dtype=object)
    head_p, base_p, n_test, train_s = [], [], [], 0.0
    for f, (tr, te) in enumerate(folds):
        cfg = supcon.SupConConfig(seed=seed)
        if epochs:
            cfg.epochs = epochs
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / f"{model}+supcon-fold{f}"
            common.prepare_folder(folder, resume=False, overwrite=True)
            t0 = time.perf_counter()
            supcon.train(vectors[tr], [labels[i] for i in tr], [f"clip{i}" for i in tr], folder,
                         folder.name, {"name": model, "dim": int(vectors.shape[1]), "sample_rate": 16000,
                                       "frame_hop_s": 1.0, "window_s": None},
                         cfg, log=lambda line: None, source={"library": "bench"}, agreement=knn_agreement)
            train_s += time.perf_counter() - t0
            head = supcon.SupConHead(folder, "cpu")
            z = head(vectors[te])
        head_p.append(p_at_k(z, y[te]))
        base_p.append(p_at_k(vectors[te], y[te]))
        n_test.append(len(te))
    w = np.asarray(n_test, float) / sum(n_test)
    return {"supcon_p5": round(float(np.dot(w, head_p)), 4), "base_p5": round(float(np.dot(w, base_p)), 4),
            "supcon_train_s": round(train_s, 1)}


def scale(n: int, dim: int = 512, classes: int = 20, labelled: float = 0.8, seed: int = 0) -> dict:
    """The app's whole suggest path at n clips in a Qdrant Edge store: read the vectors, fit, predict,
    write pred_label/pred_conf into the unlabelled clips' payloads (`index.suggest.train`)."""
    from index import suggest
    from index.libraries import Library, save_library
    from index.naming import collection_name, point_id
    from index.store import open_store

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    lab = rng.integers(0, classes, n)
    X = (centres[lab] + 2.0 * rng.normal(size=(n, dim))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    keep = rng.random(n) < labelled
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp))
        save_library(store, Library(name="bench", root=tmp, models=["m"]))
        coll = collection_name("bench", "m")
        store.create_collection(coll, dim, indexes={"label": "keyword"})
        ids = [point_id(f"{i:040x}") for i in range(n)]
        for s in range(0, n, 2000):
            store.upsert(coll, ids[s:s + 2000], X[s:s + 2000],
                         [{"label": f"c{lab[i]}" if keep[i] else None, "path": f"{i}.wav", "file_id": ids[i]}
                          for i in range(s, min(n, s + 2000))])
        t = time.perf_counter()
        run = suggest.train(store, "bench", "m")
        total = time.perf_counter() - t
        row_of = {pid: i for i, pid in enumerate(ids)}  # the store returns its own order
        right = np.mean([a == f"c{lab[row_of[pid]]}" for a, pid in zip(run.suggestions.label, run.unlabelled_ids)])
        store.close()
    return {"n": n, "dim": dim, "labelled": int(keep.sum()), "written": run.written, "fit_s": round(run.fit_s, 2),
            "write_s": round(run.write_s, 2), "total_s": round(total, 2), "accuracy": round(float(right), 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated models (default: those whose embeddings are cached)")
    ap.add_argument("--cache", type=Path, default=rq.DEFAULT_CACHE)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--no-supcon", action="store_true", help="skip the SupCon head (the slow part)")
    ap.add_argument("--supcon-epochs", type=int, default=None, help="default: SupConConfig's")
    ap.add_argument("--per-class", action="store_true", help="also print F1 per class (source-grouped)")
    ap.add_argument("--scale", default="", help="also time the app's suggest path (read, fit, write) at these "
                                                 "clip counts, e.g. 1000,10000 (512-d, 20 classes, 80%% labelled)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.scale:
        print("suggest path in Qdrant Edge (read vectors + fit + predict + write payloads):")
        from projections import classify as warm

        warm.fit(np.random.default_rng(0).normal(size=(20, 4)), ["a", "b"] * 10)  # imports are not timed
        rows = [scale(int(n)) for n in args.scale.split(",") if n.strip()]
        base = rows[0]["total_s"] or 1e-9
        for r in rows:
            print(f"  n={r['n']:>6} labelled {r['labelled']:>6} written {r['written']:>6}: fit+predict {r['fit_s']} s, "
                  f"write {r['write_s']} s, total {r['total_s']} s ({r['total_s'] / base:.1f}x n={rows[0]['n']}), "
                  f"accuracy on the unlabelled {r['accuracy']}", flush=True)

    from projections import classify

    cache = args.cache.expanduser().resolve()
    manifest = rq.build_dataset(cache, install=not args.no_install)
    paths, labels, sources = rq.read_manifest(manifest)
    mhash = hashlib.sha1(manifest.read_bytes()).hexdigest()
    print(f"data set: {len(paths)} clips, {len(set(labels))} classes, {len(set(sources))} sources")
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        tail = f"__{mhash[:16]}__{args.max_seconds:g}s.npz"
        models = sorted(p.name[:-len(tail)] for p in (cache / "embeddings").glob(f"*{tail}"))
        models = [m for m in models if m in set(rq.ready_models())]
    y = np.asarray(labels, dtype=object)
    folds = classify.grouped_folds(y, sources, 5)
    rows, waves = [], {}
    for model in models:
        t0 = time.perf_counter()
        try:
            X = rq.embed_all(model, paths, mhash, cache, args.max_seconds, waves)["vectors"]
        except Exception as exc:  # a model that cannot run here is reported, the others go on
            print(f"! skipped {model}: {exc}")
            continue
        t1 = time.perf_counter()
        by_src = classify.evaluate(X, labels, sources, grouped_by="source", curve_sizes=(5, 10, 20))
        t2 = time.perf_counter()
        by_clip = classify.evaluate(X, labels, [str(i) for i in range(len(labels))], grouped_by="clip",
                                    curve_sizes=())
        fit_t = time.perf_counter()
        classify.fit(X, labels)
        fit_s = time.perf_counter() - fit_t
        curve = {c["per_class"]: c["macro_f1"] for c in by_src.curve}
        row = {"model": model, "dim": int(X.shape[1]), "f1_src": by_src.macro_f1, "acc_src": by_src.accuracy,
               "f1_clip": by_clip.macro_f1, "lc5": curve.get(5), "lc10": curve.get(10), "lc20": curve.get(20),
               "fit_s": round(fit_s, 3), "cv_s": round(t2 - t1, 1), "per_class": by_src.per_class}
        if not args.no_supcon:
            row.update(supcon_heldout(X, labels, sources, folds, model, args.supcon_epochs))
        rows.append(row)
        print(f"  {model}: done in {time.perf_counter() - t0:.0f} s", flush=True)

    cols = ["model", "dim", "f1_src", "f1_clip", "src/clip", "acc_src", "lc5", "lc10", "lc20", "fit_s"]
    if not args.no_supcon:
        cols += ["base_p5", "supcon_p5", "head/base", "supcon_train_s"]
    for r in rows:
        r["src/clip"] = round(r["f1_src"] / r["f1_clip"], 3) if r["f1_clip"] else None
        if "supcon_p5" in r:
            r["head/base"] = round(r["supcon_p5"] / r["base_p5"], 3) if r["base_p5"] else None
    w = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) if rows else len(c) for c in cols}
    print("\nmacro-F1 (5 folds grouped by source; f1_clip: grouped by clip, the baseline), learning curve "
          "(macro-F1 at 5/10/20 labelled clips per class, source-grouped), P@5 on held-out source folds:")
    print("  ".join(c.ljust(w[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c)).ljust(w[c]) for c in cols))
    if args.per_class and rows:
        classes = sorted(set(labels))
        print("\nF1 per class (source-grouped folds):")
        print("model".ljust(24) + " ".join(c[:8].rjust(8) for c in classes))
        for r in rows:
            print(r["model"].ljust(24) + " ".join(f"{r['per_class'][c]['f1']:8.2f}" for c in classes))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
