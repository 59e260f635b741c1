"""Where the app keeps its data: Qdrant shards, caches, converted weights, trained models."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "AUDIO_EXPLORER_DATA"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The data folder: `override`, else $AUDIO_EXPLORER_DATA, else `<project>/data`; created."""
    raw = override or os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


WEIGHTS_ENV_VAR = "AUDIO_EXPLORER_WEIGHTS"


def weights_dir(root: Path, family: str) -> Path:
    """Folder for one family's converted or downloaded weights: `<data>/weights/<family>`,
    or `$AUDIO_EXPLORER_WEIGHTS/<family>` when set (one weights folder shared by several data folders)."""
    base = os.environ.get(WEIGHTS_ENV_VAR)
    path = (Path(base).expanduser() if base else root / "weights") / family
    path.mkdir(parents=True, exist_ok=True)
    return path
