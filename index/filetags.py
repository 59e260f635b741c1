"""The files' own metadata: genre, artist, album and title from ID3 (MP3, WAV/AIFF), Vorbis comments
(FLAC, Ogg Vorbis/Opus) and MP4 atoms (M4A), read with mutagen at index time into the payload
(`genre`, `artist`, `album`, `title`), and the `tag:<field>` label source.

A file without tags (or one mutagen cannot parse) simply has none: reading tags never fails a file.
Files are opened as `embedders.audio.open_regular` opens them (a FIFO swapped in never blocks).
"""
from __future__ import annotations

from pathlib import Path

from embedders.audio import open_regular

from .libraries import LibraryError

FIELDS = ("genre", "artist", "album", "title")
MAX_LEN = 200  # characters kept of one value
INDEXES = {"genre": "keyword", "artist": "keyword", "album": "keyword"}


def read_tags(path: str | Path) -> dict[str, str]:
    """{field: value} for the FIELDS the file's tags carry (first value of each, trimmed)."""
    try:
        import mutagen
    except ImportError:  # not installed: no tags (requirements.txt pins it)
        return {}
    try:
        with open_regular(path) as f:
            meta = mutagen.File(f, easy=True)
    except Exception:  # unreadable or not a tagged format: no tags (the audio decoder reports real problems)
        return {}
    if meta is None or not getattr(meta, "tags", None):
        return {}
    out: dict[str, str] = {}
    for key in FIELDS:
        try:
            vals = meta.tags.get(key)
        except Exception:
            vals = None
        if isinstance(vals, (list, tuple)):
            vals = vals[0] if vals else None
        if vals is None:
            continue
        v = " ".join(str(vals).replace("\x00", " ").split())[:MAX_LEN]
        if v:
            out[key] = v
    return out


def tag_labeler(field: str, root: Path):
    """A labeler (see `index.labels`): label = the file's `field` tag; files without it keep the
    folder label. The file's tags go into the payload too."""
    from .labels import folder_labeler

    if field not in FIELDS:
        raise LibraryError(f"unknown file tag '{field}' for labels: use tag:{', tag:'.join(FIELDS)}")

    def label(rel: str) -> tuple[str | None, dict]:
        tags = read_tags(root / rel)
        if tags.get(field):
            return tags[field], tags
        return folder_labeler(rel)[0], tags
    return label
