"""On-disk cache of maps, so a second view of the same map is instant.

A map is keyed by (library, model, method, dims, canonical params, hash of
the ordered point ids), plus a hash of the labels for LDA, the one method
whose map depends on them. Adding or removing a clip changes the id hash and
so the key: stale maps are never served, only left behind (``clear`` removes
them).

Layout: ``root/<library>-<hash>/<digest>.npz`` holds ``coords`` [n, dims]
float32 and the small arrays a projector needs to place new points
(``state__*``); ``<digest>.json`` holds the key, parameters and quality
numbers. Both are written to a temporary file and moved into place with
``os.replace``; the JSON goes last and marks the entry complete.

Decision on fitted models: no pickles. PCA and LDA are two small arrays
(mean, axes) stored in the npz, so they place points exactly after a
restart. UMAP and t-SNE place points by searching the map's own vectors,
which are never copied to disk here (Qdrant is the only vector store): after
a restart ``projector(key, X)`` rebuilds the projector from the stored map
and the vectors the caller reads back, lazily, only when something has to be
placed. Placement is the same code in-session and after a restart, so it
gives the same coordinates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Sequence

import numpy as np

from .base import Projection, ProjectionError, Projector, check_dims, label_list
from .methods import canonical_params, make, normalize_method, projector_class
from .quality import map_quality

#: Bump when the stored format or the meaning of a key changes.
CACHE_VERSION = 1


def ids_hash(ids: Sequence[str]) -> str:
    """Hash of the ordered point ids of a map (order matters: it is the row order)."""
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a sequence of point ids, not a single string")
    h = hashlib.sha256(b"ids\0")
    count = 0
    for point_id in ids:
        raw = str(point_id).encode("utf-8")
        h.update(len(raw).to_bytes(4, "little"))
        h.update(raw)
        count += 1
    h.update(count.to_bytes(8, "little"))
    return h.hexdigest()[:40]


def labels_hash(labels: Sequence[Any] | None) -> str:
    """Hash of a label sequence (None / "" count as unlabelled)."""
    if labels is None:
        return "none"
    h = hashlib.sha256(b"labels\0")
    for lab in label_list(labels, len(labels)):
        raw = b"\x00" if lab is None else b"\x01" + lab.encode("utf-8")
        h.update(len(raw).to_bytes(4, "little"))
        h.update(raw)
    return h.hexdigest()[:40]


@dataclass(frozen=True)
class MapKey:
    """Everything a cached map depends on. Build it with :meth:`MapKey.build`."""

    library: str
    model: str  # embedder / vector name
    method: str
    dims: int
    params: dict[str, Any] = field(hash=False)  # canonical, see methods.canonical_params
    ids_hash: str
    labels_hash: str = ""  # LDA only; "" for methods that ignore labels

    @classmethod
    def build(
        cls,
        library: str,
        model: str,
        method: str,
        dims: int,
        ids: Sequence[str] | None = None,
        *,
        params: dict[str, Any] | None = None,
        labels: Sequence[Any] | None = None,
        ids_digest: str | None = None,
    ) -> "MapKey":
        """Key for a map of the points ``ids`` (or a precomputed ``ids_digest``
        from :func:`ids_hash`). ``params`` may be partial: defaults are filled in.
        ``labels`` matter for LDA only."""
        method = normalize_method(method)
        dims = check_dims(dims)
        if (ids is None) == (ids_digest is None):
            raise TypeError("give exactly one of ids or ids_digest")
        uses_labels = projector_class(method).uses_labels
        return cls(
            library=str(library),
            model=str(model),
            method=method,
            dims=dims,
            params=canonical_params(method, dims, **(params or {})),
            ids_hash=ids_digest if ids_digest is not None else ids_hash(ids),
            labels_hash=labels_hash(labels) if uses_labels else "",
        )

    def as_dict(self) -> dict[str, Any]:
        return {"version": CACHE_VERSION, **asdict(self)}

    @property
    def digest(self) -> str:
        """Stable file name for this key."""
        raw = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


@dataclass
class CacheStats:
    """Counters, e.g. for tests and the UI's status line."""

    hits: int = 0  # get() found the map
    misses: int = 0  # get() did not
    writes: int = 0  # put() stored a map
    model_loads: int = 0  # projector() rebuilt a placing projector from disk


