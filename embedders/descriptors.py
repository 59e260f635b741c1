"""Audio descriptors computed once at ingest (librosa), and log-mel thumbnails."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 22050
N_FFT = 2048
HOP = 512
DESCRIPTOR_FIELDS = ("duration_s", "loudness_dbfs", "peak_dbfs", "spectral_centroid_hz", "spectral_bandwidth_hz",
                     "zero_crossing_rate", "onset_rate_hz", "tempo_bpm", "pitch_salience")
MIN_TEMPO_S = 4.0  # shorter clips get no tempo estimate (None)


def _db(x: float, floor: float = -120.0) -> float:
    return float(max(20 * np.log10(max(x, 1e-12)), floor))


def pitch_salience(wave: np.ndarray, sr: int = SR, fmin: float = 50.0, fmax: float = 1000.0) -> float:
    """Median over voiced frames of the normalised autocorrelation peak in the pitch range (0..1)."""
    import librosa

    frame, hop = 2048, 1024
    if wave.size < frame:
        wave = np.pad(wave, (0, frame - wave.size))
    frames = librosa.util.frame(wave, frame_length=frame, hop_length=hop).T
    energy = (frames ** 2).sum(axis=1)
    keep = energy > max(energy.max() * 1e-3, 1e-8)
    if not np.any(keep):
        return 0.0
    frames = frames[keep]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(frame)
    spec = np.fft.rfft(frames, n=2 * frame, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :frame]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sr / fmax), min(int(sr / fmin), frame - 1)
    return float(np.clip(np.median(ac[:, lo:hi].max(axis=1)), 0.0, 1.0))


def describe(wave: np.ndarray, sr: int) -> dict[str, float | None]:
    """Duration, RMS loudness and peak (dBFS), spectral centroid/bandwidth (Hz), zero-crossing rate,
    onset rate (per s), tempo (bpm, clips >= 4 s only) and pitch salience (0..1) of a mono wave."""
    import librosa

    from .audio import resample

    duration_s = len(wave) / sr
    x = resample(np.asarray(wave, np.float32), sr, SR)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    S = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP))
    power = S ** 2
    weights = power.sum(axis=0)
    voiced = weights > weights.max() * 1e-4 if weights.max() > 0 else np.zeros_like(weights, bool)
    if np.any(voiced):
        centroid = librosa.feature.spectral_centroid(S=S, sr=SR)[0][voiced]
        bandwidth = librosa.feature.spectral_bandwidth(S=S, sr=SR)[0][voiced]
        w = weights[voiced]
        cen, bw = float(np.average(centroid, weights=w)), float(np.average(bandwidth, weights=w))
    else:
        cen = bw = 0.0
    zcr = float(librosa.feature.zero_crossing_rate(x, frame_length=N_FFT, hop_length=HOP)[0].mean())
    onset_env = librosa.onset.onset_strength(S=librosa.amplitude_to_db(S, ref=np.max), sr=SR, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=SR, hop_length=HOP) if rms > 1e-5 else []
    tempo = None
    if duration_s >= MIN_TEMPO_S and rms > 1e-5:
        t = librosa.feature.tempo(onset_envelope=onset_env, sr=SR, hop_length=HOP)
        tempo = round(float(np.atleast_1d(t)[0]), 2)
    return {
        "duration_s": round(duration_s, 4),
        "loudness_dbfs": round(_db(rms), 2),
        "peak_dbfs": round(_db(float(np.abs(x).max())), 2),
        "spectral_centroid_hz": round(cen, 1),
        "spectral_bandwidth_hz": round(bw, 1),
        "zero_crossing_rate": round(zcr, 5),
        "onset_rate_hz": round(len(onsets) / max(duration_s, 1e-3), 3),
        "tempo_bpm": tempo,
        "pitch_salience": round(pitch_salience(x) if rms > 1e-5 else 0.0, 4),
    }


def log_mel_image(wave: np.ndarray, sr: int, n_mels: int = 64, max_frames: int = 400) -> np.ndarray:
    """A log-mel spectrogram scaled to 0..255 uint8 [n_mels, T] (low frequencies at the bottom)."""
    import librosa

    from .audio import resample

    x = resample(np.asarray(wave, np.float32), sr, SR)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    hop = max(HOP, int(np.ceil(x.size / max_frames)))
    mel = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=N_FFT, hop_length=hop, n_mels=n_mels)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    img = ((db + 80.0) / 80.0 * 255).clip(0, 255).astype(np.uint8)
    return img[::-1]


def thumbnail_png(wave: np.ndarray, sr: int, size: tuple[int, int] = (160, 64)) -> bytes:
    """A small log-mel PNG (magma-like colours) of a wave, as bytes."""
    import io

    from PIL import Image

    rgb = _colormap(log_mel_image(wave, sr))
    buf = io.BytesIO()
    Image.fromarray(rgb).resize(size, Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def write_thumbnail(wave: np.ndarray, sr: int, path: str | Path, size: tuple[int, int] = (160, 64)) -> Path:
    """Write a small log-mel PNG (magma-like colours) of a wave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(thumbnail_png(wave, sr, size))
    tmp.replace(path)
    return path


def _colormap(gray: np.ndarray) -> np.ndarray:
    """uint8 [H, W] -> uint8 [H, W, 3], a dark-purple-to-yellow ramp."""
    stops = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], np.float64)
    pos = gray.astype(np.float64) / 255 * (len(stops) - 1)
    i = np.clip(pos.astype(int), 0, len(stops) - 2)
    f = (pos - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def waveform_envelope(wave: np.ndarray, columns: int = 800) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the wave in `columns` equal time slices."""
    wave = np.asarray(wave, np.float32)
    if wave.size < columns:
        wave = np.pad(wave, (0, columns - wave.size))
    edges = np.linspace(0, wave.size, columns + 1).astype(int)
    mins = np.minimum.reduceat(wave, edges[:-1])
    maxs = np.maximum.reduceat(wave, edges[:-1])
    return mins, maxs


def spectrogram_png(wave: np.ndarray, sr: int, size: tuple[int, int] = (800, 96)) -> bytes:
    """A log-mel spectrogram as PNG bytes of `size` (width, height)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_colormap(log_mel_image(wave, sr, max_frames=size[0]))).resize(size, Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()
