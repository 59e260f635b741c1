"""Class statistics of a big library: exact against sampled (`index.classes.class_stats`).

    python benchmarks/ui_map_load.py --sizes 100000,1000000 --keep DIR --build-only
    python benchmarks/class_stats_scale.py DIR/100000 [--exact]

Runs on a library kept by `ui_map_load.py --keep` (N CLUSTERED SYNTHETIC 128-d vectors in 12
labelled clusters, in Qdrant Edge, no HNSW graph below 200k points: exact scans, as the app
searches there). Above `index.classes.CLASS_STATS_EXACT` labelled clips the statistics come from
`sample_per_class` clips per class (neighbours searched among all points by Qdrant); with --exact
the exact statistics are timed too (the baseline of the same run) and the sampled numbers are
compared with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="a data folder kept by ui_map_load.py --keep (library 'big', model 'bench')")
    ap.add_argument("--exact", action="store_true", help="also time the exact statistics (minutes at 1M)")
    args = ap.parse_args()
    import index
    from index import classes

    store = index.open_store(args.data)
    load0 = os.getloadavg()[0]
    rows = []
    t = time.perf_counter()
    est = classes.class_stats(store, "big", "bench", k=5)
    rows.append(("sampled", time.perf_counter() - t, est))
    if args.exact:
        t = time.perf_counter()
        ex = classes.class_stats(store, "big", "bench", k=5, exact_max=10 ** 12)
        rows.append(("exact", time.perf_counter() - t, ex))
    store.close()
    base = rows[-1]
    s = est["sampled"]
    print(f"\nclass statistics of {est['n_labelled']:,} clips, {len(est['labels'])} classes, {os.cpu_count()} cores, "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; sampled: "
          + (f"{s['n']:,} of {s['of']:,} ({s['per_class']} per class)" if s else "no (exact below the threshold)"))
    print(f"{'mode':>8s} {'time s':>8s} {'vs ' + base[0]:>10s} {'agreement@5':>12s} {'max |per-class diff|':>21s} "
          f"{'max |centroid cos diff|':>24s} {'typical top-5 overlap':>22s}")
    for mode, sec, st in rows:
        if base[0] == "exact" and mode != "exact":
            ex = base[2]
            dpc = max(abs(st["agreement"][lb] - ex["agreement"][lb]) for lb in st["labels"])
            dcs = float(np.abs(np.array(st["centroid_similarity"]) - np.array(ex["centroid_similarity"])).max())
            ov = np.mean([len({h.id for h in st["typical"][lb]} & {h.id for h in ex["typical"][lb]}) / 5
                          for lb in st["labels"]])
            extra = f"{dpc:21.4f} {dcs:24.4f} {ov:22.2f}"
        else:
            extra = f"{'-':>21s} {'-':>24s} {'-':>22s}"
        print(f"{mode:>8s} {sec:8.1f} {sec / base[1]:10.3f} {st['overall_agreement']:12.4f} {extra}")


if __name__ == "__main__":
    main()
