"""Self-supervised fine-tuning of a pretrained model vs the frozen model vs the random-init `ssl-` model.

    python benchmarks/ssl_pretrained.py --set sfx --minutes 2.5 --recipes simclr,byola
    python benchmarks/ssl_pretrained.py --set music --minutes 2.5 --random-base

The library (a labelled set of retrieval_quality.py, labels unused for training) is the training
data; every network is trained with the app's own code and settings for the same wall-clock time
(`--minutes`, the `max_minutes` setting users get) and embedded through the registry, like a
model a user trained:

* `BASE frozen`: the pretrained model as shipped (`vgg-msd` by default), no training;
* `BASE+ssl (recipe)`: `embedders.training.finetune` (`python app.py train finetune`), the
  pretrained network fine-tuned with SimCLR and the recipe's augmentations (`simclr`: crop,
  mixup, gain, EQ, frequency mask; `byola`: mixup, random resize crop, fader);
* `ssl- (random init)`: `embedders.training.selfsup` (`python app.py train selfsup`), the compact
  CNN from random weights with its SimCLR augmentations;
* `--tune top`: only the later layers fine-tuned (VGG blocks 3-5, MusiCNN mid end), more steps;
* with `--random-base`: the base's architecture from random weights, trained like the fine-tuned one.

Each is scored with retrieval_quality.evaluate (leave-one-out P@5, cross-source P@5), plain and
library-adapted (projections/whitening.py, as the app searches). Clips are the first
`--max-seconds` of each file (as retrieval_quality embeds them), for training and for scoring.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=["music", "sfx"], default="sfx")
    ap.add_argument("--base", default="vgg-msd", help="pretrained model to fine-tune (vgg-msd, musicnn-msd, ...)")
    ap.add_argument("--recipes", default="simclr", help="comma-separated fine-tuning recipes (simclr, byola)")
    ap.add_argument("--tune", default="all", help="comma-separated: all (every layer trains), top (the later ones)")
    ap.add_argument("--minutes", type=float, default=2.5, help="training wall clock per network")
    ap.add_argument("--random-base", action="store_true", help="also train the base architecture from random init")
    ap.add_argument("--no-ssl", action="store_true", help="skip the random-init ssl- model")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/audio-explorer-bench").expanduser())
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import torch

    import embedders
    import retrieval_quality as rq
    from embedders.audio import decode
    from embedders.training import common, finetune, selfsup
    from projections.whitening import fit_whitening

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = args.cache.expanduser()
    if args.set == "sfx":
        import sfx_set

        manifest = sfx_set.build(cache, install=False)
    else:
        manifest = rq.build_dataset(cache, install=False)
    paths, labels, sources = rq.read_manifest(manifest)
    print(f"{args.set}: {len(paths)} clips (manifest {hashlib.sha1(manifest.read_bytes()).hexdigest()[:12]}), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    data = Path(tempfile.mkdtemp(prefix="ssl-pretrained-"))
    try:
        src = embedders.resolve_data_dir(None)  # reuse converted weights where the user's data folder has them
        info, _, mel_fb = finetune.base_parts(args.base, src)
        from embedders.musicnn import converted_path

        dst = converted_path(data, info["checkpoint"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(converted_path(src, info["checkpoint"]), dst)
        t = time.perf_counter()
        w16 = [decode(p, 16000)[0][: int(args.max_seconds * 16000)] for p in paths]
        powers = [finetune.mel_power(w, mel_fb) for w in w16]
        sr = common.SAMPLE_RATE
        w22 = [decode(p, sr)[0][: int(args.max_seconds * sr)] for p in paths]
        logmels = [common.log_mel(w) for w in w22]
        print(f"  decoded and mel spectrograms in {time.perf_counter() - t:.0f} s", flush=True)
        rows = []

        def score(tag: str, name: str, waves, note: str) -> None:
            emb = embedders.load(name, data)
            vecs = np.concatenate([emb.embed_clip_batch(waves[i:i + 32]) for i in range(0, len(waves), 32)])
            for t2, v in ((tag, vecs), (f"{tag} +adapt", fit_whitening(vecs).apply(vecs))):
                r = rq.evaluate(v, labels, sources)
                rows.append((t2, r["p_at_k"], r["p_at_k_cross_source"], note))
                print(f"  {t2}: P@5 {r['p_at_k']:.3f} xsrc {r['p_at_k_cross_source']:.3f}  ({note})", flush=True)

        quiet = lambda line: None  # noqa: E731
        score(f"{args.base} frozen", args.base, w16, "no training")
        runs = [(f"{args.base}+ssl ({r}, {t})", finetune.FineTuneConfig(recipe=r, tune=t))
                for r in args.recipes.split(",") for t in args.tune.split(",")]
        if args.random_base:
            runs.append((f"{info['arch']} random init ({runs[0][1].recipe})",
                         finetune.FineTuneConfig(recipe=runs[0][1].recipe, init="random")))
        for i, (tag, cfg) in enumerate(runs):
            cfg.epochs, cfg.max_minutes, cfg.patience = 1000, args.minutes, 1000
            name = f"{args.base}+ssl-b{i}"
            folder = common.model_folder(data, name)
            common.prepare_folder(folder, False, True)
            print(f"training {tag} for {args.minutes:g} min ...", flush=True)
            res = finetune.train(powers, folder, name, args.base, data, cfg, log=quiet,
                                 source={"library": args.set})
            steps = common.read_meta(folder)["steps"]
            score(tag, name, w16, f"{steps} steps, {res.epochs_run} epochs, best {res.best_epoch}")
        if not args.no_ssl:
            cfg = selfsup.SelfSupConfig(epochs=1000, max_minutes=args.minutes, patience=1000)
            folder = common.model_folder(data, "ssl-bench")
            common.prepare_folder(folder, False, True)
            print(f"training ssl- (random init) for {args.minutes:g} min ...", flush=True)
            res = selfsup.train(logmels, folder, "ssl-bench", cfg, log=quiet, source={"library": args.set})
            score("ssl- (random init)", "ssl-bench", w22, f"{res.epochs_run} epochs, best {res.best_epoch}")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\n{'network':<34} {'P@5':>6} {'xsrc':>6}  training")
    for tag, p, x, note in rows:
        print(f"{tag:<34} {p:>6.3f} {x:>6.3f}  {note}")
    r = rq.evaluate(np.eye(len(paths), dtype=np.float32), labels, sources)
    print(f"{'chance':<34} {r['chance_p_at_k']:>6.3f} {r['chance_p_at_k_cross_source']:>6.3f}")
    print(f"(equal wall clock per network: {args.minutes:g} min on {os.cpu_count()} CPUs, load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
