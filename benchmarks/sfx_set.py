"""Second real benchmark set: sound effects and foley from Debian's game and desktop data packages.

    python benchmarks/sfx_set.py                 # build (or reuse) the set, print its table
    python benchmarks/retrieval_quality.py --set sfx   # measure every ready model on it

Why. The first set (retrieval_quality.py) is drums, instruments, speech and music: the
domain the musicnn models were trained on. Sound designers' libraries are mostly sound
effects and foley; this set measures that domain with the same metric (leave-one-out P@5,
all and cross-source).

How it is built. The `.deb` files of SFX_PACKAGES are fetched with `apt-get download` into
`<cache>/sfx-debs/` and unpacked with `dpkg -x` into `<cache>/sfx-pkgs/` (nothing is
installed; the game binaries are never needed). Every audio file (wav/ogg/oga) outside
music folders gets a label from its package-relative path by regular expressions
(`RULES[package]`, first match wins; unmatched files are not used), a **source** (the
package: the game, so "cross-source" asks for a footstep from another game) and a
**family** (the recording family inside the package: hedgewars voice pack, megaglest
unit, tuxpaint stamp language, ...). Per (label, family) at most FAMILY_CAP clips, per
(label, source) at most SOURCE_CAP, chosen evenly over the file names. Clips are decoded
at 22050 Hz mono, trimmed of silence (-60 dB), cut to 5 s, peak-normalised and written as
16-bit wav under `<cache>/sfx/clips/`; the manifest is `<cache>/sfx/manifest.csv` (path,
label, source, family).

Duplicates. Games copy sounds from each other and from free libraries. A clip whose PCM is
byte-identical to a kept clip, or whose first second correlates > 0.95 with a kept clip of
the same label at any lag up to 50 ms (any source), is dropped; the builder prints how many
of each it dropped, within and across sources. DATASET_VERSION 2 build: 16 byte-identical
and 13 near-identical within a source (wesnoth ships many sounds twice, megaglest factions
share unit sounds), none across sources (unlike the music set, where 21 pairs were).

Class counts of the set this script builds (DATASET_VERSION 2, Debian 12 packages;
372 clips, 13 classes, 13 sources; `python benchmarks/sfx_set.py` prints the table):

  label      clips srcs  sources (clips)
  animal        48    4  btanks (1), megaglest (16), tuxpaint (16), wesnoth (15)
  bird          22    3  megaglest (13), tuxpaint (6), wesnoth (3)
  cry           56    5  btanks (5), hedgewars (16), megaglest (16), supertux (3), wesnoth (16)
  engine        18    4  btanks (6), hedgewars (4), lincity (6), tuxpaint (2)
  explosion     15    7  alienblaster (2), btanks (6), bzflag (2), hedgewars (1), lincity (1),
                         supertux (2), wesnoth (1)
  fire          18    5  btanks (2), hedgewars (3), lincity (3), supertux (4), wesnoth (6)
  gunshot       21    6  alienblaster (2), btanks (5), bzflag (2), hedgewars (6), supertux (1),
                         wesnoth (5)
  impact        24    6  btanks (1), bzflag (3), etracer (1), hedgewars (6), megaglest (7),
                         supertux (6)
  melee         22    2  megaglest (16), wesnoth (6)
  pickup         9    2  btanks (5), supertux (4)
  speech        58    5  freedesktop (6), hedgewars (16), megaglest (16), pingus (4), tuxpaint (16)
  ui            38    8  alienblaster (2), bzflag (6), freedesktop (6), frozen-bubble (5),
                         hedgewars (6), lincity (1), megaglest (6), wesnoth (6)
  water         23    6  hedgewars (6), lincity (5), megaglest (6), pingus (1), supertux (4),
                         wesnoth (1)

"cry" is a vocal pain/death sound (hit/die/ouch of humans and humanoids), "speech" words
(hedgewars voice packs, megaglest unit acknowledgements, tuxpaint stamp descriptions in 9
languages, freedesktop's spoken channel names), "ui" clicks, beeps and notification tones.
Footsteps were looked for but only two files exist (hedgewars `steps`, btanks `man-steps`).
Not used: colobot (unnamed `soundNNN` files), openttd-opensfx (a packed .cat), teeworlds and
warzone2100 (no plain audio files), xmoto (music only).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASET_VERSION = 2
DEFAULT_CACHE = Path("~/.cache/audio-explorer-bench").expanduser()
SR = 22050
FAMILY_CAP = 6
SOURCE_CAP = 16
AUDIO_EXT = (".wav", ".ogg", ".oga", ".flac")

# package -> short source name
SFX_PACKAGES = {
    "hedgewars-data": "hedgewars",
    "wesnoth-1.16-data": "wesnoth",
    "megaglest-data": "megaglest",
    "supertux-data": "supertux",
    "btanks-data": "btanks",
    "bzflag-data": "bzflag",
    "lincity-ng-data": "lincity",
    "tuxpaint-stamps-default": "tuxpaint",
    "alienblaster-data": "alienblaster",
    "frozen-bubble-data": "frozen-bubble",
    "pingus-data": "pingus",
    "extremetuxracer-data": "etracer",
    "opencity-data": "opencity",
    "sound-theme-freedesktop": "freedesktop",
}

_R = re.compile
# Human-like creatures whose hit/die sounds are vocal cries (not bone rattles or squelches).
_CRIERS = r"(human|dwarf|elf|orc|goblin|naga|mermaid|mermen|troll|ogre|swordman|archer|technician|horseman|" \
          r"stickfighter|guard|worker|spearman|warrior|princess|initiate|battlemage|summoner|archmage|shaman|" \
          r"valkyrie|axe_thrower|deadman|zombie-dead|kamikaze-scream)"
# Per package: (regex on the lower-cased package-relative path, label); first match wins.
RULES: dict[str, list[tuple[str, re.Pattern]]] = {
    "hedgewars": [
        ("cry", _R(r"voices/[^/]+/(ow|ooff|ouch|nooo)\d*\.ogg$|/hell_(ow|ooff|ugh)\.ogg$")),
        (None, _R(r"voices/[^/]+/(laugh|firepunch|hmm)")),
        ("speech", _R(r"voices/[^/]+/[a-z-]+\.ogg$")),
        ("explosion", _R(r"/explosion\.ogg$")),
        ("gunshot", _R(r"/(gun|shotgunfire|minigun|landgun|sinegun|drillgun)\.ogg$")),
        ("water", _R(r"/(splash|droplet\d|rubberduck_water|planewater|beewater)\.ogg$")),
        ("fire", _R(r"/(flamethrower|blowtorch|molotov)\.ogg$")),
        ("engine", _R(r"/(plane|rcplane|ufo|jetpackboost)\.ogg$")),
        ("impact", _R(r"/(knife_impact|airmine_impact|graveimpact|melonimpact|frozen_hog_impact|mineimpact|"
                      r"grenadeimpact|bump|hammer|baseballbat|firepunch_hit)\.ogg$")),
        ("ui", _R(r"/(beep|denied|countdown\d|shutterclick)\.ogg$")),
    ],
    "wesnoth": [
        ("ui", _R(r"/(button|checkbox|select|slider|contract|expand|chat-\d|join|leave|receive|bell)\.(wav|ogg)$")),
        ("bird", _R(r"ambient/birds\d")),
        ("animal", _R(r"/(wolf|horse|bat|tusker)-(hit|die|growl)")),
        ("cry", _R(rf"/{_CRIERS}(-old|-female|-small)?-(hit|die)")),
        ("melee", _R(r"/(sword-\d|axe|mace|club|dagger-swish|spear|hatchet|flail|staff|fist)(-miss)?\.(wav|ogg)$")),
        ("gunshot", _R(r"/(gunshot|thunderstick|dragonstick)(-miss)?\.(wav|ogg)$")),
        ("explosion", _R(r"/explosion\.(wav|ogg)$")),
        ("fire", _R(r"/(fire|flame-big|torch|melee-fire)(-miss)?\.(wav|ogg)$")),
        ("water", _R(r"/water-blast\.wav$")),
    ],
    "megaglest": [
        (None, _R(r"/music/|/menu/music|/tutorials/")),
        ("cry", _R(rf"/{_CRIERS}_die\d*\.wav$")),
        ("bird", _R(r"/(chicken|rooster|owl|eagle|hawk)(_standing|_die|_select|_ack)?\d*\.wav$")),
        ("animal", _R(r"/(sheep|cow|pig|bull|wolf)(_die|_select|_ack)?\d*\.wav$")),
        ("speech", _R(rf"/{_CRIERS}_(ack|select|sel)\d*\.wav$")),  # human units only (not cows, golems)
        ("water", _R(r"/(rain|water)\d*\.wav$")),
        ("impact", _R(r"/(arrow_hit|hit)\d*\.wav$")),
        ("melee", _R(r"/swordman_attack\d*\.wav$")),
        ("ui", _R(r"/(click_[a-d]|tech_click|magic_click|highlight|attention)\.wav$")),
    ],
    "supertux": [
        (None, _R(r"/music/")),
        ("explosion", _R(r"/(explosion|firecracker)\.(wav|ogg)$")),
        ("gunshot", _R(r"/shoot\.(wav|ogg)$")),
        ("impact", _R(r"/(brick|thud|stomp|splat|squish|kick|iceblock_bump|icecrash|darthit|mr_treehit)\.(wav|ogg)$")),
        ("cry", _R(r"/(hurt|grunts|tux_upset)\.(wav|ogg)$")),
        ("water", _R(r"/(splash|rain|waterfall)\.(wav|ogg)$")),
        ("fire", _R(r"/(fire|flame|sizzle|lava)\.(wav|ogg)$")),
        ("pickup", _R(r"/(coin|coin2|lifeup|upgrade)\.(wav|ogg)$")),
    ],
    "btanks": [
        ("explosion", _R(r"explosion\d*\.ogg$")),
        ("gunshot", _R(r"/(cannon\d|shot|machinegunner-bullet)\.ogg$")),
        ("engine", _R(r"/(engine-car|engine-start|engine-vehicle|helicopter|tank-move|train|vehicle-sound|submarine)\.ogg$")),
        ("animal", _R(r"/cow\.ogg$")),
        ("cry", _R(r"/(deadman\d|zombie-dead|kamikaze-scream)\.ogg$")),
        ("pickup", _R(r"/taking-item-\d\.ogg$")),
        ("fire", _R(r"/(fire|fire-fadeout)\.ogg$")),
        ("impact", _R(r"/boomerang-hit\.ogg$")),
    ],
    "bzflag": [
        ("explosion", _R(r"/(boom|explosion)\.wav$")),
        ("gunshot", _R(r"/(fire|laser)\.wav$")),
        ("impact", _R(r"/(ricochet|bounce|land)\.wav$")),
        ("ui", _R(r"/(flag_\w+|message_\w+)\.wav$")),
    ],
    "lincity": [
        ("water", _R(r"/water\d\.wav$")),
        ("fire", _R(r"/fire\d\.wav$")),
        ("engine", _R(r"/(railtrain|trafichigh|traficlow)\d\.wav$")),
        ("ui", _R(r"/click\.wav$")),
        ("explosion", _R(r"/rocketexplosion\d\.wav$")),
    ],
    "tuxpaint": [
        ("speech", _R(r"_desc_(fr|ru|ro|ca|bg|es|be|el|da)\.ogg$")),
        (None, _R(r"_desc")),
        ("bird", _R(r"animals/birds/.*\.ogg$")),
        ("animal", _R(r"animals/(mammals|marsupials)/.*\.ogg$")),
        ("engine", _R(r"vehicles/.*\.ogg$")),
    ],
    "alienblaster": [
        ("explosion", _R(r"/explosion(boss)?\.wav$")),
        ("gunshot", _R(r"/shot(primary|secondary)\.wav$")),
        ("ui", _R(r"/(choose|confirm)\.wav$")),
    ],
    "frozen-bubble": [
        ("ui", _R(r"/(menu_change|menu_selected|cancel|pause|chatted)\.(wav|ogg)$")),
    ],
    "pingus": [
        ("speech", _R(r"/(goodidea|letsgo|ohno|yipee)\.wav$")),
        ("water", _R(r"/splash\.wav$")),
    ],
    "etracer": [
        ("impact", _R(r"/tree_hit\.wav$")),
        ("pickup", _R(r"/pickup\d\.wav$")),
    ],
    "opencity": [
        ("engine", _R(r"/wroum\.ogg$")),
    ],
    "freedesktop": [
        ("speech", _R(r"/audio-channel-")),
        ("ui", _R(r"/(dialog-\w+|message|message-new-instant|bell|complete|device-added|device-removed|"
                  r"window-attention|window-question|audio-volume-change|service-log(in|out)|trash-empty|"
                  r"power-(un)?plug|network-connectivity-\w+)\.oga$")),
    ],
}


def family_of(source: str, rel: str) -> str:
    """The recording family of a file inside its package (voice pack, unit, language, ...)."""
    low = rel.lower()
    if source == "hedgewars":
        m = re.search(r"voices/([^/]+)/", rel)
        return f"voice:{m.group(1)}" if m else "sfx"
    if source == "megaglest":
        m = re.search(r"factions/([^/]+)/units/([^/]+)/", rel)
        if m:
            return f"{m.group(1)}/{m.group(2)}"
        m = re.search(r"/([^/]+)_[a-z]*\d*\.wav$", low)
        return f"common:{m.group(1)}" if m else "common"
    if source == "tuxpaint":
        m = re.search(r"_desc_([a-z]+)\.ogg$", low)
        if m:
            return f"lang:{m.group(1)}"
        return "stamps:" + "/".join(Path(rel).parts[-3:-1])
    if source == "wesnoth":
        m = re.search(r"/([a-z]+)(-old|-female|-small|-big)?-(hit|die|growl)", low)
        return f"unit:{m.group(1)}" if m else "sfx"
    return source


def label_of(source: str, rel: str) -> str | None:
    low = "/" + rel.lower()
    if "/music/" in low:
        return None
    for label, pat in RULES.get(source, []):
        if pat.search(low):
            return label
    return None


# ----------------------------------------------------------------------------- packages

def fetch_packages(cache: Path, install: bool = True) -> dict[str, Path]:
    """Unpacked package roots by source name (downloads and `dpkg -x` the missing ones)."""
    debs, roots = cache / "sfx-debs", cache / "sfx-pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    roots.mkdir(parents=True, exist_ok=True)
    out = {}
    for pkg, source in SFX_PACKAGES.items():
        root = roots / pkg
        if not root.is_dir():
            found = sorted(debs.glob(f"{pkg}_*.deb"))
            if not found and install and shutil.which("apt-get"):
                print(f"+ apt-get download {pkg}", flush=True)
                subprocess.run(["apt-get", "download", "-q", pkg], cwd=debs, check=False,
                               stdout=subprocess.DEVNULL)
                found = sorted(debs.glob(f"{pkg}_*.deb"))
            if not found:
                print(f"! {pkg}: not downloaded{' (--no-install)' if not install else ''}; skipped")
                continue
            tmp = roots / f".{pkg}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["dpkg", "-x", str(found[-1]), str(tmp)], check=True)
            tmp.replace(root)
        out[source] = root
    return out


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def candidates(roots: dict[str, Path]) -> dict[tuple[str, str], list[tuple[str, Path, str]]]:
    """(label, source) -> [(family, path, rel)] of every labelled audio file, sorted by path."""
    by: dict[tuple[str, str], list] = defaultdict(list)
    for source, root in roots.items():
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in AUDIO_EXT or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            label = label_of(source, rel)
            if label:
                by[(label, source)].append((family_of(source, rel), path, rel))
    return by


def _near_dup(a: np.ndarray, b: np.ndarray, threshold: float = 0.95, max_lag_s: float = 0.05) -> bool:
    """Max normalised cross-correlation of the first second (lags up to max_lag_s) > threshold."""
    n = min(len(a), len(b), SR)
    if n < SR // 20:
        return False
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    den = np.linalg.norm(x) * np.linalg.norm(y)
    if den <= 0:
        return False
    size = 1 << int(np.ceil(np.log2(2 * n)))
    cc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    lag = int(max_lag_s * SR)
    best = max(np.abs(cc[: lag + 1]).max(), np.abs(cc[-lag:]).max())
    return bool(best / den > threshold)


def build(cache: Path = DEFAULT_CACHE, install: bool = True) -> Path:
    """Assemble the SFX set under cache/sfx; returns the manifest path (reused when current)."""
    import soundfile as sf
    from retrieval_quality import _slug, _tidy

    ds = cache / "sfx"
    manifest, stamp = ds / "manifest.csv", ds / "VERSION"
    if manifest.is_file() and stamp.is_file() and stamp.read_text().strip() == str(DATASET_VERSION):
        return manifest
    roots = fetch_packages(cache, install=install)
    t0 = time.perf_counter()
    print(f"building the SFX set in {ds} ...", flush=True)
    shutil.rmtree(ds, ignore_errors=True)
    (ds / "clips").mkdir(parents=True)
    from embedders.audio import decode

    hashes: dict[str, str] = {}  # PCM sha1 -> source of the kept clip
    kept_by_label: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    dropped = Counter()
    rows = []
    for (label, source), files in sorted(candidates(roots).items()):
        by_family: dict[str, list] = defaultdict(list)
        for fam, path, rel in files:
            by_family[fam].append((path, rel))
        # round-robin over families so a (label, source) cap keeps variety
        queues = {fam: _evenly(v, 3 * FAMILY_CAP) for fam, v in sorted(by_family.items())}
        taken = Counter()
        n_src = 0
        while n_src < SOURCE_CAP and any(queues.values()):
            for fam in list(queues):
                if n_src >= SOURCE_CAP:
                    break
                if not queues[fam] or taken[fam] >= FAMILY_CAP:
                    queues[fam] = []
                    continue
                path, rel = queues[fam].pop(0)
                try:
                    wave, _ = decode(path, SR)
                except Exception as exc:  # one broken file never stops the build
                    print(f"! {source}/{rel}: {type(exc).__name__}: {exc}")
                    continue
                wave = _tidy(wave, SR)
                if wave is None:
                    continue
                pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
                digest = hashlib.sha1(pcm.tobytes()).hexdigest()
                if digest in hashes:
                    dropped["identical" if hashes[digest] == source else "identical_cross_source"] += 1
                    continue
                dup = next((s for s, w in kept_by_label[label] if _near_dup(wave, w)), None)
                if dup is not None:
                    dropped["near" if dup == source else "near_cross_source"] += 1
                    continue
                hashes[digest] = source
                kept_by_label[label].append((source, wave))
                out = Path("clips") / label / f"{_slug(source)}__{_slug(rel.replace('/', '_'))[-70:]}.wav"
                if (ds / out).exists():
                    out = out.with_name(f"{out.stem}_{digest[:6]}.wav")
                (ds / out).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(ds / out), pcm, SR, subtype="PCM_16")
                rows.append((out.as_posix(), label, source, f"{source}:{fam}"))
                taken[fam] += 1
                n_src += 1
    # a label that occurs in a single source cannot be asked cross-source: keep it anyway
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source", "family"])
        w.writerows(rows)
    stamp.write_text(f"{DATASET_VERSION}\n")
    print(f"built {len(rows)} clips in {time.perf_counter() - t0:.0f} s; dropped "
          f"{dropped['identical']} byte-identical within a source, {dropped['identical_cross_source']} "
          f"byte-identical across sources, {dropped['near']} near-identical within a source, "
          f"{dropped['near_cross_source']} near-identical across sources", flush=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--no-install", action="store_true", help="never run apt-get download")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    cache = args.cache.expanduser().resolve()
    if args.rebuild:
        shutil.rmtree(cache / "sfx", ignore_errors=True)
    from retrieval_quality import dataset_table, read_manifest

    manifest = build(cache, install=not args.no_install)
    _, labels, sources = read_manifest(manifest)
    print(dataset_table(labels, sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
