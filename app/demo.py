"""A demo library the project synthesises itself: several distinct classes, a few dozen clips."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

SR = 22050


def _env(n: int, attack_s: float, decay_s: float, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    a = np.clip(t / max(attack_s, 1e-4), 0, 1)
    return a * np.exp(-t / max(decay_s, 1e-4))


def kick(rng: np.random.Generator, dur: float = 0.6) -> np.ndarray:
    """A decaying pitch-swept sine (bass drum)."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    f0, f1 = rng.uniform(120, 180), rng.uniform(40, 60)
    freq = f1 + (f0 - f1) * np.exp(-t / 0.04)
    return np.sin(2 * np.pi * np.cumsum(freq) / SR) * _env(n, 0.002, rng.uniform(0.12, 0.25))


def snare(rng: np.random.Generator, dur: float = 0.4) -> np.ndarray:
    """Band-passed noise burst plus a short tone."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    noise = np.diff(rng.standard_normal(n + 1)) * 0.5
    tone = np.sin(2 * np.pi * rng.uniform(170, 230) * t)
    return (0.8 * noise + 0.4 * tone) * _env(n, 0.001, rng.uniform(0.06, 0.12))


def hihat(rng: np.random.Generator, dur: float = 0.25) -> np.ndarray:
    """High-passed noise with a very fast decay."""
    n = int(dur * SR)
    x = rng.standard_normal(n)
    for _ in range(3):
        x = np.diff(x, prepend=0.0)
    return 0.3 * x * _env(n, 0.0005, rng.uniform(0.015, 0.05))


def pad(rng: np.random.Generator, dur: float = 2.0) -> np.ndarray:
    """A slow-attack detuned chord of sawtooth-like partials."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    root = rng.choice([110.0, 130.8, 146.8, 164.8, 196.0])
    out = np.zeros(n)
    for ratio in (1.0, 1.26, 1.5):
        for det in (-0.003, 0.003):
            f = root * ratio * (1 + det)
            for k in range(1, 8):
                out += np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6.3)) / k
    a = np.clip(t / 0.5, 0, 1) * np.clip((dur - t) / 0.3, 0, 1)
    return out * a


def bell(rng: np.random.Generator, dur: float = 1.5) -> np.ndarray:
    """FM bell: inharmonic partials with a long decay."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    fc = rng.uniform(400, 900)
    idx = 3 * np.exp(-t / 0.5)
    return np.sin(2 * np.pi * fc * t + idx * np.sin(2 * np.pi * fc * 1.4 * t)) * _env(n, 0.002, 0.5)


def speechlike(rng: np.random.Generator, dur: float = 1.5) -> np.ndarray:
    """Glottal pulse train through moving formants (a vowel-ish babble)."""
    n = int(dur * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = np.cumsum(f0) / SR
    src = (phase % 1.0) < 0.1
    x = src.astype(float) - src.mean()
    out = np.zeros(n)
    for fbase in (rng.uniform(500, 800), rng.uniform(1000, 1600), rng.uniform(2300, 2900)):
        fmt = fbase * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        out += np.sin(2 * np.pi * np.cumsum(fmt) / SR) * np.convolve(x, np.ones(8) / 8, "same")
    syll = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 5) * t))
    return out * syll


def bass(rng: np.random.Generator, dur: float = 1.2) -> np.ndarray:
    """A plucked low square-ish bass line of three notes."""
    n = int(dur * SR)
    out = np.zeros(n)
    notes = rng.choice([41.2, 49.0, 55.0, 61.7, 73.4], size=3)
    step = n // 3
    for i, f in enumerate(notes):
        t = np.arange(step) / SR
        tone = np.sign(np.sin(2 * np.pi * f * t)) * 0.5 + np.sin(2 * np.pi * f * t)
        out[i * step:(i + 1) * step] = tone * _env(step, 0.003, 0.25)
    return out


CLASSES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "kick": kick, "snare": snare, "hihat": hihat, "pad": pad, "bell": bell, "voice": speechlike, "bass": bass,
}


def make_clip(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One synthetic clip of a class, peak-normalised with a random gain and a little noise."""
    x = CLASSES[kind](rng)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    x = x + rng.standard_normal(x.size) * 10 ** rng.uniform(-4, -3)
    return np.clip(x, -1, 1).astype(np.float32)


def write_demo_library(folder: str | Path, per_class: int = 6, seed: int = 0,
                       classes: list[str] | None = None, unlabelled: int = 2) -> Path:
    """Write `per_class` clips of each class into `folder/<class>/` plus a few root clips; returns folder."""
    import soundfile as sf

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for kind in classes or list(CLASSES):
        sub = folder / kind
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            sf.write(str(sub / f"{kind}_{i:02d}.wav"), make_clip(kind, rng), SR, subtype="PCM_16")
    kinds = classes or list(CLASSES)
    for i in range(unlabelled):
        sf.write(str(folder / f"unsorted_{i:02d}.wav"), make_clip(kinds[i % len(kinds)], rng), SR, subtype="PCM_16")
    return folder
