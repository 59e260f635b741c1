"""Where labels come from: sub-folders, file-name patterns, or a CSV/JSON sidecar."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path, PurePosixPath
from typing import Callable

from .libraries import LibraryError

# (label, extra payload fields) for a path relative to the library root
Labeler = Callable[[str], tuple[str | None, dict]]

PRESETS = {
    # ESC-50: {fold}-{freesound clip id}-{take}-{target}.wav, e.g. 1-100032-A-0.wav
    "esc50": "{fold}-{source}-{take}-{label}",
    # UrbanSound8K: {fsID}-{classID}-{occurrenceID}-{sliceID}.wav, e.g. 100032-3-0-0.wav
    "urbansound8k": "{source}-{label}-{occurrence}-{slice}",
}


def folder_labeler(rel: str) -> tuple[str | None, dict]:
    """Label = name of the parent folder; None for files at the library root."""
    parent = PurePosixPath(rel).parent
    return (None if str(parent) in ("", ".") else parent.name), {}


def pattern_labeler(pattern: str) -> Labeler:
    """Label from the file name (without extension) by a pattern such as
    '{fold}-{source}-{take}-{label}'; other named fields go into the payload.
    Names that do not match keep the folder label."""
    if "{label}" not in pattern:
        raise LibraryError(f"label pattern '{pattern}' has no {{label}} field")
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", pattern)
    rx = "".join(f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") else re.escape(p) for p in parts)
    compiled = re.compile(f"^{rx}$")

    def label(rel: str) -> tuple[str | None, dict]:
        m = compiled.match(PurePosixPath(rel).stem)
        if not m:
            return folder_labeler(rel)
        fields = m.groupdict()
        return fields.pop("label"), fields
    return label


def sidecar_labeler(path: str | Path, root: Path) -> Labeler:
    """Labels from a CSV (columns path,label[,extra...]) or JSON ({path: label} or
    [{"path":..., "label":..., ...}]) file; paths relative to the library root.
    Files not listed keep the folder label."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = root / path
    if not path.is_file():
        raise LibraryError(f"label sidecar not found: {path}")
    table: dict[str, tuple[str | None, dict]] = {}
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data = [{"path": k, "label": v} for k, v in data.items()]
            rows = data
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, ValueError) as exc:
        raise LibraryError(f"cannot read label sidecar {path.name}: {exc}") from None
    for row in rows:
        if not isinstance(row, dict) or "path" not in row or "label" not in row:
            raise LibraryError(f"label sidecar {path.name}: every row needs 'path' and 'label' columns")
        extra = {k: _number(v) for k, v in row.items() if k not in ("path", "label") and v not in (None, "")}
        table[PurePosixPath(str(row["path"])).as_posix().lstrip("./")] = (str(row["label"]) or None, extra)

    def label(rel: str) -> tuple[str | None, dict]:
        return table.get(rel) or folder_labeler(rel)
    return label


def _number(v):
    if isinstance(v, str):
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
    return v


def make_labeler(spec: str | None, root: Path) -> Labeler:
    """A labeler from a spec: None/'folder', 'esc50', 'urbansound8k', 'pattern:{a}-{label}',
    'sidecar:labels.csv' (a path; relative paths are under the library root), or 'tag:genre'
    (the files' own metadata: see `index.filetags`)."""
    if not spec or spec == "folder":
        return folder_labeler
    if spec in PRESETS:
        return pattern_labeler(PRESETS[spec])
    if spec.startswith("pattern:"):
        return pattern_labeler(spec[len("pattern:"):])
    if spec.startswith("sidecar:"):
        return sidecar_labeler(spec[len("sidecar:"):], root)
    if spec.startswith("tag:"):
        from .filetags import tag_labeler

        return tag_labeler(spec[len("tag:"):], root)
    raise LibraryError(f"unknown label source '{spec}': use folder, esc50, urbansound8k, "
                       f"pattern:<fields with {{label}}>, sidecar:<file.csv|json> or tag:<genre|artist|album|title>")
