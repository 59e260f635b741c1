"""Names and ids: collections per (library, model), deterministic point ids."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid

from embedders.audio import open_regular

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


FileStamp = tuple[int, int, int, int]  # (device, inode, size in bytes, mtime in ns)


class FileChangedError(OSError):
    """A file whose size, modification time or inode changed while it was being read."""


def file_stamp(st: os.stat_result) -> FileStamp:
    """What tells one version of a file from another: (device, inode, size, mtime_ns)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def describe_change(before: FileStamp, after: FileStamp) -> str:
    """How a file changed, in a few words ("size 100 -> 250 bytes", "replaced", "modified")."""
    if before[:2] != after[:2]:
        return "replaced by another file"
    if before[2] != after[2]:
        return f"size {before[2]} -> {after[2]} bytes"
    return "modified"


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> tuple[str, FileStamp]:
    """sha1 hex digest of a regular file's bytes, and its stamp. Never blocks on a FIFO or device
    (`NotRegularFile`, an OSError) and reads no more than the size the file had when opened: a file
    that changes meanwhile is a `FileChangedError`."""
    h = hashlib.sha1()
    with open_regular(path) as f:
        before = file_stamp(os.fstat(f.fileno()))
        left = before[2]
        while left > 0:
            block = f.read(min(chunk, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
        after = file_stamp(os.fstat(f.fileno()))
    if after != before or left:
        raise FileChangedError(errno.EAGAIN, f"changed while indexing ({describe_change(before, after)}); "
                                             f"index it again once it is complete")
    return h.hexdigest(), after


def content_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha1 hex digest of a file's bytes."""
    return hash_file(path, chunk)[0]


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


ASPECT_PART = "aspect"


def aspect_collection_name(library: str, aspect: str) -> str:
    """The collection of one aspect's vectors (timbre, spectrum, ...) of a library, keyed by clip id.
    Aspects do not depend on the deep model, so there is one per library, not per model; no model
    collection can clash with it (a model "aspect" has "lib__L__aspect" and "lib__L__aspect__frames")."""
    if not re.match(r"^[a-z]+$", aspect) or aspect == "frames":
        raise NameError_(f"bad aspect name '{aspect}'")
    return library_prefix(library) + ASPECT_PART + "__" + aspect


def parse_collection_name(name: str) -> tuple[str, str, str] | None:
    """(library, model part, kind) of a library's collection, kind "clips", "frames", "edits" or
    "aspect" (model part "" for edits, the aspect's name for aspects); None for any other name."""
    parts = name.split("__")
    if len(parts) < 3 or parts[0] != "lib" or not LIBRARY_RE.match(parts[1]):
        return None
    rest = parts[2:]
    if rest == ["user", EDITS_SUFFIX[2:]]:
        return parts[1], "", "edits"
    if len(rest) == 2 and rest[0] == ASPECT_PART and "__" + rest[1] != FRAMES_SUFFIX:
        return parts[1], rest[1], "aspect"
    if len(rest) == 2 and "__" + rest[1] == FRAMES_SUFFIX:
        return parts[1], rest[0], "frames"
    if len(rest) == 1:
        return parts[1], rest[0], "clips"
    return None
