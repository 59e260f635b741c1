"""Family 'fusion': model fusion across families (normalised concatenation of registered models).

A fused model embeds the wave with each of its parts (loaded through the registry, so no family
imports another; the wave arrives at the first part's rate and is resampled for the others),
L2-normalises each part's vector and weights it: the cosine of two fused vectors is the weighted
mean of the parts' cosines (score fusion). Frames follow the first part's windows; each carries
the other parts' frames nearest in time. Tags are those of the first part that has any.

- `birdnet+musicnn-mtt`: BirdNET's 1024-d embedding (weight 1) + MusiCNN (MagnaTagATune) pool
  layer (weight 0.7): BirdNET knows non-musical sounds, MusiCNN music and timbre; the best
  pair measured on both benchmark sets (README, Models).
- `aisfx+birdnet+musicnn-mtt`: aiSFX (trained on sound-effects libraries, weight 1) + BirdNET
  (0.7) + MusiCNN MTT pool (0.5): the best measured on both sets. Tags are BirdNET's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec

FAMILY = "fusion"


@dataclass(frozen=True)
class ModelFusion:
    """One registry entry: the parts (registered model names) and their weights."""

    name: str
    parts: tuple[tuple[str, float], ...]
    description: str


FUSIONS: dict[str, ModelFusion] = {f.name: f for f in [
    ModelFusion("birdnet+musicnn-mtt", (("birdnet", 1.0), ("musicnn-mtt", 0.7)),
                "BirdNET embedding (bird and other sounds) fused with MusiCNN (MagnaTagATune) pool "
                "layer, weights 1 / 0.7; BirdNET's model licence CC BY-NC-SA 4.0 (non-commercial)"),
    ModelFusion("aisfx+birdnet+musicnn-mtt", (("aisfx", 1.0), ("birdnet", 0.7), ("musicnn-mtt", 0.5)),
                "aiSFX (sound-effects libraries) + BirdNET + MusiCNN (MagnaTagATune) pool layer, weights "
                "1 / 0.7 / 0.5; BirdNET's model licence CC BY-NC-SA 4.0 (non-commercial)"),
]}


def _part_dim(name: str, data_dir: Path) -> int | None:
    """A part's dimension from its own family's listing (never this family's: no recursion)."""
    import importlib

    from . import FAMILY_MODULES

    for mod in FAMILY_MODULES:
        if mod != FAMILY:
            for s in importlib.import_module(f"{__package__}.{mod}").specs(data_dir):
                if s.name == name:
                    return s.dim
    return None


def part_blocks(name: str, data_dir: Path | None = None) -> list[tuple[int, int, float]] | None:
    """A fused model's parts as (start, end, weight) column ranges of its vectors (None: not a
    fusion, or a part's dimension unknown); what library adaptation whitens part by part."""
    f = FUSIONS.get(name)
    if f is None:
        return None
    out, at = [], 0
    for part, wt in f.parts:
        d = _part_dim(part, Path(data_dir) if data_dir else Path("."))
        if not d:
            return None
        out.append((at, at + int(d), float(wt)))
        at += int(d)
    return out


def specs(data_dir: Path) -> list[ModelSpec]:
    """Every fused model; dims from the parts' registry entries (cheap: nothing is loaded)."""
    out = []
    for f in FUSIONS.values():
        dims = [_part_dim(p, data_dir) for p, _ in f.parts]
        spec = ModelSpec(name=f.name, family=FAMILY, description=f.description,
                         dim=None if None in dims else int(sum(dims)),
                         build=lambda data_dir=None: None, extra={"fusion": f})
        spec.build = lambda data_dir=None, _f=f: build_embedder(_f, data_dir)
        spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
        out.append(spec)
    return out


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """The weakest part's status: ready when every part is ready (why not, naming the part)."""
    from . import check

    order = {"ready": 0, "downloadable": 1, "unavailable": 2}
    worst = Availability(spec.name, FAMILY, "ready", dim=spec.dim, description=spec.description)
    for part, _ in spec.extra["fusion"].parts:
        av = check(part, data_dir)
        if order[av.status] > order[worst.status]:
            worst = Availability(spec.name, FAMILY, av.status, f"part '{part}': {av.reason}",
                                 dim=spec.dim, description=spec.description)
    return worst


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class FusedEmbedder(Embedder):
    """Weighted normalised concatenation of loaded embedders."""

    family = FAMILY

    def __init__(self, fusion: ModelFusion, parts: list[Embedder]) -> None:
        self.fusion = fusion
        self.parts = parts
        self.weights = np.asarray([w for _, w in fusion.parts], np.float64)
        self.weights = self.weights / np.sqrt((self.weights ** 2).sum())
        first = parts[0]
        self.name = fusion.name
        self.description = fusion.description
        self.sample_rate = first.sample_rate
        self.frame_hop_s = first.frame_hop_s
        self.window_s = first.window_s
        self._tagged = next((i for i, p in enumerate(parts) if p.tag_names), None)
        self.tag_names = None if self._tagged is None else parts[self._tagged].tag_names
        self.dim = int(sum(p.dim for p in parts))

    def _concat(self, vectors: list[np.ndarray]) -> np.ndarray:
        return _unit(np.concatenate([_unit(v) * w for v, w in zip(vectors, self.weights)], axis=-1)).astype(np.float32)

    def _waves(self, part: Embedder, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        from .audio import resample

        if part.sample_rate == self.sample_rate:
            return list(waves)
        return [resample(w, self.sample_rate, part.sample_rate) for w in waves]

    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        if len(waves) == 0:
            return []
        per_part = [p.embed_frames_batch(self._waves(p, waves)) for p in self.parts]
        out = []
        for i, first in enumerate(per_part[0]):
            blocks, tags = [first.vectors], first.tags
            for j, frames in enumerate((pp[i] for pp in per_part[1:]), start=1):
                nearest = np.abs(frames.times_s[None, :] - first.times_s[:, None]).argmin(axis=1)
                blocks.append(frames.vectors[nearest])
                if j == self._tagged:
                    tags = frames.tags[nearest]
            out.append(Frames(times_s=first.times_s, vectors=self._concat(blocks),
                              tags=tags if self._tagged is not None else None))
        return out

    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_clip_batch([wave])[0]

    def embed_clip_batch(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        if len(waves) == 0:
            return np.zeros((0, self.dim), np.float32)
        return self._concat([p.embed_clip_batch(self._waves(p, waves)) for p in self.parts])


def build_embedder(fusion: ModelFusion, data_dir: Path | None = None) -> FusedEmbedder:
    """Load every part through the registry; EmbedderError (one line) if one cannot run."""
    from . import load

    try:
        parts = [load(p, data_dir) for p, _ in fusion.parts]
    except EmbedderError as exc:
        raise EmbedderError(f"model '{fusion.name}': {exc}") from None
    return FusedEmbedder(fusion, parts)
