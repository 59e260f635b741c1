"""Embedding throughput: seconds of audio embedded per wall second, per model, same files.

Also runs the ORIGINAL musicnn TensorFlow extractor (in a subprocess: it disables eager mode
process-wide) on the same files in the same run, against the PyTorch port, and prints the
ratio. Both sides are timed from file on disk to embedding (decode + mel + network).

    python benchmarks/embed_throughput.py [--files 8] [--seconds 30] [--models dsp,musicnn-msd]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import embedders  # noqa: E402
from embedders.audio import decode  # noqa: E402


def make_files(folder: Path, n: int, seconds: float) -> list[Path]:
    """n music-like files (pads, bass, drums mixed) of `seconds` each."""
    from app.demo import SR, bass, bell, hihat, kick, pad

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = np.zeros(int(seconds * SR))
        t = 0
        while t < x.size:
            for gen in (pad, bass, bell):
                s = gen(rng)
                e = min(x.size, t + s.size)
                x[t:e] += 0.3 * s[: e - t] / (np.abs(s).max() + 1e-9)
            for beat in range(0, int(2.0 * SR), int(0.5 * SR)):
                for gen in (kick, hihat):
                    s = gen(rng)
                    a = t + beat
                    e = min(x.size, a + s.size)
                    if a < x.size:
                        x[a:e] += 0.4 * s[: e - a] / (np.abs(s).max() + 1e-9)
            t += int(2.0 * SR)
        p = folder / f"music_{i:02d}.wav"
        sf.write(str(p), (x / np.abs(x).max() * 0.8).astype(np.float32), SR)
        out.append(p)
    return out


def time_port(name: str, files: list[Path], batch: bool = True) -> dict:
    """Decode + embed every file with our embedder (after one warm-up call)."""
    emb = embedders.load(name)
    w0, _ = decode(files[0], emb.sample_rate)
    emb.embed_frames(w0[: emb.sample_rate * 3])
    t0 = time.perf_counter()
    waves = [decode(f, emb.sample_rate)[0] for f in files]
    if batch:
        emb.embed_frames_batch(waves)
    else:
        for w in waves:
            emb.embed_frames(w)
    wall = time.perf_counter() - t0
    audio_s = sum(len(w) for w in waves) / emb.sample_rate
    return {"model": name, "mode": "batched" if batch else "one-by-one", "audio_s": audio_s, "wall_s": wall,
            "x_realtime": audio_s / wall}


ORIGINAL = r"""
import os, sys, time, json
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import warnings; warnings.filterwarnings("ignore")
from musicnn.extractor import extractor
files = json.loads(sys.argv[1]); model = sys.argv[2]
extractor(files[0], model=model, extract_features=True)  # warm-up (imports, first graph)
t0 = time.perf_counter()
for f in files:
    extractor(f, model=model, extract_features=True)
print(json.dumps({"wall_s": time.perf_counter() - t0}))
"""


def time_original(model: str, files: list[Path]) -> dict | None:
    """The original musicnn extractor on the same files, in a subprocess; None if it cannot run."""
    try:
        import musicnn  # noqa: F401
    except ImportError:
        return None
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    res = subprocess.run([sys.executable, "-c", ORIGINAL, json.dumps([str(f) for f in files]), model],
                         capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode != 0:
        print(f"original {model} failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    wall = json.loads(res.stdout.strip().splitlines()[-1])["wall_s"]
    audio_s = sum(sf.info(str(f)).duration for f in files)
    return {"model": f"original TF {model}", "mode": "extractor per file", "audio_s": audio_s, "wall_s": wall,
            "x_realtime": audio_s / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--models", default=None, help="comma-separated; default: every ready model")
    ap.add_argument("--no-original", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    names = args.models.split(",") if args.models else [a.name for a in embedders.available() if a.ready]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files, args.seconds)
        for name in names:
            try:
                rows.append(time_port(name, files))
            except Exception as exc:
                print(f"{name}: {exc}", file=sys.stderr)
        if "musicnn-msd" in names:
            rows.append(time_port("musicnn-msd", files, batch=False))
        if not args.no_original:
            for orig, port in (("MSD_musicnn", "musicnn-msd"), ("MSD_vgg", "vgg-msd")):
                r = time_original(orig, files)
                if r:
                    base = next((x for x in rows if x["model"] == port and x["mode"] == "batched"), None)
                    r["port_speedup"] = base["x_realtime"] / r["x_realtime"] if base else None
                    rows.append(r)
        extra = ROOT / "benchmarks" / "embed_throughput_models.py"
        if extra.exists() and not args.models:
            import importlib.util

            spec = importlib.util.spec_from_file_location("etm", extra)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            try:
                rows.extend(mod.rows(min(args.seconds, 20.0)))
            except Exception as exc:
                print(f"extra models: {exc}", file=sys.stderr)
    dsp = next((r for r in rows if r["model"] == "dsp"), None)
    print(f"\nembedding throughput on {os.cpu_count()} CPU cores (torch threads {torch.get_num_threads()}, "
          f"{args.files} files x {args.seconds:.0f} s, decode included)\n")
    print(f"{'model':34s} {'mode':20s} {'audio s':>8s} {'wall s':>8s} {'x real time':>12s} {'vs dsp':>7s} {'port/orig':>9s}")
    for r in rows:
        ratio = f"{r['x_realtime'] / dsp['x_realtime']:.2f}" if dsp else "-"
        sp = f"{r['port_speedup']:.1f}x" if r.get("port_speedup") else ""
        print(f"{r['model']:34s} {r.get('mode', ''):20s} {r['audio_s']:8.1f} {r['wall_s']:8.2f} "
              f"{r['x_realtime']:12.1f} {ratio:>7s} {sp:>9s}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
