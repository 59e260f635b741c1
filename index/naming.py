"""Names and ids: collections per (library, model), deterministic point ids."""
from __future__ import annotations

import hashlib
import os
import re
import uuid

NAMESPACE = uuid.UUID("6f1c2a7e-1d0b-5c38-9a57-3e0f7b1f4d21")
LIBRARY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
META_COLLECTION = "meta__libraries"
FRAMES_SUFFIX = "__frames"


class NameError_(ValueError):
    """A library or model name that cannot be used."""


def check_library_name(name: str) -> str:
    """The name itself if usable as a library name, else a one-line ValueError."""
    if not name or not LIBRARY_RE.match(name) or "__" in name:
        raise NameError_(
            f"bad library name '{name}': use 1-64 letters, digits, '-' or '_' (no '__'), starting with a letter or digit")
    return name


def _model_part(model: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", ".", model)
    if "__" in safe:
        raise NameError_(f"bad model name '{model}': '__' is reserved")
    return safe


def collection_name(library: str, model: str) -> str:
    """The Qdrant collection of clip vectors for (library, model)."""
    return f"lib__{check_library_name(library)}__{_model_part(model)}"


def frames_collection_name(library: str, model: str) -> str:
    """The companion collection of frame vectors (trajectories) for (library, model)."""
    return collection_name(library, model) + FRAMES_SUFFIX


def library_prefix(library: str) -> str:
    """Prefix shared by all collections of a library."""
    return f"lib__{check_library_name(library)}__"


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha1 hex digest of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def point_id(content_sha1: str, segment: str = "clip") -> str:
    """The same id for a clip (or a segment of a file) in every collection."""
    return str(uuid.uuid5(NAMESPACE, f"{content_sha1}:{segment}"))


def frame_point_id(clip_id: str, frame_index: int) -> str:
    """Id of one frame of a clip in a frames collection."""
    return str(uuid.uuid5(NAMESPACE, f"{clip_id}:frame:{frame_index}"))


def meta_point_id(library: str) -> str:
    """Id of a library's metadata point."""
    return str(uuid.uuid5(NAMESPACE, f"library:{library}"))


EDITS_SUFFIX = "__edits"


def edits_collection_name(library: str) -> str:
    """The collection of a library's user edits (tags, user labels), one point per clip id: what
    re-indexing merges from. No model part can clash with it: model parts never hold '__'."""
    return library_prefix(library) + "user" + EDITS_SUFFIX
