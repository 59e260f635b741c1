"""Family 'aisfx': aiSFX (Ma & Lerch, ISMIR 2022), embeddings trained on sound-effects libraries.

The `aisfx==0.1.2` wheel ships `aisfx/models/checkpoint.pth` (24.9 MB): the "X-Sequential-CE"
model, a 9-layer CNN (DCASE cross-task baseline: four conv blocks of 64-512 channels) trained
across nine commercial sound-effects libraries labelled with the Universal Category System
(UCS). Its embedding is the 512-d output of the conv stack (mean over frequency, max over time).
The wheel pins librosa 0.9 and numpy 1.23, so it is installed with `--no-deps`; aisfx itself is
never imported: the network is defined here with the package's parameter names and the
checkpoint is read with `torch.load(weights_only=True)` (numpy scalars allow-listed).

Front end: aisfx's librosa variant (`spectrogram_librosa.py`): 44.1 kHz, the wave peak-normalised,
96 HTK mel bands (0-22.05 kHz, slaney-normalised filters), 2048-sample windows every 1024,
`log10(10000 * power + 1)`, divided by the training maximum 9.4578. Blocks of 100 frames (2.32 s)
every 50 (`emb_hop_size` 0.5, the paper's), the last partial block dropped, a clip shorter than
one block zero-padded to one. The paper computed spectrograms with Essentia; aisfx says the
librosa variant may score a little lower.

Licence: the wheel's LICENSE file is CC BY 4.0 (its metadata says MIT). A checkpoint elsewhere
can be named with `AUDIO_EXPLORER_MODEL_PATHS="aisfx=/path/checkpoint.pth"`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times, l2_normalise
from .runtime import MODEL_PATHS_ENV, local_model_path, one_line, pick_device

FAMILY = "aisfx"
SAMPLE_RATE = 44100
N_FFT, HOP, N_MELS = 2048, 1024, 96
SPEC_MAX = 9.457798957824707  # aisfx's "original" normalisation (training maximum)
BLOCK, BLOCK_HOP = 100, 50  # spectrogram frames per embedding block, and its hop
DIM = 512
WHEEL = "aisfx==0.1.2"
DESCRIPTION = ("aiSFX (ISMIR 2022): 512-d embedding of 2.3 s blocks, trained on UCS-labelled "
               "sound-effects libraries; licence CC BY 4.0")


def specs(data_dir: Path) -> list[ModelSpec]:
    """`aisfx` (cheap: no torch import)."""
    spec = ModelSpec(name="aisfx", family=FAMILY, description=DESCRIPTION, dim=DIM,
                     build=lambda data_dir=None: None, extra={"local_path": None})
    spec.build = lambda data_dir=None, _s=spec: build_embedder(_s, data_dir)
    spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
    return [spec]


def weights_path(spec: ModelSpec, data_dir: Path | None = None) -> tuple[Path | None, str]:
    """The checkpoint of a spec and where it was found (a configured path, or the installed wheel)."""
    path, origin = local_model_path(spec.name, spec.name, FAMILY, data_dir, spec.extra)
    if path is not None:
        return (path / "checkpoint.pth" if path.is_dir() else path), origin
    try:
        found = importlib.util.find_spec("aisfx")  # locates the package without importing it
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None, ""
    return Path(list(found.submodule_search_locations)[0]) / "models" / "checkpoint.pth", "aisfx"


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """Ready when the checkpoint exists (shipped in the aisfx wheel)."""
    mk = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    path, origin = weights_path(spec, data_dir)
    if path is None:
        return mk("unavailable", f"aisfx is not installed: `pip install --no-deps {WHEEL}` "
                                 "(its wheel ships the model; its own pins are obsolete)")
    if not path.is_file():
        return mk("unavailable", f"aiSFX checkpoint not found at {path} (from {origin}): reinstall "
                                 f"aisfx or fix {MODEL_PATHS_ENV}")
    return mk("ready")


def network(width: int = 64) -> Any:
    """aisfx's EmbeddingNet('max', 3, 1, 64) with the same parameter names."""
    import torch
    import torch.nn.functional as F

    class ConvBlock(torch.nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(cout)
            self.bn2 = torch.nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            return F.max_pool2d(x, kernel_size=pool)

    class EmbeddingNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = [width, 2 * width, 4 * width, 8 * width]
            self.conv_block1 = ConvBlock(1, w[0])
            self.conv_block2 = ConvBlock(w[0], w[1])
            self.conv_block3 = ConvBlock(w[1], w[2])
            self.conv_block4 = ConvBlock(w[2], w[3])

        def forward(self, spec: torch.Tensor) -> torch.Tensor:  # [B, time, mel] -> [B, 512]
            x = spec[:, None]
            for i, pool in enumerate([(2, 2), (2, 2), (2, 2), (1, 1)]):
                x = getattr(self, f"conv_block{i + 1}")(x, pool)
            return x.mean(dim=3).max(dim=2).values

    return EmbeddingNet()


def load_checkpoint(path: Path) -> dict:
    """The embedding network's state dict from an aisfx checkpoint ((state, datasets) tuple)."""
    import torch

    safe = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype,
            type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(safe):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj[0] if isinstance(obj, (tuple, list)) else obj
    prefix = "embedding_net."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class AisfxEmbedder(Embedder):
    """aiSFX embeddings of overlapping 2.3 s log-mel blocks (each L2-normalised)."""

    family = FAMILY
    sample_rate = SAMPLE_RATE
    frame_hop_s = BLOCK_HOP * HOP / SAMPLE_RATE  # 1.161 s
    window_s = BLOCK * HOP / SAMPLE_RATE  # 2.322 s
    dim = DIM

    def __init__(self, name: str, description: str, weights: Path, device: str) -> None:
        import librosa

        self.name = name
        self.description = description
        self.device = device
        net = network()
        net.load_state_dict(load_checkpoint(weights))
        self.net = net.eval().to(device)
        self.mel_fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0,
                                          fmax=SAMPLE_RATE / 2, htk=True, norm=1.0).astype(np.float32)

    def blocks(self, wave: np.ndarray) -> np.ndarray:
        """[n, BLOCK, N_MELS] normalised log-mel blocks of a wave (aisfx's `blocking`)."""
        import librosa

        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        y = wave / (peak or 1.0)
        if y.size < N_FFT:
            y = np.pad(y, (0, N_FFT - y.size))
        power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT)) ** 2
        spec = (np.log10(self.mel_fb @ power * 10000.0 + 1) / SPEC_MAX).T.astype(np.float32)  # [T, mel]
        t = spec.shape[0]
        n = max(1, int(np.ceil((t - BLOCK) / BLOCK_HOP + 1)))
        if t > BLOCK and (t - BLOCK) % BLOCK_HOP != 0:
            n -= 1
        spec = np.vstack([spec, np.zeros((BLOCK, N_MELS), np.float32)])
        return np.stack([spec[i * BLOCK_HOP:i * BLOCK_HOP + BLOCK] for i in range(n)])

    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        import torch

        per_wave = [self.blocks(w) for w in waves]
        if not per_wave:
            return []
        x = np.concatenate(per_wave)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), 64):
                out.append(self.net(torch.from_numpy(x[i:i + 64]).to(self.device)).float().cpu().numpy())
        emb = l2_normalise(np.concatenate(out))
        frames, start = [], 0
        for b in per_wave:
            n = len(b)
            frames.append(Frames(times_s=frame_times(n, self.frame_hop_s, self.window_s),
                                 vectors=emb[start:start + n]))
            start += n
        return frames


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> AisfxEmbedder:
    """Load the aiSFX checkpoint of `spec`; EmbedderError (one line) if it cannot."""
    av = check_spec(spec, data_dir)
    if not av.ready:
        raise EmbedderError(f"model '{spec.name}' is unavailable: {av.reason}")
    path, _ = weights_path(spec, data_dir)
    try:
        return AisfxEmbedder(spec.name, spec.description, path, pick_device())
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"could not load '{spec.name}' from {path}: {one_line(exc)}") from None
