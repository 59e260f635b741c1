"""Where the app keeps its data: Qdrant shards, caches, converted weights, trained models."""
from __future__ import annotations

import os
from pathlib import Path

from .runtime import WEIGHTS_ENV_VAR, weights_dir  # the one weights-folder policy (re-exported)

ENV_VAR = "AUDIO_EXPLORER_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"

__all__ = ["DEFAULT_DATA_DIR", "ENV_VAR", "WEIGHTS_ENV_VAR", "data_dir", "weights_dir"]


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data folder: `override`, else $AUDIO_EXPLORER_DATA, else `<project>/data`; created."""
    raw = override or os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
