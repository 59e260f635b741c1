"""Retrieval quality of the self-supervised embedder on the real labelled set of retrieval_quality.py.

    python benchmarks/selfsup_quality.py                    # default SelfSupConfig, 60 epochs
    python benchmarks/selfsup_quality.py --epochs 80 --json out.json --config '{"temperature": 0.2}'

The set (Debian-packaged drum kits, soundfonts, organ, speech, music; see
benchmarks/retrieval_quality.py) is read from its cache (built there with apt-get when
missing; --no-install never installs). A SimCLR model is trained on its clips WITHOUT their
labels (first --max-seconds of each, as retrieval_quality embeds them), registered in a
temporary data folder as `ssl-bench`, and every clip is embedded with `embed_clip` through
the registry, like any model. Leave-one-out P@5 and cross-source P@5 come from
`retrieval_quality.evaluate`. For comparison the table also shows a random-init copy of the
same network (what training adds) and every model whose vectors retrieval_quality.py has
cached for this manifest (dsp, musicnn, ...).

Training on the evaluation clips without labels is the intended use (a user trains on their
own library, then explores it); labels are used only for scoring.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    import retrieval_quality as rq

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=rq.DEFAULT_CACHE)
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--epochs", type=int, default=None, help="default: SelfSupConfig's")
    ap.add_argument("--config", default="{}", help="JSON overrides of SelfSupConfig fields")
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the trained model's data folder here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import embedders
    from embedders.audio import decode
    from embedders.training import common, selfsup

    manifest = rq.build_dataset(args.cache.expanduser().resolve(), install=not args.no_install)
    paths, labels, sources = rq.read_manifest(manifest)
    manifest_hash = hashlib.sha1(manifest.read_bytes()).hexdigest()
    sr = common.SAMPLE_RATE
    t = time.perf_counter()
    waves = [decode(p, sr)[0][: int(args.max_seconds * sr)] for p in paths]
    mels = [common.log_mel(w) for w in waves]
    print(f"{len(paths)} clips decoded in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    cfg = selfsup.SelfSupConfig(**json.loads(args.config))
    if args.epochs:
        cfg.epochs = args.epochs
    data = args.keep or Path(tempfile.mkdtemp(prefix="ssl-bench-"))
    folder = common.model_folder(data, "ssl-bench")
    common.prepare_folder(folder, resume=False, overwrite=True)
    res = selfsup.train(mels, folder, "ssl-bench", cfg, source={"library": "retrieval-quality-set"})
    emb = embedders.load("ssl-bench", data)
    t = time.perf_counter()
    trained = np.stack([emb.embed_clip(w) for w in waves])
    embed_s = time.perf_counter() - t
    torch.manual_seed(cfg.seed)
    emb.model.encoder.load_state_dict(selfsup.build_model(cfg).encoder.state_dict())
    random_init = np.stack([emb.embed_clip(w) for w in waves])

    rows = [("ssl (trained here, no labels)", trained, f"{res.wall_s:.0f} s train, {embed_s:.0f} s embed"),
            ("ssl random-init copy", random_init, "")]
    for f in sorted((args.cache / "embeddings").glob(f"*__{manifest_hash[:16]}__{args.max_seconds:g}s.npz")):
        rows.append((f.name.split("__")[0], np.load(f)["vectors"], "cached by retrieval_quality.py"))
    results = []
    print(f"\nP@5 on {len(paths)} clips, {len(set(labels))} classes, {len(set(sources))} sources "
          f"(ssl: {res.epochs_run} epochs, best {res.best_epoch})")
    head = f"{'model':<32} {'dim':>5} {'P@5':>6} {'P@5 xsrc':>9}  note"
    print(head)
    print("-" * len(head))
    for name, vecs, note in rows:
        m = rq.evaluate(vecs, labels, sources, k=5)
        results.append({"model": name, "dim": int(vecs.shape[1]), "p_at_5": m["p_at_k"],
                        "p_at_5_cross_source": m["p_at_k_cross_source"]})
        print(f"{name:<32} {vecs.shape[1]:>5} {m['p_at_k']:>6.3f} {m['p_at_k_cross_source']:>9.3f}  {note}")
    chance = rq.evaluate(np.eye(len(paths), dtype=np.float32), labels, sources, k=5)
    print(f"{'chance':<32} {'-':>5} {chance['chance_p_at_k']:>6.3f} {chance['chance_p_at_k_cross_source']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"config": res.to_dict() | {"history": res.history}, "results": results},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
