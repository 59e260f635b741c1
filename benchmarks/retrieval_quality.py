"""Retrieval quality of every embedder on real recordings from Debian's archive.

    python benchmarks/retrieval_quality.py                          # every "ready" model
    python benchmarks/retrieval_quality.py --models dsp,vgg-msd --json out.json
    python benchmarks/retrieval_quality.py --cache DIR --no-install --per-class

What it measures. Every clip of a labelled set is embedded with `embed_clip` (decoded at
the model's `sample_rate`, trimmed to the first `--max-seconds`, default 5 s). For each
clip its k=5 nearest neighbours by cosine (itself excluded) are found and P@5 is the
fraction of them that share its label, averaged over clips. "P@5 xsrc" repeats this with
neighbours restricted to clips from OTHER sources (another drum kit, soundfont, speaker,
package), so recognising the recording chain earns nothing; it is averaged over the clips
whose label occurs in at least one other source. The "chance" row is the expected value for
random neighbours given the class frequencies. `evaluate(vectors, labels, sources, k)` is
importable for other benchmarks (e.g. a trained projection head).

The data set. Built once in the cache folder (default `~/.cache/audio-explorer-bench/`,
never in the repository) from free Debian packages, installed with apt-get only when
missing (each install is printed; `--no-install` skips that and uses what is present):

  package                        what it gives                               used for
  hydrogen-data                  GMRockKit, TR808EmulationKit (Hydrogen)     drum one-shots
  hydrogen-drumkits              14 Hydrogen kits (acoustic, electronic,     drum / percussion
                                 hand percussion, djembe ensemble)           one-shots
  hydrogen-drumkits-effects      belofilms_GuitarStrums (acoustic strums)    guitar
  sonic-pi-samples               Sonic Pi one-shots (bd_, sn_, drum_, elec_, drums, tabla,
                                 tabla_, guit_ files)                        guitar
  avldrums.lv2-soundfont         AVL Black Pearl / Red Zeppelin drum kits    drums (rendered)
  fluid-soundfont-gm             FluidR3 GM soundfont                        drums + instruments
  timgm6mb-soundfont             TimGM6mb GM soundfont                       drums + instruments
  fluidsynth                     renders soundfont notes to wav (no reverb/chorus)
  grandorgue-demo                GrandOrgue demo pipe organ (7 stops)        organ
  asterisk-core-sounds-en-wav    prompts by Allison Smith (en-US, 8 kHz)     speech
  asterisk-core-sounds-es-wav    prompts by Allison Smith (es-MX, 8 kHz)     speech
  asterisk-core-sounds-fr-wav    prompts by June Wallack (fr-CA, 8 kHz)      speech
  espeak-ng, flite               synthetic speech (several voices each)      speech
  asterisk-moh-opsound-wav       5 music-on-hold tracks (8 kHz)              music
  asc-music                      3 game soundtrack tracks (mp3)              music
  fretsonfire-songs-sectoid      4 rock songs (song.ogg + guitar.ogg mixed)  music

Labels (15 classes):
  * Hydrogen kits: from the instrument name in each kit's drumkit.xml, by regular
    expression (`LABEL_PATTERNS`, first match wins; "stick", "rim click", rolls, dunun
    bells, cowbells, claves, FX and unnamed slots are skipped): kick, snare, hihat (closed/pedal/open),
    tom, cymbal (crash/ride/splash/china), clap, hand_drum (conga/bongo/djembe/cajon/
    dunun), shaker (shaker/maraca/tambourine/cabasa). Up to two velocity layers per
    instrument (loudest, then a middle one).
  * Sonic Pi: from the file-name prefix (`SONIC_PI_LABELS`): bd_ -> kick, sn_ -> snare,
    drum_cymbal_closed/pedal/open -> hihat, tabla_ -> hand_drum, guit_ -> guitar, ...
  * Soundfont drum kits: General MIDI percussion notes (`GM_DRUM_NOTES`, velocity 110)
    on the drum channel; the AVL kits (preset 0) by their own key map
    (`AVL_DRUM_NOTES`, from avldrums.lv2's midnam), velocities 127 and 70 (two of its
    five sampled layers).
  * Soundfont instruments: GM programs (`GM_PROGRAMS`): piano (0, 1), guitar (24, 25),
    strings (40 violin, 42 cello, 48 ensemble), brass (56 trumpet, 57 trombone, 60 horn),
    organ (19 church organ); several pitches each, 2 s notes, 3 s clips.
  * belofilms strums -> guitar; GrandOrgue stops (Bourdon, Flute harmonique, Gamba,
    Hautbois, Montre, Octavin, Trompette) -> organ; Asterisk prompts, espeak-ng and flite
    -> speech; 5 s excerpts of whole tracks -> music.

Sources (what "another source" means): the kit, soundfont, speaker, engine or package
that recorded the clip. Where packages share recordings they are one source: GMRockKit,
"The Black Pearl 1.0" (81 identical files) and the AVL Black Pearl soundfont are
`blackpearl`; the three Millo kits are `hydrogen:Millo`; en-US and es-MX Asterisk prompts
are both Allison Smith (`asterisk:Allison`); every espeak-ng voice is `espeak-ng`, every
flite voice `flite`. MuseScore General and the csound GM bank are NOT used: they share
samples with FluidR3 and TimGM6mb (waveform correlation ~1.0 on several programs).
Every clip is mixed to mono, trimmed of leading/trailing silence (-60 dB), cut to 5 s, peak-normalised to
0.9 (level is not a cue), written as 16-bit wav; exact duplicates and near-duplicates
within a (label, source) (correlation > 0.98 over the first second) are dropped; at most
`PER_SOURCE_CAP[label]` clips per (label, source), picked for variety (one per instrument
before second layers).

Class counts of the set this script builds (DATASET_VERSION 2, Debian 12 packages;
608 clips, 15 classes, 26 sources; 1267 s of audio after the 5 s cut):

  label      clips  sources
  kick          45       15   drum classes: the kits among blackpearl, 11 other Hydrogen
  snare         54       15     sources, sonic-pi, sf:FluidR3_GM, sf:TimGM6mb and
  hihat         70       15     sf:Red_Zeppelin_4_LV2 that have the instrument
  tom           61       13
  cymbal        59       12
  clap          16       11
  hand_drum     31        7   Gimme A Hand, circAfrique, ElectricEmpire, TR808, sonic-pi
                                (tabla), sf:FluidR3_GM, sf:TimGM6mb
  shaker        23        7
  piano         20        2   sf:FluidR3_GM, sf:TimGM6mb
  guitar        40        4   sf:FluidR3_GM, sf:TimGM6mb, belofilms, sonic-pi
  strings       22        2   sf:FluidR3_GM, sf:TimGM6mb
  brass         24        2   sf:FluidR3_GM, sf:TimGM6mb
  organ         30        3   sf:FluidR3_GM, sf:TimGM6mb, grandorgue-demo
  speech        55        4   asterisk:Allison, asterisk:June, espeak-ng, flite
  music         58        3   asterisk-moh-opsound (8 kHz), asc-music, fretsonfire-sectoid

(`--show-dataset` prints the full label x source table of the set in the cache.)
The manifest is `<cache>/dataset/manifest.csv` (path relative to that folder, label,
source). Embeddings are cached per model in `<cache>/embeddings/` as npz files keyed by
model name, manifest hash and `--max-seconds`, so re-runs only time new models.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASET_VERSION = 2
DEFAULT_CACHE = Path("~/.cache/audio-explorer-bench").expanduser()
STORE_MAX_S = 5.0
PEAK = 0.9

PACKAGES = [
    "hydrogen-data", "hydrogen-drumkits", "hydrogen-drumkits-effects", "sonic-pi-samples",
    "avldrums.lv2-soundfont", "fluid-soundfont-gm", "timgm6mb-soundfont", "fluidsynth",
    "grandorgue-demo", "asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav",
    "asterisk-core-sounds-fr-wav", "espeak-ng", "flite", "asterisk-moh-opsound-wav",
    "asc-music", "fretsonfire-songs-sectoid",
]

HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
SF2_DIR = Path("/usr/share/sounds/sf2")
GRANDORGUE_DIR = Path("/usr/share/GrandOrgue/packages")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
MOH_DIR = Path("/usr/share/asterisk/moh")
ASC_DIR = Path("/usr/share/games/asc/music")
FOF_DIR = Path("/usr/share/games/fretsonfire/data/songs/sectoid")

# Regular expressions on lower-cased Hydrogen instrument names; first match wins.
SKIP_PATTERN = re.compile(r"stick|rim ?click|roll|^\s*$|^\d+$|sample:")
LABEL_PATTERNS = [
    ("kick", re.compile(r"kick|bass ?drum|bassdrum")),
    ("clap", re.compile(r"clap")),
    ("hand_drum", re.compile(r"conga|bongo|djembe|cajon|sangban|dununba|kenkeni|tabla")),
    ("shaker", re.compile(r"shaker|maraca|tambourine|cabasa")),
    ("hihat", re.compile(r"hi-?hat|\bhh\b|\bohh\b|\bhat\b|closed hat|open hat")),
    ("cymbal", re.compile(r"crash|ride|splash|china|cymbal")),
    ("tom", re.compile(r"\btom")),
    ("snare", re.compile(r"snare")),
]
HYDROGEN_SKIP_KITS = {"belofilms_GuitarStrums"}  # not drums: used for guitar
# Kits that share recordings with another kit (or with a soundfont) are one source.
SOURCE_GROUPS = {
    "GMRockKit": "blackpearl",
    "The Black Pearl 1.0": "blackpearl",
    "Black_Pearl_4_LV2": "blackpearl",
    "Millo-Drums_v.1": "hydrogen:Millo",
    "Millo_MultiLayered2": "hydrogen:Millo",
    "Millo_MultiLayered3": "hydrogen:Millo",
}

SONIC_PI_LABELS = [
    ("kick", re.compile(r"^(bd_|drum_heavy_kick|drum_bass_|elec_(hollow|soft)_kick)")),
    ("snare", re.compile(r"^(sn_|drum_snare_|elec_(filt|hi|lo|mid)?_?snare)")),
    ("hihat", re.compile(r"^drum_cymbal_(closed|pedal|open)")),
    ("cymbal", re.compile(r"^(drum_cymbal_(hard|soft)|drum_splash_|elec_cymbal)")),
    ("tom", re.compile(r"^drum_tom_")),
    ("hand_drum", re.compile(r"^tabla_")),
    ("guitar", re.compile(r"^guit_")),
]

GM_DRUM_NOTES = {
    "kick": [36, 35], "snare": [38, 40], "hihat": [42, 46, 44],
    "tom": [41, 45, 48, 43, 47, 50], "cymbal": [49, 51, 57, 53, 52, 55, 59], "clap": [39],
    "hand_drum": [63, 60, 64, 61, 62], "shaker": [54, 70, 69, 82],
}
# The AVL kits have their own key map (x42/avldrums.lv2 src/midnam.h): 48 is a swish hat,
# 50/52/58 are cymbal chokes (skipped), 54 tambourine, 60 a third crash, 61 maracas.
AVL_DRUM_NOTES = {
    "kick": [36], "snare": [38, 40], "clap": [39], "tom": [41, 45, 43, 47],
    "hihat": [42, 46, 44, 48], "cymbal": [49, 51, 57, 53, 55, 59, 60], "shaker": [54, 61],
}
# GM soundfonts have one sample per drum (velocity only changes the level, which peak
# normalisation removes), the AVL kits five velocity layers: two of them are used.
DRUM_VELOCITIES = {"gm": [110], "avl": [127, 70]}
# label -> [(program, [MIDI notes])]
GM_PROGRAMS = {
    "piano": [(0, [36, 48, 60, 72, 84]), (1, [43, 55, 67, 79, 91])],
    "guitar": [(24, [40, 47, 52, 59, 64, 71]), (25, [43, 50, 55, 62, 67, 74])],
    "strings": [(40, [55, 62, 69, 76]), (42, [36, 43, 50, 57]), (48, [48, 60, 72])],
    "brass": [(56, [55, 62, 69, 76]), (57, [40, 47, 53, 58]), (60, [41, 48, 55, 62])],
    "organ": [(19, [36, 43, 48, 55, 60, 67, 72, 79])],
}
GM_SOUNDFONTS = ["FluidR3_GM.sf2", "TimGM6mb.sf2"]
AVL_SOUNDFONTS = ["Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2"]

PER_SOURCE_CAP = defaultdict(lambda: 6, {
    "piano": 10, "guitar": 12, "strings": 11, "brass": 12, "organ": 15,
    "speech": 16, "music": 24,
})

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please leave your message after the tone.",
    "Tomorrow the weather will be cloudy with a chance of rain in the afternoon.",
    "Seven hundred and forty two people attended the concert last night.",
    "Could you tell me the way to the railway station, please?",
    "She sells sea shells by the sea shore.",
]
ESPEAK_VOICES = ["en-us", "en-gb-x-rp", "en+f3", "en-gb-scotland"]
FLITE_VOICES = ["slt", "rms", "awb", "kal16"]


# ----------------------------------------------------------------------------- metrics

def evaluate(vectors: np.ndarray, labels, sources, k: int = 5) -> dict:
    """Leave-one-out retrieval quality of clip vectors.

    vectors [n, dim] (any scale; cosine is used), labels [n], sources [n].
    Returns p_at_k (same-label fraction of the k nearest neighbours, self excluded,
    averaged over clips), p_at_k_cross_source (neighbours restricted to other sources,
    averaged over clips whose label occurs in another source), the chance values of
    both for random neighbours, per-label P@k, and the clip counts.
    """
    x = np.asarray(vectors, np.float64)
    labels = np.asarray(labels)
    sources = np.asarray(sources)
    n = len(x)
    if n < 2:
        raise ValueError("evaluate needs at least two clips")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    same_label = labels[:, None] == labels[None, :]
    same_source = sources[:, None] == sources[None, :]
    eye = np.eye(n, dtype=bool)

    def p_at_k(mask_out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        s = np.where(mask_out, -np.inf, sim)[rows]
        kk = min(k, n - 1)
        idx = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        valid = np.isfinite(np.take_along_axis(s, idx, axis=1))
        hits = np.take_along_axis(same_label[rows], idx, axis=1) & valid
        return hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)

    all_rows = np.arange(n)
    p_all = p_at_k(eye, all_rows)
    other = ~same_source
    eligible = (same_label & other).any(axis=1)
    rows_x = all_rows[eligible]
    p_cross = p_at_k(same_source, rows_x) if len(rows_x) else np.zeros(0)

    chance = ((same_label & ~eye).sum(axis=1) / (n - 1)).mean()
    chance_cross = ((same_label & other).sum(axis=1)[eligible] /
                    np.maximum(other.sum(axis=1)[eligible], 1)).mean() if len(rows_x) else float("nan")

    per_label = {}
    for lab in sorted(set(labels.tolist())):
        m = labels == lab
        mx = labels[rows_x] == lab
        per_label[str(lab)] = {
            "n": int(m.sum()),
            "p_at_k": float(p_all[m].mean()),
            "p_at_k_cross_source": float(p_cross[mx].mean()) if mx.any() else None,
        }
    return {
        "k": k, "n": int(n), "n_cross_source": int(len(rows_x)),
        "p_at_k": float(p_all.mean()),
        "p_at_k_cross_source": float(p_cross.mean()) if len(rows_x) else float("nan"),
        "chance_p_at_k": float(chance), "chance_p_at_k_cross_source": float(chance_cross),
        "per_label": per_label,
    }


def evaluate_search(vectors: np.ndarray, w, labels, sources, k: int = 5, diffusion: dict | None = None) -> dict:
    """Leave-one-out P@k as the app's adapted search ranks (index/adapt.py `rerank`): the
    RERANK_POOL nearest by raw cosine (other sources only for cross-source), adapted by `w`,
    ranked by pool diffusion (projections/diffusion.py; by adapted cosine when
    AUDIO_EXPLORER_DIFFUSION=0), a copy of the query first. Same keys as `evaluate`.
    `diffusion`: other pool_diffusion parameters (k, alpha, gamma)."""
    from index.adapt import RERANK_POOL, SAME_CLIP, diffusion_enabled
    from projections.diffusion import diffusion_from_sims

    labels, sources = np.asarray(labels), np.asarray(sources)
    n = len(labels)
    raw = np.asarray(vectors, np.float64)
    raw = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    sr = raw @ raw.T
    xa = np.asarray(w.apply(vectors), np.float64)
    sa = xa @ xa.T
    same_label = labels[:, None] == labels[None, :]
    same_source = sources[:, None] == sources[None, :]
    diffuse = diffusion_enabled()

    def top(i: int, exclude: np.ndarray) -> np.ndarray:
        r = np.where(exclude, -np.inf, sr[i])
        pool = np.argsort(-r, kind="stable")[:max(RERANK_POOL, 10 * k)]
        pool = pool[np.isfinite(r[pool])]
        cos = sa[i, pool]
        nodes = np.concatenate([[i], pool])
        rank = diffusion_from_sims(sa[np.ix_(nodes, nodes)], **(diffusion or {})) if diffuse and len(pool) > 1 else cos
        rank = np.where(cos >= SAME_CLIP, np.inf, rank)
        return pool[np.lexsort((-cos, -rank))][:k]

    eye = np.eye(n, dtype=bool)
    p_all = np.asarray([same_label[i, top(i, eye[i])].mean() for i in range(n)])
    eligible = (same_label & ~same_source).any(axis=1)
    rows_x = np.flatnonzero(eligible)
    p_cross = np.asarray([same_label[i, top(i, same_source[i])].mean() for i in rows_x])
    base = evaluate(xa, labels, sources, k)
    per_label = {}
    for lab in sorted(set(labels.tolist())):
        m, mx = labels == lab, labels[rows_x] == lab
        per_label[str(lab)] = {"n": int(m.sum()), "p_at_k": float(p_all[m].mean()),
                               "p_at_k_cross_source": float(p_cross[mx].mean()) if mx.any() else None}
    return {**base, "p_at_k": float(p_all.mean()),
            "p_at_k_cross_source": float(p_cross.mean()) if len(rows_x) else float("nan"),
            "per_label": per_label}


# ----------------------------------------------------------------------------- packages

def _installed(pkg: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return res.returncode == 0 and "install ok installed" in res.stdout


def ensure_packages(packages: list[str], install: bool = True) -> list[str]:
    """Install the missing Debian packages (printing them); returns those still missing."""
    if shutil.which("dpkg-query") is None:
        print("! not a Debian system (no dpkg-query): using whatever sample files exist")
        return list(packages)
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return []
    if not install:
        print(f"! missing packages (not installing, --no-install): {' '.join(missing)}")
        return missing
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            print(f"! missing packages and not root: apt-get install {' '.join(missing)}")
            return missing
        cmd = ["sudo", *cmd]
    print(f"installing with apt-get: {' '.join(missing)}", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True,
                         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        print(f"! apt-get failed ({tail[0]}); continuing with what is installed")
    still = [p for p in missing if not _installed(p)]
    if still:
        print(f"! still missing: {' '.join(still)}")
    return still


# ----------------------------------------------------------------------------- data set

@dataclass
class Clip:
    label: str
    source: str
    item: str  # unique within (label, source): becomes the file name
    wave: np.ndarray  # mono float32
    sr: int
    rank: int = 0  # lower is preferred when a (label, source) is over its cap


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-")[:80] or "x"


def _mono(data: np.ndarray) -> np.ndarray:
    return (data.mean(axis=1) if data.ndim == 2 else data).astype(np.float32)


def _read(path: Path) -> tuple[np.ndarray, int]:
    from embedders.audio import decode

    return decode(path)


def _tidy(wave: np.ndarray, sr: int, top_db: float = 60.0) -> np.ndarray | None:
    """Trim leading/trailing silence, cut to STORE_MAX_S, peak-normalise; None if silent."""
    wave = np.asarray(wave, np.float32)
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak < 1e-3:
        return None
    loud = np.flatnonzero(np.abs(wave) > peak * 10 ** (-top_db / 20))
    pad = int(0.05 * sr)
    start = max(0, loud[0] - int(0.005 * sr))
    wave = wave[start: loud[-1] + pad]
    wave = wave[: int(STORE_MAX_S * sr)]
    if len(wave) < int(0.05 * sr):
        return None
    return (wave * (PEAK / float(np.abs(wave).max()))).astype(np.float32)


def _label_of(name: str, patterns) -> str | None:
    low = name.lower()
    if patterns is LABEL_PATTERNS and SKIP_PATTERN.search(low):
        return None
    for label, pat in patterns:
        if pat.search(low):
            return None if label == "hand_drum" and "bell" in low else label  # dunun bells
    return None


def hydrogen_clips():
    """Drum one-shots from every Hydrogen kit (label from the instrument name)."""
    if not HYDROGEN_DIR.is_dir():
        print("! no Hydrogen kits found; skipping")
        return
    for kit_xml in sorted(HYDROGEN_DIR.glob("*/drumkit.xml")):
        kit = kit_xml.parent.name
        if kit in HYDROGEN_SKIP_KITS:
            continue
        source = SOURCE_GROUPS.get(kit, f"hydrogen:{kit}")
        root = ET.parse(kit_xml).getroot()
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        for order, ins in enumerate(root.iter(ns + "instrument")):
            name = (ins.findtext(ns + "name") or "").strip()
            label = _label_of(name, LABEL_PATTERNS)
            if label is None:
                continue
            layers = []
            for layer in ins.iter(ns + "layer"):
                fn = layer.findtext(ns + "filename")
                vmax = float(layer.findtext(ns + "max") or 1.0)
                if fn:
                    layers.append((vmax, fn))
            if not layers and ins.findtext(ns + "filename"):  # old format: one sample, no layers
                layers.append((1.0, ins.findtext(ns + "filename")))
            layers.sort(key=lambda t: -t[0])  # loudest first
            picks = layers[:1] + ([layers[len(layers) // 2]] if len(layers) > 2 else [])
            for rank, (_, fn) in enumerate(picks):
                path = kit_xml.parent / fn
                if not path.is_file():
                    continue
                wave, sr = _read(path)
                yield Clip(label, source, f"{kit}_{name}_{Path(fn).stem}", wave, sr, rank * 1000 + order)


def sonic_pi_clips():
    """One-shots of the Sonic Pi sample library (label from the file-name prefix)."""
    if not SONIC_PI_DIR.is_dir():
        print("! no Sonic Pi samples found; skipping")
        return
    for order, path in enumerate(sorted(SONIC_PI_DIR.glob("*.flac"))):
        label = _label_of(path.stem, SONIC_PI_LABELS)
        if label is not None:
            wave, sr = _read(path)
            yield Clip(label, "sonic-pi", path.stem, wave, sr, order)


def belofilms_clips():
    """Acoustic guitar strums of the belofilms Hydrogen 'kit' (one layer per chord)."""
    kit = HYDROGEN_DIR / "belofilms_GuitarStrums"
    if not kit.is_dir():
        print("! no belofilms_GuitarStrums kit; skipping")
        return
    files = sorted(p for p in kit.iterdir() if p.suffix.lower() in (".flac", ".wav"))
    # file names look like Cmajor_DOWN_01.flac: keep layer 01 of each chord/direction
    firsts = [p for p in files if re.search(r"_0?1\.(flac|wav)$", p.name)] or files
    step = max(1, len(firsts) // PER_SOURCE_CAP["guitar"])
    for order, path in enumerate(firsts[::step]):
        wave, sr = _read(path)
        yield Clip("guitar", "belofilms", path.stem, wave, sr, order)


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[float, bytes]]) -> None:
    """A format-0 standard MIDI file (120 bpm, 480 ticks per beat) from (time_s, message)."""
    track, last = b"", 0
    for t, msg in sorted(events, key=lambda e: e[0]):
        tick = int(round(t * 960))
        track += _vlq(tick - last) + msg
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk"
                     + struct.pack(">I", len(track)) + track)


def render_notes(sf2: Path, notes: list[tuple[int, int, int, int, float]], slot_s: float,
                 tmp: Path) -> tuple[list[np.ndarray], int]:
    """Render (channel, program, note, velocity, hold_s) one per slot with fluidsynth."""
    import soundfile as sf

    events = []
    for i, (ch, prog, note, vel, hold) in enumerate(notes):
        t = i * slot_s
        events += [(t, bytes([0xC0 | ch, prog])), (t + 0.05, bytes([0x90 | ch, note, vel])),
                   (t + 0.05 + hold, bytes([0x80 | ch, note, 0]))]
    mid, wav = tmp / f"{sf2.stem}.mid", tmp / f"{sf2.stem}.wav"
    write_midi(mid, events)
    sr = 44100
    subprocess.run(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sr),
                    "-F", str(wav), str(sf2), str(mid)], check=True, capture_output=True,
                   timeout=600)
    data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = _mono(data)
    return [mono[int(i * slot_s * sr): int((i + 1) * slot_s * sr)] for i in range(len(notes))], sr


def soundfont_clips(tmp: Path):
    """Drum notes and instrument notes rendered from soundfonts with fluidsynth."""
    if shutil.which("fluidsynth") is None:
        print("! fluidsynth missing; skipping soundfonts")
        return
    for name in GM_SOUNDFONTS + AVL_SOUNDFONTS:
        sf2 = SF2_DIR / name
        if not sf2.is_file():
            print(f"! soundfont {name} missing; skipping")
            continue
        source = SOURCE_GROUPS.get(sf2.stem, f"sf:{sf2.stem}")
        avl = name in AVL_SOUNDFONTS
        specs = []  # (label, item, rank, (ch, prog, note, vel, hold))
        for label, notes in (AVL_DRUM_NOTES if avl else GM_DRUM_NOTES).items():
            for vi, vel in enumerate(DRUM_VELOCITIES["avl" if avl else "gm"]):
                for ni, note in enumerate(notes):
                    ch = 0 if avl else 9  # AVL kits are preset 0 on a melodic channel
                    specs.append((label, f"drum{note}_v{vel}", vi * 1000 + ni, (ch, 0, note, vel, 0.5)))
        if not avl:
            for label, progs in GM_PROGRAMS.items():
                for prog, notes in progs:
                    for ni, note in enumerate(notes):
                        specs.append((label, f"prog{prog}_note{note}", ni, (0, prog, note, 100, 2.0)))
        waves, sr = render_notes(sf2, [s[3] for s in specs], 4.0, tmp)
        for (label, item, rank, spec), wave in zip(specs, waves):
            if label in GM_PROGRAMS:
                wave = wave[: int(3.05 * sr)]
            yield Clip(label, source, item, wave, sr, rank)


def grandorgue_clips(tmp: Path):
    """Pipe organ samples of the GrandOrgue demo organ (WavPack inside a zip)."""
    pkgs = sorted(GRANDORGUE_DIR.glob("*.orgue")) if GRANDORGUE_DIR.is_dir() else []
    if not pkgs:
        print("! no GrandOrgue demo organ; skipping")
        return
    with zipfile.ZipFile(pkgs[0]) as z:
        by_stop = defaultdict(list)
        for n in sorted(z.namelist()):
            stop = n.split("/")[0]
            if n.endswith(".wav") and stop != "Sounds":
                by_stop[stop].append(n)
        for stop, names in sorted(by_stop.items()):
            # two pitches per stop: a low one and a high one
            for rank, n in enumerate([names[len(names) // 4], names[(3 * len(names)) // 4]]):
                f = tmp / _slug(n)
                f.write_bytes(z.read(n))
                wave, sr = _read(f)  # WavPack: decoded through ffmpeg
                f.unlink()
                yield Clip("organ", "grandorgue-demo", f"{stop}_{Path(n).stem}", wave, sr, rank)


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def speech_clips(tmp: Path):
    """Recorded telephone prompts (Asterisk) and synthetic voices (espeak-ng, flite)."""
    import soundfile as sf

    speakers = [("en_US_f_Allison", "asterisk:Allison", 8), ("es_MX_f_Allison", "asterisk:Allison", 8),
                ("fr_CA_f_June", "asterisk:June", 16)]
    for folder, source, n in speakers:
        d = ASTERISK_DIR / folder
        if not d.is_dir():
            print(f"! Asterisk prompts {folder} missing; skipping")
            continue
        good = []
        for p in sorted(d.rglob("*.wav")):
            i = sf.info(str(p))
            if 2.0 <= i.frames / i.samplerate <= 8.0:
                good.append(p)
        for order, p in enumerate(_evenly(good, n)):
            wave, sr = _read(p)
            yield Clip("speech", source, f"{folder}_{p.stem}", wave, sr, order)
    tts = []
    if shutil.which("espeak-ng"):
        for vi, v in enumerate(ESPEAK_VOICES):
            tts += [("espeak-ng", v, si, ["espeak-ng", "-v", v, "-w", "{out}", s]) for si, s in enumerate(SENTENCES)]
    if shutil.which("flite"):
        for vi, v in enumerate(FLITE_VOICES):
            tts += [("flite", v, si, ["flite", "-voice", v, "-t", s, "-o", "{out}"]) for si, s in enumerate(SENTENCES)]
    for engine, voice, si, cmd in tts:
        if (si + (ESPEAK_VOICES + FLITE_VOICES).index(voice)) % 2:  # half the (voice, sentence) pairs
            continue
        out = tmp / f"{engine}_{voice}_{si}.wav"
        subprocess.run([c.replace("{out}", str(out)) for c in cmd], check=True, capture_output=True, timeout=120)
        wave, sr = _read(out)
        out.unlink()
        yield Clip("speech", engine, f"{voice}_s{si}", wave, sr, si)


def music_clips():
    """5 s excerpts of whole music tracks, evenly spaced between 10 % and 90 %."""
    from embedders.audio import resample

    tracks = []  # (source, name, [paths to mix], n_excerpts)
    if MOH_DIR.is_dir():
        tracks += [("asterisk-moh-opsound", p.stem, [p], 4) for p in sorted(MOH_DIR.glob("*.wav"))]
    if ASC_DIR.is_dir():
        tracks += [("asc-music", p.stem, [p], 6) for p in sorted(ASC_DIR.glob("*.mp3"))]
    if FOF_DIR.is_dir():
        for d in sorted(p for p in FOF_DIR.iterdir() if (p / "song.ogg").is_file()):
            stems = [d / "song.ogg"] + ([d / "guitar.ogg"] if (d / "guitar.ogg").is_file() else [])
            tracks.append(("fretsonfire-sectoid", d.name, stems, 5))
    if not tracks:
        print("! no music packages found; skipping music")
    for source, name, paths, n in tracks:
        parts = [_read(p) for p in paths]
        sr = parts[0][1]
        waves = [resample(w, r, sr) for w, r in parts]
        mix = np.zeros(max(len(w) for w in waves), np.float32)
        for w in waves:
            mix[: len(w)] += w
        seg = int(STORE_MAX_S * sr)
        lo, hi = int(0.1 * len(mix)), max(int(0.1 * len(mix)), int(0.9 * len(mix)) - seg)
        for j, start in enumerate(np.linspace(lo, hi, n).astype(int)):
            yield Clip("music", source, f"{name}_{j}", mix[start: start + seg], sr, j)


def _near_duplicate(a: Clip, b: Clip, threshold: float = 0.98) -> bool:
    """True when two clips are (nearly) the same waveform: correlation of their first second."""
    if a.sr != b.sr:
        return False
    n = min(len(a.wave), len(b.wave), a.sr)
    x, y = a.wave[:n].astype(np.float64), b.wave[:n].astype(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    return bool(denom > 0 and float(x @ y) / denom > threshold)


def build_dataset(cache: Path, install: bool = True) -> Path:
    """Assemble the labelled set under cache/dataset; returns the manifest path."""
    import soundfile as sf

    ds = cache / "dataset"
    manifest = ds / "manifest.csv"
    stamp = ds / "VERSION"
    if manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == str(DATASET_VERSION):
        return manifest
    ensure_packages(PACKAGES, install=install)
    t0 = time.perf_counter()
    print(f"building the labelled set in {ds} ...", flush=True)
    if ds.exists():
        shutil.rmtree(ds)
    shutil.rmtree(cache / "embeddings", ignore_errors=True)  # keyed by the old manifest
    (ds / "clips").mkdir(parents=True)
    chosen: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="rq-") as tmp_s:
        tmp = Path(tmp_s)
        gens = [hydrogen_clips(), sonic_pi_clips(), belofilms_clips(), soundfont_clips(tmp),
                grandorgue_clips(tmp), speech_clips(tmp), music_clips()]
        for gen in gens:
            try:
                for clip in gen:
                    wave = _tidy(_mono(np.asarray(clip.wave)), clip.sr)
                    if wave is not None:
                        clip.wave = wave
                        chosen[(clip.label, clip.source)].append(clip)
            except Exception as exc:  # one broken package never stops the build
                print(f"! {getattr(gen, '__name__', gen)}: {type(exc).__name__}: {exc}")
    rows, seen = [], set()
    for (label, source), clips in sorted(chosen.items()):
        kept: list[Clip] = []
        for clip in sorted(clips, key=lambda c: c.rank):
            if len(kept) >= PER_SOURCE_CAP[label]:
                break
            pcm = (np.clip(clip.wave, -1, 1) * 32767).astype(np.int16)
            digest = hashlib.sha1(pcm.tobytes()).hexdigest()
            if digest in seen or any(_near_duplicate(clip, k) for k in kept):
                continue
            seen.add(digest)
            rel = Path("clips") / label / f"{_slug(source)}__{_slug(clip.item)}.wav"
            if (ds / rel).exists():
                rel = rel.with_name(f"{rel.stem}_{digest[:6]}.wav")
            (ds / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(ds / rel), pcm, clip.sr, subtype="PCM_16")
            rows.append((rel.as_posix(), label, source))
            kept.append(clip)
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        w.writerows(rows)
    stamp.write_text(f"{DATASET_VERSION}\n")
    print(f"built {len(rows)} clips in {time.perf_counter() - t0:.0f} s", flush=True)
    return manifest


def read_manifest(manifest: Path) -> tuple[list[Path], list[str], list[str]]:
    """(absolute paths, labels, sources) of a manifest written by build_dataset."""
    paths, labels, sources = [], [], []
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            p = Path(row["path"])
            paths.append(p if p.is_absolute() else manifest.parent / p)
            labels.append(row["label"])
            sources.append(row["source"])
    return paths, labels, sources


def dataset_table(labels: list[str], sources: list[str]) -> str:
    by = defaultdict(Counter)
    for lab, src in zip(labels, sources):
        by[lab][src] += 1
    lines = [f"{'label':<10} {'clips':>5} {'srcs':>4}  sources (clips)"]
    for lab in sorted(by):
        c = by[lab]
        srcs = ", ".join(f"{s} ({n})" for s, n in sorted(c.items()))
        lines.append(f"{lab:<10} {sum(c.values()):>5} {len(c):>4}  {srcs}")
    lines.append(f"{'total':<10} {len(labels):>5} {len(set(sources)):>4}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- embedding

class TooSlow(RuntimeError):
    """A model whose estimated embedding time is over the per-model budget."""


def embed_all(model: str, paths: list[Path], manifest_hash: str, cache: Path, max_s: float,
              waves_by_rate: dict, max_model_s: float = 0.0) -> dict:
    """Clip vectors of every path for one model (cached), with timing.

    Raises TooSlow (before embedding anything) when the time measured on a 2 s probe,
    scaled to the whole set, exceeds `max_model_s` (0: no limit).
    """
    import embedders

    key = f"{_slug(model)}__{manifest_hash[:16]}__{max_s:g}s.npz"
    out = cache / "embeddings" / key
    if out.is_file():
        z = np.load(out)
        return {"vectors": z["vectors"], "embed_s": float(z["embed_s"]), "audio_s": float(z["audio_s"]),
                "cached": True}
    emb = embedders.load(model)
    sr = int(emb.sample_rate)
    if sr not in waves_by_rate:
        from embedders.audio import decode

        t = time.perf_counter()
        waves_by_rate[sr] = [decode(p, sr)[0][: int(max_s * sr)] for p in paths]
        print(f"  decoded {len(paths)} clips at {sr} Hz in {time.perf_counter() - t:.1f} s", flush=True)
    waves = waves_by_rate[sr]
    audio_s = float(sum(len(w) for w in waves) / sr)
    emb.embed_clip(np.zeros(sr // 2, np.float32))  # warm-up: lazy weight loading is not timed
    probe = (0.1 * np.random.default_rng(0).standard_normal(2 * sr)).astype(np.float32)
    for _ in range(2):  # the second run is timed: the first one still pays one-off costs
        t = time.perf_counter()
        emb.embed_clip(probe)
    estimate_s = (time.perf_counter() - t) / 2.0 * audio_s
    if max_model_s and estimate_s > max_model_s:
        raise TooSlow(f"estimated {estimate_s / 60:.0f} min for {audio_s:.0f} s of audio on this machine "
                      f"(over --max-model-minutes {max_model_s / 60:g}; 0 lifts the limit)")
    vecs = np.zeros((len(waves), emb.dim), np.float32)
    t = last = time.perf_counter()
    for i, w in enumerate(waves):
        vecs[i] = emb.embed_clip(w)
        if time.perf_counter() - last > 60:
            last = time.perf_counter()
            print(f"  {i + 1}/{len(waves)} clips, {last - t:.0f} s", flush=True)
    embed_s = time.perf_counter() - t
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=vecs, embed_s=embed_s, audio_s=audio_s)
    tmp.replace(out)
    return {"vectors": vecs, "embed_s": embed_s, "audio_s": audio_s, "cached": False}


ASPECT_SETTINGS = [{"timbre": 1}, {"spectrum": 1}, {"pitch": 1}, {"envelope": 1},
                   {"deep": 1, "timbre": 0.5}, {"deep": 1, "spectrum": 0.5}, {"deep": 1, "envelope": 0.5},
                   {"deep": 1, "pitch": 0.5}, {"deep": 1, "timbre": 0.5, "spectrum": 0.5, "envelope": 0.5}]


def aspect_vectors_all(paths: list[Path], manifest_hash: str, cache: Path, max_s: float) -> dict[str, np.ndarray]:
    """The aspect vectors (embedders.aspects) of every clip, {aspect: [n, d]}, cached like embeddings."""
    from embedders.aspects import ASPECTS, SR, aspect_vectors

    out = cache / "embeddings" / f"aspects__{manifest_hash[:16]}__{max_s:g}s.npz"
    if out.is_file():
        z = np.load(out)
        return {a: z[a] for a in ASPECTS}
    from embedders.audio import decode

    vecs = [aspect_vectors(decode(p, SR)[0][: int(max_s * SR)], SR) for p in paths]
    got = {a: np.stack([v[a] for v in vecs]) for a in ASPECTS}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out.with_suffix(".tmp.npz"), **got)
    out.with_suffix(".tmp.npz").replace(out)
    return got


def steered(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Vectors whose cosine is the weighted mean of the parts' cosines (index.aspects' combined score):
    the unit parts scaled by sqrt(weight) and concatenated."""
    cols = []
    for name, w in weights.items():
        v = np.asarray(parts[name], np.float64)
        cols.append(np.sqrt(w) * v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
    return np.concatenate(cols, axis=1)


def aspect_rows(results: list[dict], deep: dict[str, np.ndarray], aspects: dict[str, np.ndarray],
                labels, sources, k: int) -> list[dict]:
    """P@k and cross-source P@k of each aspect alone and of deep + aspect weightings, per model."""
    rows = []
    for setting in ASPECT_SETTINGS:
        models = [r["model"] for r in results] if "deep" in setting else [None]
        for model in models:
            parts = {**aspects, **({"deep": deep[model]} if model else {})}
            m = evaluate(steered(parts, setting), labels, sources, k=k)
            name = ",".join(f"{a}={w:g}" for a, w in setting.items())
            rows.append({"setting": name, "model": model or "-", "p_at_k": m["p_at_k"],
                         "p_at_k_cross_source": m["p_at_k_cross_source"], "per_label": m["per_label"]})
    return rows


def ready_models() -> list[str]:
    import embedders

    return [a.name for a in embedders.available() if a.ready]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model names (default: every ready model)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    ap.add_argument("--k", type=int, default=5, help="neighbours per query (default 5)")
    ap.add_argument("--max-seconds", type=float, default=5.0, help="embed the first N s of each clip (default 5)")
    ap.add_argument("--max-model-minutes", type=float, default=30.0,
                    help="skip a model whose estimated embedding time is longer (default 30; 0: no limit)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--no-install", action="store_true", help="never run apt-get")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the labelled set and its embeddings")
    ap.add_argument("--show-dataset", action="store_true", help="print the label x source table")
    ap.add_argument("--per-class", action="store_true", help="also print P@k per class")
    ap.add_argument("--aspects", action="store_true",
                    help="also rate the aspect vectors (timbre, spectrum, pitch, envelope) alone and steered with each model")
    ap.add_argument("--set", choices=["music", "sfx", "both"], default="music",
                    help="labelled set: music (this file's), sfx (benchmarks/sfx_set.py) or both side by side")
    ap.add_argument("--adapt", action="store_true",
                    help="also score each model's library-adapted search as the app runs it (index/adapt.py: "
                         "whitening, per part for a fusion, and pool diffusion; AUDIO_EXPLORER_DIFFUSION=0: "
                         "adapted cosine)")
    args = ap.parse_args(argv)
    if args.set == "both":
        return _both_sets(argv or sys.argv[1:], args)

    t_start = time.perf_counter()
    cache = args.cache.expanduser().resolve()
    if args.rebuild:
        shutil.rmtree(cache / ("dataset" if args.set == "music" else "sfx"), ignore_errors=True)
    if args.set == "sfx":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import sfx_set

        manifest = sfx_set.build(cache, install=not args.no_install)
    else:
        manifest = build_dataset(cache, install=not args.no_install)
    paths, labels, sources = read_manifest(manifest)
    if len(paths) < args.k + 1:
        print(f"error: only {len(paths)} clips in {manifest}", file=sys.stderr)
        return 1
    manifest_hash = hashlib.sha1(manifest.read_bytes()).hexdigest()
    n_labels, n_sources = len(set(labels)), len(set(sources))
    print(f"data set: {len(paths)} clips, {n_labels} classes, {n_sources} sources "
          f"(manifest {manifest}, hash {manifest_hash[:12]})")
    if args.show_dataset:
        print(dataset_table(labels, sources))

    import embedders

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else ready_models()
    waves_by_rate: dict = {}
    results, skipped = [], []
    deep_vectors: dict[str, np.ndarray] = {}
    adapted_vecs: dict[str, np.ndarray] = {}  # --adapt: each model's library-adapted vectors
    for model in models:
        print(f"embedding with {model} ...", flush=True)
        try:
            got = embed_all(model, paths, manifest_hash, cache, args.max_seconds, waves_by_rate,
                            args.max_model_minutes * 60)
        except (embedders.EmbedderError, TooSlow) as exc:
            print(f"! skipped {model}: {exc}")
            skipped.append({"model": model, "reason": str(exc)})
            continue
        except Exception as exc:  # a broken model is reported, the others still run
            print(f"! {model}: {type(exc).__name__}: {exc}")
            continue
        vecs = got["vectors"]
        deep_vectors[model] = vecs
        if not np.all(np.isfinite(vecs)):
            print(f"! {model}: non-finite values in vectors")
        metrics = evaluate(vecs, labels, sources, k=args.k)
        results.append({"model": model, "dim": int(vecs.shape[1]), "embed_s": got["embed_s"],
                        "audio_s": got["audio_s"], "x_realtime": got["audio_s"] / max(got["embed_s"], 1e-9),
                        "cached": got["cached"], **metrics})
        print(f"  P@{args.k} {metrics['p_at_k']:.3f}  cross-source {metrics['p_at_k_cross_source']:.3f}"
              f"  ({got['embed_s']:.1f} s{', cached' if got['cached'] else ''})", flush=True)
        if args.adapt:
            from index.adapt import model_blocks
            from projections.whitening import fit_whitening

            w = fit_whitening(vecs, blocks=model_blocks(model, vecs.shape[1]))  # per part for a fusion
            adapted_vecs[model] = w.apply(vecs)
            adapted = evaluate_search(vecs, w, labels, sources, k=args.k)  # the app's adapted search
            results.append({**results[-1], **adapted, "model": f"{model} +adapt"})
            print(f"  +adapt: P@{args.k} {adapted['p_at_k']:.3f}  cross-source "
                  f"{adapted['p_at_k_cross_source']:.3f}", flush=True)

    chance = evaluate(np.eye(len(paths), dtype=np.float32), labels, sources, k=args.k)
    k = args.k
    head = f"{'model':<26} {'dim':>5} {'clips':>5} {f'P@{k}':>6} {f'P@{k} xsrc':>9} {'embed s':>8} {'x RT':>7}"
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['model']:<26} {r['dim']:>5} {r['n']:>5} {r['p_at_k']:>6.3f} {r['p_at_k_cross_source']:>9.3f} "
              f"{r['embed_s']:>8.1f} {r['x_realtime']:>7.0f}{'  (cached)' if r['cached'] else ''}")
    print(f"{'chance':<26} {'-':>5} {len(paths):>5} {chance['chance_p_at_k']:>6.3f} "
          f"{chance['chance_p_at_k_cross_source']:>9.3f} {'-':>8} {'-':>7}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"({n_labels} classes, {n_sources} sources; xsrc over {chance['n_cross_source']} clips whose class "
          f"has another source; embed time = embed_clip only (no decoding, no model loading), wall clock "
          f"on {os.cpu_count()} CPUs, load average {load:.1f} now)")
    for sk in skipped:
        print(f"skipped {sk['model']}: {sk['reason']}")
    pick = None
    pool = adapted_vecs if args.adapt else deep_vectors
    if len(pool) >= 3:  # what the app preselects without labels (index/adapt.py quality_estimates)
        from projections.consensus import consensus_scores

        cons = consensus_scores(pool)
        best = max(cons, key=cons.get)
        name = f"{best} +adapt" if args.adapt else best
        r = next(r for r in results if r["model"] == name)
        pick = {"model": name, "consensus": cons, "p_at_k": r["p_at_k"], "p_at_k_cross_source": r["p_at_k_cross_source"]}
        top = max(results, key=lambda r: r["p_at_k"])
        print(f"unlabelled pick (kNN consensus over {len(cons)} models): {name}: P@{k} {r['p_at_k']:.3f}, "
              f"xsrc {r['p_at_k_cross_source']:.3f} (best measured: {top['model']} {top['p_at_k']:.3f})")
    a_rows = []
    if args.aspects:
        a_rows = aspect_rows([r for r in results if not r["model"].endswith(" +adapt")], deep_vectors, aspect_vectors_all(paths, manifest_hash, cache, args.max_seconds),
                             labels, sources, k)
        print()
        print(f"{'aspect weights (steered search)':<48} {'model':<24} {f'P@{k}':>6} {f'P@{k} xsrc':>9}")
        for r in a_rows:
            print(f"{r['setting']:<48} {r['model']:<24} {r['p_at_k']:>6.3f} {r['p_at_k_cross_source']:>9.3f}")
        if args.per_class:
            labs = sorted(set(labels))
            print(f"\nP@{k} per class, aspects alone (all / cross-source)")
            print(f"{'aspect':<26} " + " ".join(f"{lab[:9]:>9}" for lab in labs))
            for r in a_rows:
                if r["model"] == "-":
                    cells = [f"{r['per_label'][lab]['p_at_k']:.2f}/" + (
                        f"{r['per_label'][lab]['p_at_k_cross_source']:.2f}"
                        if r['per_label'][lab]['p_at_k_cross_source'] is not None else "-") for lab in labs]
                    print(f"{r['setting']:<26} " + " ".join(f"{c:>9}" for c in cells))
    if args.per_class and results:
        labs = sorted(set(labels))
        print()
        print(f"P@{k} per class (all / cross-source)")
        print(f"{'model':<26} " + " ".join(f"{lab[:9]:>9}" for lab in labs))
        for r in results:
            cells = []
            for lab in labs:
                pl = r["per_label"][lab]
                x = pl["p_at_k_cross_source"]
                cells.append(f"{pl['p_at_k']:.2f}/{x:.2f}" if x is not None else f"{pl['p_at_k']:.2f}/-")
            print(f"{r['model']:<26} " + " ".join(f"{c:>9}" for c in cells))
    total_s = time.perf_counter() - t_start
    print(f"\ntotal run time {total_s:.0f} s")
    if args.json:
        payload = {
            "set": args.set,
            "dataset": {"manifest": str(manifest), "manifest_sha1": manifest_hash, "version": DATASET_VERSION,
                        "n_clips": len(paths), "n_classes": n_labels, "n_sources": n_sources,
                        "class_counts": dict(sorted(Counter(labels).items())),
                        "max_seconds": args.max_seconds},
            "k": k,
            "chance": {"p_at_k": chance["chance_p_at_k"],
                       "p_at_k_cross_source": chance["chance_p_at_k_cross_source"]},
            "results": results,
            "aspects": a_rows,
            "pick": pick,
            "skipped": skipped,
            "run_time_s": total_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


def _both_sets(argv: list[str], args) -> int:
    """Run the music and the sfx set one after the other, then print them side by side."""
    rest, skip = [], False
    for a in argv:  # drop --set/--json (each run gets its own JSON)
        if skip:
            skip = False
            continue
        if a in ("--set", "--json"):
            skip = True
            continue
        if not a.startswith(("--set=", "--json=")):
            rest.append(a)
    out = {}
    with tempfile.TemporaryDirectory(prefix="rq-both-") as tmp:
        for name in ("music", "sfx"):
            print(f"\n===== set: {name}")
            j = Path(tmp) / f"{name}.json"
            if main([*rest, "--set", name, "--json", str(j)]) != 0:
                return 1
            out[name] = json.loads(j.read_text())
    k = args.k
    rows = {name: {r["model"]: r for r in out[name]["results"]} for name in out}
    models = list(dict.fromkeys([*rows["music"], *rows["sfx"]]))
    head = f"{'model':<30} {'music P@' + str(k):>9} {'xsrc':>6}   {'sfx P@' + str(k):>8} {'xsrc':>6}"
    print(f"\nboth sets (music: {out['music']['dataset']['n_clips']} clips, "
          f"sfx: {out['sfx']['dataset']['n_clips']} clips)")
    print(head)
    print("-" * len(head))

    def cell(name, m):
        r = rows[name].get(m)
        return (f"{r['p_at_k']:>9.3f} {r['p_at_k_cross_source']:>6.3f}" if r else f"{'-':>9} {'-':>6}")

    for m in models:
        print(f"{m:<30} {cell('music', m)}   {cell('sfx', m)[1:]}")
    ch = {n: out[n]["chance"] for n in out}
    print(f"{'chance':<30} {ch['music']['p_at_k']:>9.3f} {ch['music']['p_at_k_cross_source']:>6.3f}   "
          f"{ch['sfx']['p_at_k']:>8.3f} {ch['sfx']['p_at_k_cross_source']:>6.3f}")
    for name in out:
        pk = out[name].get("pick")
        if pk:
            print(f"unlabelled pick on {name}: {pk['model']} (P@{k} {pk['p_at_k']:.3f}, xsrc {pk['p_at_k_cross_source']:.3f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