class MapCache:
    """Maps on disk under ``root`` (the data folder's map cache).

    ``get(key)`` returns the stored :class:`Projection` or None and counts a
    hit or a miss in ``stats``; ``put(key, projection, projector)`` stores one;
    ``projector(key, X)`` gives a fitted projector that can place new points
    (the one fitted in this session if still held, else rebuilt from disk);
    ``get_or_fit`` does all three. Up to ``keep_projectors`` fitted projectors
    are held in memory (a UMAP / t-SNE one holds a reference to its vectors).
    """

    def __init__(self, root: Path | str, keep_projectors: int = 4) -> None:
        self.root = Path(root)
        self.stats = CacheStats()
        self.keep_projectors = keep_projectors
        self._live: OrderedDict[str, Projector] = OrderedDict()

    # -- paths ----------------------------------------------------------
    def library_dir(self, library: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", library).strip("._")[:48] or "library"
        return self.root / f"{slug}-{hashlib.sha1(library.encode('utf-8')).hexdigest()[:8]}"

    def paths(self, key: MapKey) -> tuple[Path, Path]:
        """(npz, json) paths of a key."""
        base = self.library_dir(key.library) / key.digest
        return base.with_suffix(".npz"), base.with_suffix(".json")

    # -- reading --------------------------------------------------------
    def _read_meta(self, key: MapKey) -> dict[str, Any] | None:
        _, meta_path = self.paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("key") != json.loads(json.dumps(key.as_dict())):
            return None  # a digest collision or an older format: treat as absent
        return meta

    def get(self, key: MapKey) -> Projection | None:
        """The cached map for ``key``, or None (counted in ``stats``)."""
        meta = self._read_meta(key)
        coords = None
        if meta is not None:
            npz_path, _ = self.paths(key)
            try:
                with np.load(npz_path, allow_pickle=False) as npz:
                    coords = np.asarray(npz["coords"], dtype=np.float32)
            except (OSError, KeyError, ValueError):
                coords = None
            if coords is not None and coords.shape != (meta["n_points"], key.dims):
                coords = None
        if coords is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return Projection(
            coords=coords, method=key.method, dims=key.dims, params=dict(key.params), quality=meta.get("quality")
        )

    def __contains__(self, key: MapKey) -> bool:
        return self._read_meta(key) is not None

    # -- writing --------------------------------------------------------
    def put(self, key: MapKey, projection: Projection, projector: Projector | None = None) -> Path:
        """Store a map (and, with ``projector``, what is needed to place new
        points into it later). Returns the JSON path."""
        if (projection.method, projection.dims, projection.params) != (key.method, key.dims, key.params):
            raise ProjectionError(
                f"projection ({projection.method} {projection.dims}D {projection.params}) does not match "
                f"its cache key ({key.method} {key.dims}D {key.params})"
            )
        coords = np.ascontiguousarray(projection.coords, dtype=np.float32)
        state = projector.get_state() if projector is not None else {}
        arrays = {"coords": coords, **{f"state__{name}": np.asarray(v) for name, v in state.items()}}
        npz_path, meta_path = self.paths(key)
        _atomic_write(npz_path, lambda f: np.savez(f, **arrays))
        meta = {
            "key": key.as_dict(),
            "n_points": int(coords.shape[0]),
            "n_features": None if projector is None else int(projector.n_features_in_),
            "placeable": projector is not None,
            "needs_training_vectors": projector_class(key.method).needs_training_vectors,
            "quality": projection.quality,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": _versions(key.method),
        }
        text = json.dumps(meta, indent=1, sort_keys=True, default=_json_default)
        _atomic_write(meta_path, lambda f: f.write(text.encode("utf-8")))
        self.stats.writes += 1
        if projector is not None:
            self._remember(key, projector)
        return meta_path

    def set_quality(self, key: MapKey, quality: dict[str, Any] | None) -> None:
        """Store quality numbers for a cached map (fitted earlier without them)."""
        meta = self._read_meta(key)
        if meta is None:
            raise ProjectionError("no cached map for this key: fit it first")
        meta["quality"] = quality
        _, meta_path = self.paths(key)
        text = json.dumps(meta, indent=1, sort_keys=True, default=_json_default)
        _atomic_write(meta_path, lambda f: f.write(text.encode("utf-8")))

    # -- placing new points ----------------------------------------------
    def projector(self, key: MapKey, X: Any = None) -> Projector | None:
        """A fitted projector for the cached map ``key`` that can ``transform``
        new points, or None when nothing placeable is stored.

        The one fitted in this session is returned while held; otherwise it is
        rebuilt from disk (counted in ``stats.model_loads``). UMAP and t-SNE
        need ``X``, the map's own vectors in the key's id order, for that.
        """
        live = self._live.get(key.digest)
        if live is not None:
            self._live.move_to_end(key.digest)
            return live
        meta = self._read_meta(key)
        if meta is None or not meta.get("placeable"):
            return None
        npz_path, _ = self.paths(key)
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                coords = np.asarray(npz["coords"])
                state = {
                    name[len("state__") :]: np.asarray(npz[name]) for name in npz.files if name.startswith("state__")
                }
        except (OSError, KeyError, ValueError):
            return None
        projector = make(key.method, key.dims, **key.params)
        projector.set_state(coords, state, meta["n_features"], X)
        self.stats.model_loads += 1
        self._remember(key, projector)
        return projector

    def get_or_fit(
        self,
        key: MapKey,
        X: Any,
        labels: Sequence[Any] | None = None,
        *,
        quality_k: int | None = 10,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Projection:
        """The cached map for ``key``, or fit it on ``X`` (rows in the key's id
        order), add quality numbers (unless ``quality_k`` is None), store and
        return it. ``progress(done, total, message)`` hears a long fit's
        progress where the method reports it (see ``Projector.progress``)."""
        if key.labels_hash and labels_hash(labels) != key.labels_hash:
            raise ProjectionError("these labels are not the ones the map key was built with: rebuild the key")
        cached = self.get(key)
        if cached is not None:
            return cached
        projector = make(key.method, key.dims, **key.params)
        projector.progress = progress
        coords = projector.fit_transform(X, labels)
        quality = None if quality_k is None else map_quality(X, coords, labels, k=quality_k)
        projection = projector.to_projection(quality=quality)
        self.put(key, projection, projector)
        return projection

    def clear(self, library: str | None = None) -> None:
        """Delete the cached maps of one library, or of all libraries."""
        target = self.root if library is None else self.library_dir(library)
        if target.exists():
            shutil.rmtree(target)
        self._live.clear()

    def _remember(self, key: MapKey, projector: Projector) -> None:
        self._live[key.digest] = projector
        self._live.move_to_end(key.digest)
        while len(self._live) > max(0, self.keep_projectors):
            self._live.popitem(last=False)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write via a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _versions(method: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {"pca": "scikit-learn", "lda": "scikit-learn", "umap": "umap-learn", "tsne": "openTSNE"}
    try:
        return {names[method]: version(names[method])}
    except (KeyError, PackageNotFoundError):
        return {}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a cache entry")
