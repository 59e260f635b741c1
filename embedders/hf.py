"""Family 'hf': not implemented yet (registers no models)."""
from __future__ import annotations

from pathlib import Path

from .base import ModelSpec


def specs(data_dir: Path) -> list[ModelSpec]:
    """Models of this family."""
    return []
