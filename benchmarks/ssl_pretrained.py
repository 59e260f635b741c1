"""Self-supervised fine-tuning of the pretrained VGG port vs the same network from random init.

    python benchmarks/ssl_pretrained.py --set sfx --minutes 8

The library (a labelled set of retrieval_quality.py, labels unused for training) is the
training data: SimCLR (NT-Xent, temperature 0.2, projection head 128-128-64 on `pool5`) with
BYOL-A-style augmentations on musicnn's 16 kHz, 96-band mel power before the log: random 3 s
crop (repeat-padded clips, so also a time shift), mixup with another clip (ratio <= 0.3),
random gain (+-6 dB) and a smooth random EQ (+-6 dB over the bands), then one frequency mask
after the log. Both networks train for the same wall-clock time (`--minutes`, Adam 3e-4,
32 clips per step); the batch norms keep the checkpoint's statistics (identity for random
init). Every clip is then embedded like `vgg-msd` (pool5 mean over 3 s patches) and scored
with retrieval_quality.evaluate (P@5, cross-source), plain and library-adapted
(projections/whitening.py), next to the frozen pretrained network measured in the same run.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATCH = 187


def _mels(paths, mel_fb, max_s: float) -> list[np.ndarray]:
    """[n_frames, 96] mel POWER of each clip (musicnn front end, before the log)."""
    import torch

    from embedders.audio import decode
    from embedders.musicnn.models import HOP_LENGTH, N_FFT, SAMPLE_RATE

    out = []
    win = torch.hann_window(N_FFT, periodic=True)
    for p in paths:
        w, _ = decode(p, SAMPLE_RATE)
        x = torch.as_tensor(w[: int(max_s * SAMPLE_RATE)] if len(w) else np.zeros(N_FFT, np.float32))
        spec = torch.stft(x, N_FFT, hop_length=HOP_LENGTH, window=win, center=True, pad_mode="constant",
                          return_complex=True)
        out.append((mel_fb @ (spec.real.square() + spec.imag.square())).T.numpy().astype(np.float32))
    return out


def _padded(m: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // max(len(m), 1))
    return np.tile(m, (reps, 1))[: max(n, len(m))] if len(m) < n else m


def _views(mels, idx, rng) -> np.ndarray:
    """[len(idx), 187, 96] augmented log-mel views."""
    out = np.empty((len(idx), PATCH, 96), np.float32)
    for j, i in enumerate(idx):
        m = _padded(mels[i], PATCH)
        s = rng.integers(0, len(m) - PATCH + 1)
        v = m[s:s + PATCH].copy()
        o = mels[rng.integers(len(mels))]
        o = _padded(o, PATCH)
        so = rng.integers(0, len(o) - PATCH + 1)
        lam = rng.uniform(0, 0.3)
        v = (1 - lam) * v + lam * o[so:so + PATCH]
        gain = 10 ** (rng.uniform(-6, 6) / 10)
        eq_db = np.interp(np.arange(96), np.linspace(0, 95, 5), rng.uniform(-6, 6, 5))
        v = v * gain * 10 ** (eq_db / 10)[None, :]
        v = np.log10(10000.0 * v + 1.0)
        f0 = rng.integers(0, 96 - 12)
        v[:, f0:f0 + rng.integers(0, 12)] = 0.0
        out[j] = v
    return out


def _nt_xent(z, temperature: float = 0.2):
    import torch
    import torch.nn.functional as F

    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    sim = z @ z.T / temperature
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train(net, mels, minutes: float, seed: int = 0, batch: int = 32, log=print):
    """Train `net` (in place) with SimCLR for `minutes` of wall clock; returns (steps, last loss)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    params = [p for p in net.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=3e-4)
    net.train()
    t0, steps, loss_v = time.perf_counter(), 0, float("nan")
    while time.perf_counter() - t0 < minutes * 60:
        idx = rng.choice(len(mels), size=min(batch, len(mels)), replace=False)
        x = torch.as_tensor(np.concatenate([_views(mels, idx, rng), _views(mels, idx, rng)]))
        loss = _nt_xent(head(net(x)["pool5"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        loss_v = loss.item()
        if steps % 10 == 0:
            log(f"    step {steps}, loss {loss_v:.3f}, {time.perf_counter() - t0:.0f} s")
    net.eval()
    return steps, loss_v


def embed(net, mels) -> np.ndarray:
    """Clip vectors like vgg-msd: pool5 mean over non-overlapping (repeat-padded) 3 s patches."""
    import torch

    from embedders.musicnn.embedder import make_patches

    out = []
    with torch.inference_mode():
        for m in mels:
            logm = torch.log10(10000.0 * torch.as_tensor(m) + 1.0)
            v = net(make_patches(logm))["pool5"].mean(0).numpy()
            out.append(v / max(np.linalg.norm(v), 1e-12))
    return np.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=["music", "sfx"], default="sfx")
    ap.add_argument("--checkpoint", default="MSD_vgg", choices=["MSD_vgg", "MTT_vgg"])
    ap.add_argument("--minutes", type=float, default=8.0, help="training wall clock per network")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/audio-explorer-bench").expanduser())
    ap.add_argument("--max-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    import torch

    import embedders
    import retrieval_quality as rq
    from embedders.musicnn.nets import build_net, load_net
    from projections.whitening import fit_whitening

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cache = args.cache.expanduser()
    if args.set == "sfx":
        import sfx_set

        manifest = sfx_set.build(cache, install=False)
    else:
        manifest = rq.build_dataset(cache, install=False)
    paths, labels, sources = rq.read_manifest(manifest)
    print(f"{args.set}: {len(paths)} clips (manifest {hashlib.sha1(manifest.read_bytes()).hexdigest()[:12]})")
    base, mel_fb = load_net(args.checkpoint, embedders.resolve_data_dir(None))
    t = time.perf_counter()
    mels = _mels(paths, mel_fb.cpu(), args.max_seconds)
    print(f"  mel spectrograms in {time.perf_counter() - t:.0f} s")
    rows = []

    def score(name, vecs, note):
        for tag, v in ((name, vecs), (f"{name} +adapt", fit_whitening(vecs).apply(vecs))):
            r = rq.evaluate(v, labels, sources)
            rows.append((tag, r["p_at_k"], r["p_at_k_cross_source"], note))
            print(f"  {tag}: P@5 {r['p_at_k']:.3f} xsrc {r['p_at_k_cross_source']:.3f}", flush=True)

    frozen = copy.deepcopy(base).cpu().eval()
    score(f"{args.checkpoint} frozen", embed(frozen, mels), "no training")
    for name, net in ((f"{args.checkpoint} fine-tuned", copy.deepcopy(base).cpu()), ("vgg random init", build_net("vgg"))):
        print(f"training {name} for {args.minutes:g} min ...", flush=True)
        steps, loss = train(net, mels, args.minutes)
        score(name, embed(net, mels), f"{steps} steps, loss {loss:.2f}")
    load = os.getloadavg()[0]
    print(f"\n{'network':<32} {'P@5':>6} {'xsrc':>6}  training")
    for tag, p, x, note in rows:
        print(f"{tag:<32} {p:>6.3f} {x:>6.3f}  {note}")
    r = rq.evaluate(np.eye(len(paths), dtype=np.float32), labels, sources)
    print(f"{'chance':<32} {r['chance_p_at_k']:>6.3f} {r['chance_p_at_k_cross_source']:>6.3f}")
    print(f"(equal wall clock per network: {args.minutes:g} min on {os.cpu_count()} CPUs, load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
