"""Refit embedders/aspect_reference.json (the means and spreads that standardise aspect vectors)
from the real recordings of the retrieval benchmark (built by benchmarks/retrieval_quality.py).

    python scripts/fit_aspect_reference.py [--cache ~/.cache/audio-explorer-bench] [--max-seconds 5]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedders.aspects import REFERENCE_PATH, SR, fit_reference, raw_aspects  # noqa: E402
from embedders.audio import decode  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "audio-explorer-bench"))
    ap.add_argument("--max-seconds", type=float, default=5.0)
    args = ap.parse_args()
    root = Path(args.cache) / "dataset"
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    raws = []
    for row in rows:
        wave, sr = decode(root / row["path"], SR)
        raws.append(raw_aspects(wave[: int(args.max_seconds * sr)], sr))
    ref = {"fitted_on": f"{len(raws)} clips of the retrieval benchmark set (first {args.max_seconds:g} s)",
           **fit_reference(raws)}
    REFERENCE_PATH.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {REFERENCE_PATH} from {len(raws)} clips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
