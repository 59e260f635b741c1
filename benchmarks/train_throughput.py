"""Training throughput of the three trainable embedders (windows per second), with default model sizes.

    python benchmarks/train_throughput.py                    # CPU (or CUDA when present), demo library
    python benchmarks/train_throughput.py --per-class 30 --epochs 3 --device cpu --threads 2

A synthetic demo library (app.demo, 7 classes) is written to a temporary folder and indexed
with `dsp`; then each trainer runs a few epochs with its default architecture:

  autoencoder  items are 64x32 log-mel windows (0.37 s), hop 16 frames
  selfsup      items are augmented 64x96 views (1.1 s), two per clip per step
  contrastive  items are base (dsp) clip vectors through the MLP head

"items/s" counts training items (forward + backward + optimizer step, plus the per-epoch
validation pass) over the epochs' wall time, excluding decoding and the PCA check.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=20, help="demo clips per class (7 classes)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import index
    from app.demo import write_demo_library
    from index import training

    rows = []
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        tmp = Path(tmp)
        folder = write_demo_library(tmp / "lib", per_class=args.per_class, unlabelled=0)
        data = tmp / "data"
        store = index.open_store(data)
        t = time.perf_counter()
        index.index_folder(store, "bench", folder, ["dsp"], data_dir=data)
        print(f"indexed {7 * args.per_class} clips with dsp in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        quiet = dict(log=lambda line: None, data_dir=data, overwrite=True)
        runs = [
            ("autoencoder", lambda c: training.train_autoencoder(store, "bench", config=c, **quiet),
             training.AutoencoderConfig),
            ("selfsup", lambda c: training.train_selfsup(store, "bench", config=c, **quiet), training.SelfSupConfig),
            ("contrastive", lambda c: training.train_contrastive(store, "bench", "dsp", config=c, **quiet),
             training.SupConConfig),
        ]
        for kind, run, cfg_cls in runs:
            cfg = cfg_cls(epochs=args.epochs, patience=args.epochs + 1, device=args.device)
            t = time.perf_counter()
            res = run(cfg)
            total = time.perf_counter() - t
            per_epoch = sum(h["wall_s"] for h in res.history) / max(len(res.history), 1)
            rows.append((kind, res.model, res.epochs_run, per_epoch, res.windows_per_s, total))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"\ntraining throughput on {device} (torch threads {torch.get_num_threads()}), "
          f"{7 * args.per_class} demo clips, {args.epochs} epochs")
    head = f"{'trainer':<12} {'model':<22} {'epochs':>6} {'s/epoch':>8} {'items/s':>9} {'total s':>8}"
    print(head)
    print("-" * len(head))
    for kind, model, ep, spe, ips, tot in rows:
        print(f"{kind:<12} {model:<22} {ep:>6} {spe:>8.2f} {ips:>9.0f} {tot:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
