"""Where hf weights are: a local folder, the Hugging Face cache, or the Hub; availability."""
from __future__ import annotations

import os
from pathlib import Path

from .. import runtime
from ..base import Availability, EmbedderError, ModelSpec
from .models import _DEFS, FAMILY


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, HF_HOME, XDG)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                 "pytorch_model.bin", "pytorch_model.bin.index.json")


def hf_cached(repo: str) -> bool:
    """Whether config, preprocessor config and weights of `repo` are in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache  # light: no torch

    cache = hf_cache_dir()

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache), str)

    return (cached("config.json")
            and (cached("preprocessor_config.json") or cached("processor_config.json"))
            and any(cached(f) for f in _WEIGHT_FILES))


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _WEIGHT_FILES)


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """ready (local folder or cached), downloadable (hub reachable) or unavailable (why, fix)."""
    x = spec.extra
    avail = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    path, origin = runtime.local_model_path(x["base"], x["repo"], FAMILY, data_dir, x)
    if path is not None:
        if _is_model_folder(path):
            return avail("ready")
        return avail("unavailable", f"local folder {path} (from {origin}) has no config.json and "
                                    "weights: point it at a folder written by save_pretrained "
                                    f"or `hf download {x['repo']} --local-dir <folder>`")
    if hf_cached(x["repo"]):
        return avail("ready")
    size = _DEFS[x["base"]].size_mb
    if runtime.hub_offline():
        flagged = runtime.hub_offline_flagged()
        why = "HF_HUB_OFFLINE is set" if flagged else "the Hugging Face Hub is unreachable"
        return avail("unavailable", f"weights not downloaded (~{size} MB) and {why}: run "
                                    f"`hf download {x['repo']}` with internet, or "
                                    f"set {runtime.MODEL_PATHS_ENV}='{x['base']}=/path/to/folder'")
    return avail("downloadable", f"~{size} MB downloaded from the Hugging Face Hub on first use")


def source_for(spec: ModelSpec, data_dir: Path | None) -> tuple[str, bool]:
    """(local folder or hub id to load from, whether it is local); EmbedderError for a bad folder."""
    x = spec.extra
    path, origin = runtime.local_model_path(x["base"], x["repo"], FAMILY, data_dir, x)
    if path is None:
        return x["repo"], False
    if not _is_model_folder(path):
        raise EmbedderError(f"model '{spec.name}': local folder {path} (from {origin}) has no "
                            "config.json and weights")
    return str(path), True
