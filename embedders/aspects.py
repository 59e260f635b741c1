"""Aspect vectors: small per-clip descriptor vectors that steer search by one side of a sound.

Four aspects, independent of any deep model (librosa, 22.05 kHz, one STFT per clip):

- ``timbre``   MFCC 1..19 mean and standard deviation over the clip's sounding frames (38-d);
               gain-independent (MFCC 0, the level, is left out).
- ``spectrum`` log-mel (32 bands) mean minus its band average (the spectral shape), band
               standard deviations, and the spectral centroid / roll-off / flatness (67-d).
- ``pitch``    a pitch-class profile: chroma (12 bins, STFT-based) averaged over sounding frames
               and normalised to sum 1, its peak and entropy, and the pitch salience (15-d).
- ``envelope`` attack time, decay time, onset rate, loudness contour statistics (mean, spread,
               range, slope), crest factor, sustained fraction, temporal centroid (10-d).

Raw descriptors live on very different scales (Hz, dB, seconds), so cosine on them would mean
nothing. Each raw vector is standardised with reference means and standard deviations (fitted
once on the 610 real recordings of benchmarks/retrieval_quality.py, stored in
``aspect_reference.json`` beside this file; ``scripts/fit_aspect_reference.py`` refits it),
clipped to +-5 and L2-normalised: the cosine of two aspect vectors is then a correlation of
their standardised descriptors, 1 for the same sound.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

SR = 22050
N_FFT = 2048
HOP = 512
N_MELS = 32
N_MFCC = 20
ASPECTS = ("timbre", "spectrum", "pitch", "envelope")
DIMS = {"timbre": 2 * (N_MFCC - 1), "spectrum": 2 * N_MELS + 3, "pitch": 15, "envelope": 10}
REFERENCE_PATH = Path(__file__).with_name("aspect_reference.json")
CLIP_Z = 5.0


@lru_cache(maxsize=1)
def _filterbanks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mel 32, mel 64, chroma 12) filter banks for N_FFT at SR, float32 [bands, N_FFT // 2 + 1]."""
    import librosa

    return (librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32),
            librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64).astype(np.float32),
            librosa.filters.chroma(sr=SR, n_fft=N_FFT, tuning=0.0).astype(np.float32))


