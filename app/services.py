"""What both faces (UI and CLI) call: one object holding the store and the map cache."""
from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

import index
import projections
from index import classes as class_queries
from index.libraries import Library

DEMO_LIBRARY = "demo"
DEMO_MODELS = ("dsp", "vgg-msd", "musicnn-msd")
METHOD_LABELS = {"pca": "PCA", "lda": "LDA", "umap": "UMAP", "tsne": "t-SNE", "latent": "latent (3-D models)"}
MAX_3D_POINTS = 30000  # 3D overview maps above this are decimated (and say so)
DESCRIPTORS = ("loudness_dbfs", "spectral_centroid_hz", "spectral_bandwidth_hz", "zero_crossing_rate",
               "onset_rate_hz", "tempo_bpm", "pitch_salience", "duration_s")


class ServiceError(ValueError):
    """A one-line problem to show the user."""


class Services:
    """The app's handle on its data folder: Qdrant store, map cache, models."""

    def __init__(self, data_dir: str | os.PathLike | None = None, store: index.Store | None = None):
        self.data_dir: Path = index.data_dir(data_dir)
        self._store = store
        self._lock = threading.Lock()
        self.maps = projections.MapCache(self.data_dir / "maps")
        self._vectors: dict[tuple, tuple] = {}
        self._key_locks: dict[tuple, threading.Lock] = {}  # one per vector read / map fit / quality
        self._payloads: "OrderedDict[str, dict]" = OrderedDict()  # map points served at /mapdata/<token>

    @property
    def store(self) -> index.Store:
        """The Qdrant store (opened on first use)."""
        with self._lock:
            if self._store is None:
                self._store = index.open_store(self.data_dir)
            return self._store

    # ---- libraries and models -------------------------------------------------------
    def libraries(self) -> list[Library]:
        """Every library."""
        return index.list_libraries(self.store)

    def library(self, name: str) -> Library:
        """One library (LibraryError if unknown)."""
        return index.get_library(self.store, name)

    def library_table(self) -> list[dict]:
        """Name, root, models and clip counts per library."""
        rows = []
        for lib in self.libraries():
            counts = index.library_counts(self.store, lib.name)
            rows.append({"name": lib.name, "root": lib.root, "models": list(lib.models), "counts": counts,
                         "clips": max(counts.values(), default=0)})
        return rows

    def models(self) -> list[dict]:
        """Every registered model with its availability."""
        return [{"name": a.name, "family": a.family, "status": a.status, "dim": a.dim, "reason": a.reason,
                 "description": a.description} for a in index.available_models(self.data_dir)]

    def ready_models(self) -> list[str]:
        """Names of models that can run here now."""
        return [a.name for a in index.available_models(self.data_dir) if a.ready]

    def ensure_demo(self, progress=None) -> Library | None:
        """Build the synthetic demo library on first run (when there is no library at all)."""
        if self.libraries():
            return None
        from app.demo import write_demo_library

        folder = write_demo_library(self.data_dir / "demo_audio")
        ready = set(self.ready_models())
        models = [m for m in DEMO_MODELS if m in ready]
        index.index_folder(self.store, DEMO_LIBRARY, folder, models, data_dir=self.data_dir, progress=progress)
        return self.library(DEMO_LIBRARY)

    def index_folder(self, library: str, folder: str | os.PathLike, models: list[str], progress=None):
        """Index a server-side folder into a library."""
        return index.index_folder(self.store, library, folder, models, data_dir=self.data_dir, progress=progress)

    def delete_library(self, name: str) -> list[str]:
        """Delete a library and its collections."""
        return index.delete_library(self.store, name)

    # ---- search -------------------------------------------------------------------------
    def search_file(self, library: str, model: str, path: str, k: int = 10, label=None,
                    one_per_file: bool = False, ranges: dict | None = None) -> list[index.SearchHit]:
        """Query by example with an audio file (optionally within numeric payload ranges)."""
        return index.search_file(self.store, library, model, path, k=k, label=label,
                                 one_per_file=one_per_file, data_dir=self.data_dir, ranges=ranges)

    def search_id(self, library: str, model: str, point_id: str, k: int = 10, label=None) -> list[index.SearchHit]:
        """Neighbours of a clip in the library (itself first)."""
        return index.search_id(self.store, library, model, point_id, k=k, label=label)

    def search_text(self, library: str, model: str, text: str, k: int = 10, label=None) -> list[index.SearchHit]:
        """Search by description (CLAP)."""
        return index.search_text(self.store, library, model, text, k=k, label=label, data_dir=self.data_dir)

    def audio_path(self, library: str, rel_path: str) -> Path:
        """Absolute path of a clip inside its library (refuses anything outside)."""
        return self.library(library).resolve(rel_path)

    def trained_models(self) -> list[str]:
        """Names of models trained here (family 'trained')."""
        return [m["name"] for m in self.models() if m["family"] == "trained"]

    def training_log(self, name: str) -> list[dict]:
        """Per-epoch rows (epoch, train_loss, val_loss, ...) of a trained model."""
        return index.training_log(name, self.data_dir)

    # ---- classes ------------------------------------------------------------------------
    def class_stats(self, library: str, model: str, k: int = 5) -> dict:
        """Label counts, agreement@k, centroid similarity and nearest clips per class."""
        return class_queries.class_stats(self.store, library, model, k=k)

    def labels(self, library: str, model: str) -> list[str]:
        """Labels present in (library, model), by name."""
        return sorted(class_queries.label_counts(self.store, library, model))

    def files_of(self, library: str, model: str) -> list[str]:
        """Relative paths of the files in (library, model), sorted."""
        _ids, _vecs, pays = self.read_vectors(library, model)
        return sorted({p.get("path", "") for p in pays})

    def thumbnail(self, library: str, point_id: str) -> Path | None:
        """The thumbnail PNG of a point, if one was made at ingest."""
        from index.ingest import thumbnail_path

        p = thumbnail_path(self.data_dir, library, point_id)
        return p if p.is_file() else None

    def index(self, library: str, folder: str | None = None, uploads: list[str] | None = None,
              models: list[str] | None = None, progress=None, labels: str = "folder", segment: str = "auto",
              segment_s: float = 1.0, trim: bool = False):
        """Index a server-side folder, or uploaded files (copied into the data folder), into a library."""
        import shutil

        from index.ingest import IngestOptions

        opts = IngestOptions(segment=segment, segment_s=segment_s, hop_s=segment_s, trim=trim,
                             labels=None if labels in ("", "folder") else labels)
        models = list(models or ["dsp"])
        index.naming.check_library_name(library)
        if folder and uploads:
            raise ServiceError("give a folder or uploads, not both")
        if uploads:
            dest = self.data_dir / "uploads" / library
            dest.mkdir(parents=True, exist_ok=True)
            for f in uploads:
                src = Path(f)
                shutil.copy2(src, dest / src.name)
            folder = str(dest)
        if not folder:
            raise ServiceError("give a server-side folder or upload files")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ServiceError(f"not a folder on the server: {folder}")
        rep = index.index_folder(self.store, library, path, models, data_dir=self.data_dir, progress=progress,
                                 options=opts)
        self._vectors.clear()
        return rep

    # ---- maps ---------------------------------------------------------------------------
    def _key_lock(self, key: tuple) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def read_vectors(self, library: str, model: str):
        """ids, vectors [n, dim], payloads of a (library, model) collection (memoised until it changes)."""
        coll = index.collection_name(library, model)
        n = self.store.count(coll) if self.store.has_collection(coll) else 0
        key = (library, model)
        with self._key_lock(("vectors", *key)):  # a page load's events ask at once: one reads, the rest wait
            hit = self._vectors.get(key)
            if hit is not None and hit[0] == n:
                return hit[1]
            got = index.read_vectors(self.store, library, model)
            self._vectors[key] = (len(got[0]), got)
            return got

    def _projection(self, library: str, model: str, method: str, dims: int, seed: int = 0,
                    params: dict | None = None, quality: bool = True):
        """(ids, X, payloads, cache key, Projection with quality, cached?) of a map; fitted once, cached on disk."""
        ids, X, pays = self.read_vectors(library, model)
        if len(ids) == 0:
            raise ServiceError(f"library '{library}' has no clips for model '{model}'")
        labels = [p.get("label") for p in pays]
        if method == "latent":
            # a model with a 3-D output (the autoencoder) is its own map: no projection
            if X.shape[1] != 3 or dims != 3:
                raise ServiceError(f"'latent' needs a model with 3-D vectors shown in 3D "
                                   f"('{model}' gives {X.shape[1]}-d): use PCA, LDA, UMAP or t-SNE")
            q = projections.map_quality(X, X, labels, k=min(10, max(1, len(ids) - 1)))
            return ids, X, pays, None, projections.Projection(coords=X, method="latent", dims=3, quality=q), True
        key = projections.MapKey.build(library, model, method, dims, ids, params={"seed": seed, **(params or {})},
                                       labels=labels)
        hits_before = self.maps.stats.hits
        k = min(10, max(1, len(ids) - 1))
        with self._key_lock(("fit", key.digest)):  # one fit per map, however many events ask for it at once
            proj = self.maps.get_or_fit(key, X, labels, quality_k=None)
        hit = self.maps.stats.hits > hits_before
        if quality and proj.quality is None:
            # apart from the fit: a map drawn meanwhile need not wait for these numbers
            with self._key_lock(("quality", key.digest)):
                done = self.maps.get(key)
                if done is not None and done.quality is not None:  # another event computed them
                    proj.quality = done.quality
                else:
                    proj.quality = projections.map_quality(X, proj.coords, labels, k=k)
                    self.maps.set_quality(key, proj.quality)
        return ids, X, pays, key, proj, hit

    def _placer(self, key, X):
        """A fitted projector that places new points into the map `key` (the map does not move)."""
        if key is None:  # the 'latent' map: frames are placed as they are
            return _Identity()
        placer = self.maps.projector(key, X)
        if placer is None:
            raise ServiceError("this map cannot place new points; redraw it")
        return placer

    def map_document(self, library: str, model: str, method: str = "umap", dims: int = 2, seed: int = 0,
                     params: dict | None = None, quality: bool = False) -> dict:
        """Coordinates plus payload (path, label, tags, descriptors) of every clip, JSON-ready."""
        ids, X, pays, key, proj, hit = self._projection(library, model, method, dims, seed, params, quality)
        coords = proj.coords
        keep = ("path", "label", "top_tags", "start_s", "end_s", "file_id") + DESCRIPTORS
        pts = []
        for i, (pid, p) in enumerate(zip(ids, pays)):
            row = {"id": pid, "x": float(coords[i, 0]), "y": float(coords[i, 1])}
            if dims == 3:
                row["z"] = float(coords[i, 2])
            row.update({k: p[k] for k in keep if k in p})
            pts.append(row)
        doc = {"library": library, "model": model, "method": method, "dims": dims, "params": proj.params,
               "n": len(pts), "cached": hit, "points": pts}
        if quality:
            doc["quality"] = proj.quality
        return doc

    def map_quality(self, library: str, model: str, method: str, dims: int, seed: int = 0,
                    params: dict | None = None) -> dict:
        """Trustworthiness and kNN label agreement of a map (map vs full space)."""
        return self._projection(library, model, method, dims, seed, params)[4].quality or {}

    def color_options(self, library: str, model: str) -> list[str]:
        """What a map can be coloured by: label, descriptors present, and tags."""
        _ids, _X, pays = self.read_vectors(library, model)
        opts = ["label"]
        opts += [d for d in DESCRIPTORS if any(p.get(d) is not None for p in pays[:200])]
        tags: dict[str, int] = {}
        for p in pays:
            for t in p.get("top_tags", [])[:1]:
                tags[t] = tags.get(t, 0) + 1
        opts += [f"tag: {t}" for t in sorted(tags, key=lambda t: -tags[t])[:30]]
        return opts

    def _color(self, pays: list[dict], color_by: str) -> dict | None:
        if not color_by or color_by == "label":
            return None
        if color_by.startswith("tag: "):
            tag = color_by[5:]
            vals = []
            for p in pays:
                tags, scores = p.get("top_tags", []), p.get("tag_scores", [])
                vals.append(float(scores[tags.index(tag)]) if tag in tags and len(scores) > tags.index(tag) else 0.0)
            return {"mode": "continuous", "name": tag, "values": vals}
        if color_by in DESCRIPTORS:
            vals = [p.get(color_by) for p in pays]
            vals = [float(v) if v is not None else None for v in vals]
            return {"mode": "continuous", "name": color_by, "values": vals}
        raise ServiceError(f"cannot colour by '{color_by}'")

    def map_value(self, library: str, model: str, method: str, dims: int, color_by: str = "label",
                  seed: int = 0, params: dict | None = None, highlight_ids: list[str] | None = None,
                  quality: bool = True) -> tuple[dict, str]:
        """(value for the map component, one-line status). With ``quality=False`` a map fitted now
        skips its quality numbers (seconds at 50k points; `map_status` computes them after)."""
        ids, X, pays, key, proj, hit = self._projection(library, model, method, dims, seed, params, quality)
        value = self._points_value(library, model, method, dims, ids, pays, proj.coords, color_by=color_by,
                                   highlight_ids=highlight_ids)
        return value, self._status(len(ids), model, method, dims, hit, proj.quality)

    def map_status(self, library: str, model: str, method: str, dims: int, seed: int = 0,
                   params: dict | None = None) -> str:
        """The map's one-line status with its quality numbers (computed and cached if missing)."""
        ids, _X, _p, _key, proj, _hit = self._projection(library, model, method, dims, seed, params)
        return self._status(len(ids), model, method, dims, True, proj.quality)

    @staticmethod
    def _status(n: int, model: str, method: str, dims: int, hit: bool, q: dict | None) -> str:
        status = f"{n} clips, {METHOD_LABELS[method]} {dims}D of {model}" + (" (cached)" if hit else "")
        if not q:
            return status + " · computing its quality numbers…"
        if q.get("trustworthiness") is not None:
            status += f" · trustworthiness@{q['k']} {q['trustworthiness']:.3f}"
            if q.get("agreement_full") is not None:
                status += (f" · kNN label agreement {q['agreement_full']:.3f} in the full space, "
                           f"{q['agreement_map']:.3f} in the map")
        return status

    def prewarm(self) -> threading.Thread:
        """In a background thread, read the first library's vectors (its first model) and load or fit
        its default map (PCA 2D), so the first page shows it sooner; errors are ignored."""
        def work() -> None:
            try:
                projections.preload()
                libs = self.libraries()
                if libs and libs[0].models:
                    first = (libs[0].name, list(libs[0].models)[0], "pca", 2)
                    self._projection(*first, quality=False)  # the map ...
                    self._projection(*first)  # ... then its quality numbers

            except Exception:
                pass

        t = threading.Thread(target=work, name="prewarm", daemon=True)
        t.start()
        return t

    def map_payload(self, token: str) -> dict | None:
        """The points of a map value, fetched by the browser from /mapdata/<token> (no point ids:
        a click names its point by index, see `map_point_id`)."""
        with self._lock:
            got = self._payloads.get(token)
        return got[0] if got else None

    def map_point_id(self, token: str, index: int) -> str | None:
        """The point id of the index-th point of a published map, if it is still held."""
        with self._lock:
            got = self._payloads.get(str(token))
        if not got or not isinstance(index, int) or not 0 <= index < len(got[1]):
            return None
        return got[1][index]

    def _publish(self, points: dict, ids: list[str]) -> str:
        token = uuid.uuid4().hex
        with self._lock:
            self._payloads[token] = (points, ids)
            while len(self._payloads) > 12:
                self._payloads.popitem(last=False)
        return token

    def _points_value(self, library, model, method, dims, ids, pays, coords, color_by: str = "label",
                      highlight_ids: list[str] | None = None, own_ids: list[str] | None = None) -> dict:
        n = len(ids)
        idx = np.arange(n)
        note = ""
        if dims == 3 and n > MAX_3D_POINTS:
            idx = np.sort(np.random.default_rng(0).choice(n, MAX_3D_POINTS, replace=False))
            note = f"showing {MAX_3D_POINTS:,} of {n:,} points (decimated for 3D; 2D shows all)"
        c = np.round(coords[idx].astype(np.float64), 5)
        shown = [ids[i] for i in idx]
        pts = {"x": c[:, 0].tolist(), "y": c[:, 1].tolist(),
               "path": [pays[i].get("path", "") for i in idx], "label": [pays[i].get("label") for i in idx],
               "start_s": [pays[i].get("start_s", 0.0) if pays[i].get("segment") is not None else 0.0 for i in idx]}
        if any(pays[i].get("top_tags") for i in idx[:50]):
            pts["tags"] = [", ".join(pays[i].get("top_tags", [])[:3]) for i in idx]
        if dims == 3:
            pts["z"] = c[:, 2].tolist()
        color = self._color([pays[i] for i in idx], color_by)
        if color is not None:
            pts["color_values"] = color.pop("values")
        hl, own = set(highlight_ids or ()), set(own_ids or ())
        token = self._publish(pts, shown)
        # the points travel as JSON fetched by the browser, not through the component's value;
        # highlighted / own points go as indices into them
        return {"library": library, "model": model, "dims": dims, "points_url": f"/mapdata/{token}", "token": token,
                "highlight_idx": [j for j, pid in enumerate(shown) if pid in hl],
                "own_idx": [j for j, pid in enumerate(shown) if pid in own],
                "n": len(idx), "note": note, "color": color,
                "title": f"{library} · {model} · {METHOD_LABELS[method]} {dims}D",
                "key": f"{library}/{model}/{method}/{dims}"}

    def trajectory(self, library: str, model: str, method: str, dims: int, path: str,
                   seed: int = 0, params: dict | None = None) -> dict:
        """A file's frames placed into an existing map (the map does not move): times and coords."""
        ids, X, pays, key, proj, _ = self._projection(library, model, method, dims, seed, params, quality=False)
        own = [(i, p) for i, p in enumerate(pays) if p.get("path") == path]
        if not own:
            raise ServiceError(f"no clip '{path}' in library '{library}' for model '{model}'")
        file_id = own[0][1].get("file_id") or ids[own[0][0]]
        times, frames = index.read_frames(self.store, library, model, file_id)
        placed = self._placer(key, X).transform(frames)
        out = {"t": np.round(times, 4).tolist(), "x": np.round(placed[:, 0], 5).tolist(),
               "y": np.round(placed[:, 1], 5).tolist(), "file_id": file_id, "own_ids": [ids[i] for i, _ in own]}
        if dims == 3:
            out["z"] = np.round(placed[:, 2], 5).tolist()
        return out

    def playback_value(self, library: str, model: str, method: str, dims: int, path: str,
                       trail_s: float = 0.0, rotate: bool = False, seed: int = 0) -> tuple[dict, str]:
        """Map value in playback mode: own points green, others grey, trajectory, audio, waveform, spectrogram."""
        ids, X, pays, key, proj, _ = self._projection(library, model, method, dims, seed, None, quality=False)
        tr = self.trajectory(library, model, method, dims, path, seed)
        value = self._points_value(library, model, method, dims, ids, pays, proj.coords, own_ids=tr["own_ids"])
        value["trajectory"] = {k: tr[k] for k in ("t", "x", "y", "z") if k in tr}
        value["trail_s"] = float(trail_s)
        value["rotate"] = bool(rotate)
        value["autoplay"] = True
        from urllib.parse import quote

        value["audio_url"] = f"/audio/{quote(library)}/{quote(path)}"
        value["audio_label"] = path
        value.update(self.waveform(library, path))
        value["key"] = value["key"] + "/play"
        note = (f"{len(tr['t'])} frame{'s' if len(tr['t']) != 1 else ''} of {path} placed into the {METHOD_LABELS[method]} map with `transform` "
                f"(the map does not move)")
        return value, note

    def waveform(self, library: str, rel_path: str, columns: int = 800) -> dict:
        """Waveform envelope (min/max per column) and a log-mel spectrogram image (data URL) of a clip."""
        import base64

        ov = index.clip_overview(self.store, library, rel_path, columns)
        return {"waveform": {"min": ov["min"], "max": ov["max"]},
                "spectrogram_url": "data:image/png;base64," + base64.b64encode(ov["spectrogram_png"]).decode()}

    def taggram(self, library: str, model: str, rel_path: str) -> dict:
        """Tag scores over time for a clip (models with a taggram)."""
        return index.taggram(self.store, library, model, rel_path, data_dir=self.data_dir)

    def compare(self, library: str, models: list[str], method: str, dims: int,
                highlight_path: str | None = None) -> tuple[list[dict], list[dict]]:
        """The same library in several models (same method), the same clip highlighted in all."""
        values, rows = [], []
        for m in models:
            ids, X, pays, key, proj, _ = self._projection(library, m, method, dims)
            hl = [ids[i] for i, p in enumerate(pays) if highlight_path and p.get("path") == highlight_path]
            v = self._points_value(library, m, method, dims, ids, pays, proj.coords, highlight_ids=hl)
            v["height"] = 420
            q = proj.quality or {"trustworthiness": 0.0}
            v["title"] = f"{m}: trust {q['trustworthiness'] or 0:.2f}" + (
                f", agreement {q['agreement_full']:.2f}" if q.get("agreement_full") is not None else "")
            values.append(v)
            rows.append({"model": m, "trustworthiness": q.get("trustworthiness") or 0.0,
                         "agreement_full": q.get("agreement_full") or 0.0, "agreement_map": q.get("agreement_map") or 0.0})
        return values, rows



class _Identity:
    """Places points of a 3-D model's own space as they are."""

    def transform(self, X):
        return np.asarray(X, np.float32)
