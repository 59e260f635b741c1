"""The first-run demo library: Sonic Pi's real samples when Debian's `sonic-pi-samples` is installed,
otherwise a set the project synthesises itself (several distinct classes, a few dozen clips)."""
from __future__ import annotations

import shutil
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


# ---------------------------------------------------------------- the real demo: Sonic Pi's samples

# Debian's `sonic-pi-samples` (packages.txt; scripts/setup.sh installs it): 165 one-shots and loops
# from freesound.org, CC0 (most) or MIT (the Sonic Pi project's own): /usr/share/doc/sonic-pi-samples/copyright.
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
SONIC_PI_COPYRIGHT = Path("/usr/share/doc/sonic-pi-samples/copyright")
SONIC_PI_MIN_FILES = 20  # fewer than this and the package is not really there: use the synthetic set

# file-name stem -> category (the demo's sub-folder, hence its label); first match wins
SONIC_PI_CATEGORIES: list[tuple[str, str]] = [
    ("kick", r"^(bd_|drum_heavy_kick|drum_bass_|elec_(hollow|soft)_kick)"),
    ("snare", r"^(sn_|drum_snare_|elec_(filt_|hi_|lo_|mid_)?snare)"),
    ("hihat", r"^drum_cymbal_(closed|pedal|open)"),
    ("cymbal", r"^(drum_cymbal_|drum_splash_|elec_cymbal)"),
    ("tom", r"^(drum_tom_|elec_fuzz_tom)"),
    ("percussion", r"^(perc_|drum_)"),  # the rest of drum_: cowbell, roll
    ("tabla", r"^tabla_"),
    ("guitar", r"^guit_"),
    ("bass", r"^(bass_|glitch_bass)"),
    ("loop", r"^loop_"),
    ("ambient", r"^ambi_"),
    ("electronic", r"^elec_"),
    ("glitch", r"^glitch_perc"),
    ("robot", r"^(mehackit_robot|glitch_robot)"),
    ("phone", r"^mehackit_phone"),
    ("vinyl", r"^vinyl_"),
]
SONIC_PI_OTHER = "misc"  # misc_burp, misc_crow, ... and anything a later package adds


def sonic_pi_category(stem: str) -> str:
    """The demo category of a Sonic Pi sample from its file name ('bd_haus' -> 'kick')."""
    import re

    for label, pattern in SONIC_PI_CATEGORIES:
        if re.match(pattern, stem.lower()):
            return label
    return SONIC_PI_OTHER


def sonic_pi_samples(source: str | Path | None = None) -> list[Path]:
    """The Sonic Pi sample files (sorted) if the package is installed, else []."""
    src = Path(source) if source is not None else SONIC_PI_DIR
    if not src.is_dir():
        return []
    files = sorted(p for p in src.iterdir()
                   if p.is_file() and p.suffix.lower() in (".flac", ".wav", ".ogg") and not p.name.startswith("."))
    return files if len(files) >= SONIC_PI_MIN_FILES else []


def write_sonic_pi_library(folder: str | Path, source: str | Path | None = None,
                           limit: int | None = None) -> dict[str, int] | None:
    """Copy the Sonic Pi samples into `folder/<category>/` (copies, not links: the library root must
    hold its files) with the package's copyright file; {category: count}, or None without the package.

    Idempotent: files already copied (same size) are kept. `limit` caps the number of files, taken
    round-robin over the categories so every one keeps some."""
    files = sonic_pi_samples(source)
    if not files:
        return None
    by_cat: dict[str, list[Path]] = {}
    for p in files:
        by_cat.setdefault(sonic_pi_category(p.stem), []).append(p)
    chosen: list[tuple[str, Path]] = []
    queues = {c: list(ps) for c, ps in sorted(by_cat.items())}
    while queues and (limit is None or len(chosen) < limit):
        for c in list(queues):
            if limit is not None and len(chosen) >= limit:
                break
            chosen.append((c, queues[c].pop(0)))
            if not queues[c]:
                del queues[c]
    folder = Path(folder)
    counts: dict[str, int] = {}
    for cat, src in chosen:
        dst = folder / cat / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not (dst.is_file() and dst.stat().st_size == src.stat().st_size):
            tmp = dst.with_name(f".{dst.name}.part")  # scan_folder skips dot files: no half-copied clip
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        counts[cat] = counts.get(cat, 0) + 1
    if source is None and SONIC_PI_COPYRIGHT.is_file():  # the licence travels with the files
        shutil.copyfile(SONIC_PI_COPYRIGHT, folder / "COPYRIGHT-sonic-pi-samples.txt")
    return dict(sorted(counts.items()))


def write_demo_audio(folder: str | Path, source: str | Path | None = None) -> tuple[Path, str, dict[str, int]]:
    """The first-run demo's audio: Sonic Pi's samples when the package is installed, else the synthetic
    set. (folder, "sonic-pi" | "synthetic", {category: count})."""
    folder = Path(folder)
    counts = write_sonic_pi_library(folder, source)
    if counts:
        return folder, "sonic-pi", counts
    write_demo_library(folder)
    per = {k: len(list((folder / k).glob("*.wav"))) for k in CLASSES}
    return folder, "synthetic", per
