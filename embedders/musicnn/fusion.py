"""Layer + pooling fusion of a musicnn checkpoint, and model fusion with the DSP timbre statistics.

One forward pass of a checkpoint gives every layer (`MusicnnEmbedder.forward_patches`). A
fusion variant takes several of them per patch, L2-normalises each block and weights it
(`LayerFusion.layers`), and pools the patches of a clip by their mean and, optionally, their
standard deviation over time (patches overlap: `hop_frames`). With `dsp_weight` the clip's
DSP statistics (embedders/dsp.py, MFCC + log-mel shape, computed over the same span) are
appended as one more block: normalised concatenation, i.e. cosine on the fused vector is a
weighted sum of the per-block cosines (score fusion).

Frames (one per patch, for maps and trajectories) carry the same blocks; their std block is
zero (the spread of a single patch) and their dsp block is computed over the patch's span.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..base import Embedder, Frames
from .models import HOP_LENGTH, LAYER_DIMS, MSD_LABELS, MTT_LABELS, PATCH_FRAMES, SAMPLE_RATE


@dataclass(frozen=True)
class LayerFusion:
    """One fused registry entry."""

    name: str
    checkpoint: str  # e.g. "MSD_musicnn"
    layers: tuple[tuple[str, float], ...]  # (layer, weight)
    description: str
    std: bool = True  # append the std over patches of every layer block
    std_weight: float = 0.5
    hop_frames: int = 94  # overlapping patches (~1.5 s hop)
    dsp_weight: float = 0.0  # > 0: append the DSP statistics block with this weight

    @property
    def block_dims(self) -> list[int]:
        from .. import timbre

        d = [LAYER_DIMS[layer] for layer, _ in self.layers]
        return d * (2 if self.std else 1) + ([timbre.DIM] if self.dsp_weight else [])

    @property
    def dim(self) -> int:
        return int(sum(self.block_dims))

    @property
    def tag_names(self) -> list[str]:
        return list(MSD_LABELS if self.checkpoint.startswith("MSD") else MTT_LABELS)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fuse(fusion: LayerFusion, layer_outs: dict[str, np.ndarray], dsp_vec: np.ndarray | None = None,
         per_patch: bool = False) -> np.ndarray:
    """The fused vector of one clip ([dim]) from its per-patch layer outputs ({layer: [n, d]}),
    or with `per_patch` one row per patch ([n, dim]; std blocks zero).

    Each block is L2-normalised and scaled so that the weights are the blocks' shares of the
    squared norm; the result is unit length."""
    blocks, weights = [], []
    means = []
    for layer, w in fusion.layers:
        v = np.asarray(layer_outs[layer], np.float64)
        means.append((_unit(v) if per_patch else _unit(_unit(v).mean(axis=0)), w))
    stds = []
    if fusion.std:
        for layer, w in fusion.layers:
            v = _unit(np.asarray(layer_outs[layer], np.float64))
            if per_patch:
                stds.append((np.zeros_like(v), w * fusion.std_weight))
            else:
                stds.append((_unit(v.std(axis=0)) if len(v) > 1 else np.zeros(v.shape[1]), w * fusion.std_weight))
    for b, w in means + stds:
        blocks.append(b)
        weights.append(w)
    if fusion.dsp_weight:
        if dsp_vec is None:
            raise ValueError(f"{fusion.name}: needs the dsp block")
        blocks.append(_unit(np.asarray(dsp_vec, np.float64)))
        weights.append(fusion.dsp_weight)
    total = float(np.sqrt(sum(w * w for w in weights)))
    out = np.concatenate([b * (w / total) for b, w in zip(blocks, weights)], axis=-1)
    return _unit(out).astype(np.float32)


FUSIONS: dict[str, LayerFusion] = {f.name: f for f in [
    LayerFusion("musicnn-msd-fusion", "MSD_musicnn", (("pool", 1.0), ("penultimate", 1.0)),
                "MusiCNN (Million Song Dataset): pool + penultimate layers, mean and std over "
                "overlapping 3 s patches"),
    LayerFusion("musicnn-mtt-fusion", "MTT_musicnn", (("pool", 1.0), ("penultimate", 1.0)),
                "MusiCNN (MagnaTagATune): pool + penultimate layers, mean and std over "
                "overlapping 3 s patches"),
    LayerFusion("musicnn-msd+dsp", "MSD_musicnn", (("pool", 1.0),),
                "MusiCNN (Million Song Dataset) pool layer fused with the dsp MFCC/log-mel statistics",
                std=False, hop_frames=PATCH_FRAMES, dsp_weight=0.7),
]}


class FusionEmbedder(Embedder):
    """A `LayerFusion` over a loaded `MusicnnEmbedder` (same weights, same front end)."""

    family = "musicnn"
    sample_rate = SAMPLE_RATE

    def __init__(self, fusion: LayerFusion, base: Embedder):
        self.fusion = fusion
        self.base = base
        self.name = fusion.name
        self.description = fusion.description
        self.dim = fusion.dim
        self.tag_names = fusion.tag_names
        self.frame_hop_s = fusion.hop_frames * HOP_LENGTH / SAMPLE_RATE
        self.window_s = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE

    def _layers(self, waves: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        from .embedder import make_patches

        per_wave = self.base._map(lambda w: make_patches(self._mel(w), self.fusion.hop_frames), list(waves))
        counts = [p.shape[0] for p in per_wave]
        out = self.base.forward_patches(torch.cat(per_wave))
        res, start = [], 0
        for n in counts:
            res.append({k: v[start:start + n] for k, v in out.items()})
            start += n
        return res

    def _mel(self, wave):
        from .embedder import log_mel

        return log_mel(wave, self.base.mel_fb)

    def _dsp(self, wave: np.ndarray, spans: list[tuple[int, int]] | None = None) -> np.ndarray:
        """DSP statistics of the whole wave ([timbre.DIM]) or of each span ([n, timbre.DIM]), at 22050 Hz."""
        from .. import timbre
        from ..audio import resample

        w22 = resample(np.asarray(wave, np.float32), SAMPLE_RATE, timbre.SAMPLE_RATE)
        if spans is None:
            return timbre.stats(*timbre.features(w22))
        ratio = timbre.SAMPLE_RATE / SAMPLE_RATE
        return np.stack([timbre.stats(*timbre.features(w22[int(a * ratio): max(int(b * ratio), int(a * ratio) + 1)]))
                         for a, b in spans])

    def _times(self, n: int) -> np.ndarray:
        centre = (PATCH_FRAMES // 2) * HOP_LENGTH / SAMPLE_RATE
        return np.arange(n, dtype=np.float64) * self.frame_hop_s + centre

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        if len(waves) == 0:
            return []
        frames = []
        for w, outs in zip(waves, self._layers(waves)):
            n = outs["taggram"].shape[0]
            dsp_rows = None
            if self.fusion.dsp_weight:
                hop = self.fusion.hop_frames * HOP_LENGTH
                win = PATCH_FRAMES * HOP_LENGTH
                dsp_rows = self._dsp(w, [(i * hop, min(len(w), i * hop + win)) for i in range(n)])
            frames.append(Frames(times_s=self._times(n),
                                 vectors=fuse(self.fusion, outs, dsp_rows, per_patch=True),
                                 tags=np.ascontiguousarray(outs["taggram"], np.float32)))
        return frames

    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_clip_batch(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        if len(waves) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([fuse(self.fusion, outs, self._dsp(w) if self.fusion.dsp_weight else None)
                         for w, outs in zip(waves, self._layers(waves))])

    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_clip_batch([wave])[0]


def build(fusion: LayerFusion, data_dir: Path, variant_by_checkpoint, **kw) -> FusionEmbedder:
    """Load the checkpoint (as its pool/pool5 variant) and wrap it."""
    from .embedder import MusicnnEmbedder

    return FusionEmbedder(fusion, MusicnnEmbedder(variant_by_checkpoint(fusion.checkpoint), Path(data_dir), **kw))