def _frames(x: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-level features of a wave at SR: power spectrogram, log-mel, MFCC, chroma, RMS."""
    import librosa

    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    mag = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP)).astype(np.float32)
    S = mag ** 2
    mel32, mel64, chroma_fb = _filterbanks()  # plain matrix products: librosa's einsum path is 10x slower here
    log_mel = librosa.power_to_db(mel32 @ S, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel64 @ S, ref=1.0, amin=1e-10, top_db=None), n_mfcc=N_MFCC)
    chroma = chroma_fb @ S
    rms = librosa.feature.rms(S=mag, frame_length=N_FFT)[0]
    centroid = librosa.feature.spectral_centroid(S=mag, sr=SR)[0]
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=SR)[0]
    flatness = librosa.feature.spectral_flatness(S=mag)[0]
    return {"S": S, "log_mel": log_mel, "mfcc": mfcc, "chroma": chroma, "rms": rms,
            "centroid": centroid, "rolloff": rolloff, "flatness": flatness}


def _sounding(rms: np.ndarray) -> np.ndarray:
    """Frames within 40 dB of the loudest (all frames when the clip is silent)."""
    if rms.max() <= 1e-8:
        return np.ones_like(rms, bool)
    keep = rms > rms.max() * 10 ** (-40 / 20)
    return keep if keep.any() else np.ones_like(rms, bool)


def _envelope(rms: np.ndarray, onset_rate: float, x: np.ndarray) -> np.ndarray:
    """attack_log_s, decay_log_s, onset_rate_hz, loud_mean_db, loud_std_db, loud_range_db,
    loud_slope_db_s, crest_db, sustained_fraction, temporal_centroid (0..1)."""
    hop_s = HOP / SR
    db = 20 * np.log10(np.maximum(rms, 1e-6))
    peak_i = int(np.argmax(rms))
    peak = rms[peak_i]
    if peak <= 1e-8:
        return np.array([np.log(hop_s), np.log(hop_s), 0.0, -120.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
    above = np.nonzero(rms[:peak_i + 1] >= 0.1 * peak)[0]
    attack = (peak_i - above[0]) * hop_s if above.size else 0.0
    after = np.nonzero(rms[peak_i:] < peak * 10 ** (-20 / 20))[0]
    decay = (after[0] if after.size else len(rms) - peak_i) * hop_s
    keep = _sounding(rms)
    sdb = db[keep]
    t = np.arange(len(rms)) * hop_s
    slope = float(np.polyfit(t[keep], sdb, 1)[0]) if keep.sum() >= 2 else 0.0
    crest = 20 * np.log10(max(float(np.abs(x).max()), 1e-8) / max(float(np.sqrt(np.mean(x ** 2))), 1e-8))
    energy = rms ** 2
    centre = float((np.arange(len(rms)) * energy).sum() / energy.sum() / max(len(rms) - 1, 1))
    return np.array([np.log(attack + hop_s), np.log(decay + hop_s), onset_rate, float(sdb.mean()),
                     float(sdb.std()), float(np.percentile(sdb, 95) - np.percentile(sdb, 5)),
                     float(np.clip(slope, -200, 200)), crest, float(keep.mean()), centre])


def raw_aspects(wave: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Unstandardised aspect descriptors {aspect: float64 [DIMS[aspect]]} of a mono wave."""
    import librosa

    from .audio import resample
    from .descriptors import pitch_salience

    x = resample(np.asarray(wave, np.float32), sr, SR).astype(np.float32)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    f = _frames(x)
    keep = _sounding(f["rms"])
    mfcc = f["mfcc"][1:, keep]
    timbre = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
    lm = f["log_mel"][:, keep]
    band_mean = lm.mean(axis=1)
    spectrum = np.concatenate([band_mean - band_mean.mean(), lm.std(axis=1),
                               [np.log(max(float(f["centroid"][keep].mean()), 1.0)),
                                np.log(max(float(f["rolloff"][keep].mean()), 1.0)),
                                float(np.log10(max(float(f["flatness"][keep].mean()), 1e-8)))]])
    chroma = f["chroma"][:, keep].mean(axis=1)
    total = chroma.sum()
    profile = chroma / total if total > 0 else np.full(12, 1 / 12)
    entropy = float(-(profile * np.log(np.maximum(profile, 1e-12))).sum() / np.log(12))
    silent = f["rms"].max() <= 1e-5
    pitch = np.concatenate([profile, [float(profile.max()), entropy,
                                      0.0 if silent else pitch_salience(x, SR)]])
    onset_env = librosa.onset.onset_strength(S=librosa.power_to_db(f["S"], ref=np.max), sr=SR, hop_length=HOP)
    onsets = [] if silent else librosa.onset.onset_detect(onset_envelope=onset_env, sr=SR, hop_length=HOP)
    envelope = _envelope(f["rms"], len(onsets) / max(len(x) / SR, 1e-3), x)
    out = {"timbre": timbre, "spectrum": spectrum, "pitch": pitch, "envelope": envelope}
    return {k: np.nan_to_num(v.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) for k, v in out.items()}


@lru_cache(maxsize=1)
def reference() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{aspect: (mean, std)} used to standardise raw descriptors (see the module docstring)."""
    data = json.loads(REFERENCE_PATH.read_text())
    ref = {}
    for name in ASPECTS:
        mean, std = np.asarray(data[name]["mean"], np.float64), np.asarray(data[name]["std"], np.float64)
        if mean.shape != (DIMS[name],) or std.shape != (DIMS[name],):
            raise ValueError(f"{REFERENCE_PATH.name}: aspect '{name}' has {mean.size} dims, expected {DIMS[name]}")
        ref[name] = (mean, np.maximum(std, 1e-6))
    return ref


def standardise(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw descriptors -> unit aspect vectors (float32), standardised by the reference."""
    ref = reference()
    out = {}
    for name in ASPECTS:
        mean, std = ref[name]
        z = np.clip((raw[name] - mean) / std, -CLIP_Z, CLIP_Z)
        n = np.linalg.norm(z)
        out[name] = (z / n if n > 0 else np.full_like(z, 1 / np.sqrt(z.size))).astype(np.float32)
    return out


def aspect_vectors(wave: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Unit aspect vectors {aspect: float32 [DIMS[aspect]]} of a mono wave (any sample rate)."""
    return standardise(raw_aspects(wave, sr))


def fit_reference(raws: list[dict[str, np.ndarray]]) -> dict:
    """The reference {aspect: {mean, std}} (JSON-ready) from raw descriptors of many clips."""
    out = {}
    for name in ASPECTS:
        m = np.stack([r[name] for r in raws])
        out[name] = {"mean": np.round(m.mean(axis=0), 6).tolist(), "std": np.round(m.std(axis=0), 6).tolist()}
    return out
