"""Maps: fitted once per (library, model, method, params, point set) and cached on disk; the
values the map component draws; the points published to the browser; trajectories; comparisons."""
from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

import index
import projections

from app.errors import ServiceError
from app.services.formatting import DESCRIPTORS, METHOD_LABELS, compare_title, fitted_on_note, map_status

if TYPE_CHECKING:
    from app.services import Services

MAX_3D_POINTS = 30000  # 3D overview maps above this are decimated (and say so)
# 2D level of detail: above LOD_THRESHOLD points the browser gets LOD_CAP of them (stratified over a
# grid of the map, so sparse regions keep theirs) and a density grid of the rest. Why 150k: 100k points
# open in ~3 s in headless Chromium (benchmarks/ui_map_load.py) and the points JSON grows ~linearly
# (~90 bytes a point), so past ~150k a page would no longer open within the 5 s goal.
# AUDIO_EXPLORER_MAP_LOD=N,CAP sets both (to see the level of detail on a small library)
_LOD_ENV = [int(v) for v in os.environ.get("AUDIO_EXPLORER_MAP_LOD", "").split(",") if v.strip().isdigit()]
LOD_THRESHOLD = _LOD_ENV[0] if _LOD_ENV else 150_000
# Why a cap of 50k (29,933 drawn of the 1M benchmark map, every occupied cell of the 256 x 256 grid keeps a point):
# in software WebGL the drawn points' draw and paint were the largest cost left of a 1M page once its
# points come in parallel with Gradio's load (80k drawn: 3.0-3.4 s draw to paint; 30k: 1.1-1.4 s, same
# run, benchmarks/ui_map_load.py --caps); the density image carries the rest and a click still plays
# the nearest of all points.
LOD_CAP = min(_LOD_ENV[1], LOD_THRESHOLD) if len(_LOD_ENV) > 1 else min(50_000, LOD_THRESHOLD)
LOD_GRID = 256     # cells per side of the grid the drawn subset is stratified over
DENSITY_GRID = 200  # cells per side of the density layer
# UMAP above UMAP_SAMPLE_ABOVE points is fitted on UMAP_FIT_SAMPLE of them (drawn at random, seeded) and the
# others are placed into that map with transform (projections.UMAPProjector's fit_sample); see
# benchmarks/README.md (projection_scale.py --sample-fit) for the measured times and quality.
# AUDIO_EXPLORER_UMAP_SAMPLE=ABOVE,SAMPLE sets both (to see a sampled fit on a small library).
_UMAP_ENV = [int(v) for v in os.environ.get("AUDIO_EXPLORER_UMAP_SAMPLE", "").split(",") if v.strip().isdigit()]
UMAP_SAMPLE_ABOVE = _UMAP_ENV[0] if _UMAP_ENV else 100_000
UMAP_FIT_SAMPLE = min(_UMAP_ENV[1], UMAP_SAMPLE_ABOVE) if len(_UMAP_ENV) > 1 else min(20_000, UMAP_SAMPLE_ABOVE)
# UMAP (sampled fit + transform) is refused above this many points: 1M took 11 min here (fit on 20k 61 s, the
# rest placed at ~1,600 points/s; 2 cores shared, load 9-14; projection_scale.py --sample-fit)
MAX_UMAP_POINTS = 1_000_000
MAX_UMAP_TIME = "11 min"
# t-SNE fits every point (no sampled fit here): minutes past this size on a few cores; refused, use PCA or UMAP
MAX_NONLINEAR_POINTS = 200_000
POINT_FIELDS = ("path", "label", "label_source", "tags", "cluster", "cluster_name", "top_tags", "start_s", "end_s",
                "file_id", "pred_label", "pred_conf", "genre", "artist", "album", "title") + DESCRIPTORS
FILE_TAGS = ("genre", "artist", "album")  # the files' own tags (index/filetags.py) a map can be coloured by
PREDICTED = "predicted label"  # colour: the label, else the suggestion with its confidence as opacity


@dataclass
class MapFit:
    """A fitted map of a (library, model) and what it was fitted on."""

    ids: list[str]                  # point ids, [n]
    vectors: np.ndarray             # [n, dim] float32, the full-space vectors
    payloads: list[dict]            # [n] Qdrant payloads
    key: projections.MapKey | None  # the cache key (None for a 'latent' map, which is not fitted)
    projection: projections.Projection  # coords [n, dims], quality (or None until computed)
    cached: bool                    # read from the cache rather than fitted now

    @property
    def coords(self) -> np.ndarray:
        """[n, dims] map coordinates."""
        return self.projection.coords


class TokenStore:
    """The points of the last maps drawn, fetched by the browser from /mapdata/<token>; a click
    names its point by (token, index) and the server resolves the id."""

    def __init__(self, keep: int = 12):
        self._keep = keep
        self._lock = threading.Lock()
        self._held: "OrderedDict[str, tuple[dict, list[str], tuple | None]]" = OrderedDict()
        self._bytes: "OrderedDict[str, bytes]" = OrderedDict()  # the JSON of held points, made once
        self._source: dict[str, tuple[str, str]] = {}

    def publish(self, points: dict, ids: list[str], every: tuple[np.ndarray, list[str], list[dict]] | None = None,
                token: str | None = None, source: tuple[str, str] | None = None) -> str:
        """Hold `points` (and their ids) under a new token (or `token`: the same points published
        again); with `every` = (coords [M, 2], ids, payloads) of all the map's points when only some
        are drawn, for `nearest`; `source` = the (library, model) the map shows."""
        token = token or uuid.uuid4().hex
        with self._lock:
            self._held[token] = (points, ids, every)
            self._held.move_to_end(token)
            if source is not None:
                self._source[token] = source
            while len(self._held) > self._keep:
                old, _ = self._held.popitem(last=False)
                self._bytes.pop(old, None)
                self._source.pop(old, None)
        return token

    def source(self, token: str | None) -> tuple[str, str] | None:
        """The (library, model) a held map shows (a click on a map drawn before the page's pickers
        were set names its map by token only)."""
        with self._lock:
            return self._source.get(str(token))

    def points_json(self, token: str) -> bytes | None:
        """The published points of `token` as JSON bytes (serialised once per token: 4.8 MB at the
        1M map's 80k drawn points), if still held."""
        import orjson  # a Gradio dependency: ~10x json's speed

        with self._lock:
            got, data = self._held.get(token), self._bytes.get(token)
        if got is None:
            return None
        if data is None:
            data = orjson.dumps(got[0])
            with self._lock:
                if token in self._held:
                    self._bytes[token] = data
        return data

    def points(self, token: str) -> dict | None:
        """The published points of `token` (no point ids), if still held."""
        with self._lock:
            got = self._held.get(token)
        return got[0] if got else None

    def point_id(self, token: str | None, index_: object) -> str | None:
        """The id of the index-th point of a published map, if it is still held."""
        with self._lock:
            got = self._held.get(str(token))
        if not got or not isinstance(index_, int) or isinstance(index_, bool) or not 0 <= index_ < len(got[1]):
            return None
        return got[1][index_]

    def nearest(self, token: str | None, x: object, y: object) -> dict | None:
        """The map point nearest to (x, y) among all of the map's points, drawn or not (a numpy
        scan: ~10 ms at 1M): {id, path, label, start_s, end_s}, if the map is still held."""
        with self._lock:
            got = self._held.get(str(token))
        if not got or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)):
            return None
        pts = got[0]
        if got[2] is not None:
            coords, ids, pays = got[2]
        else:
            coords, ids, pays = np.column_stack([pts["x"], pts["y"]]), got[1], None
        if len(ids) == 0 or coords.shape[1] < 2:
            return None
        i = int(np.argmin((coords[:, 0] - float(x)) ** 2 + (coords[:, 1] - float(y)) ** 2))
        if pays is None:
            return {"id": ids[i], "path": pts["path"][i], "label": pts["label"][i], "start_s": pts["start_s"][i],
                    "end_s": pts["end_s"][i] if "end_s" in pts else None}
        p = pays[i]
        seg = p.get("segment") is not None
        return {"id": ids[i], "path": p.get("path", ""), "label": p.get("label"),
                "start_s": p.get("start_s", 0.0) if seg else 0.0, "end_s": p.get("end_s") if seg else None}


class _Identity:
    """Places points of a 3-D model's own space as they are."""

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float32)


class MapService:
    """Fits, caches and serves the maps of one data folder."""

    def __init__(self, svc: "Services", cache: projections.MapCache):
        self._svc = svc
        self.cache = cache
        self.tokens = TokenStore()
        self._digests: "OrderedDict[int, tuple[list[str], str]]" = OrderedDict()  # id(ids) -> (ids, hash)
        self._lod: OrderedDict = OrderedDict()  # a big map's drawn subset and density, per map
        # the points published for a map drawn without marked points, per (map, colour, payload read):
        # the same map drawn again (the next page, another session) is re-published under the same token
        # and costs no Python work; payload edits make a new read (VectorCache.clear), hence new points
        self._published: OrderedDict = OrderedDict()

    def _ids_digest(self, ids: list[str]) -> str:
        """The map key's hash of `ids` (1.4 s at 1M ids), remembered for the same held list of ids
        (the vector read is cached: a page load's map asks again with the same list)."""
        got = self._digests.get(id(ids))
        if got is not None and got[0] is ids:
            return got[1]
        digest = projections.ids_hash(ids)
        self._digests[id(ids)] = (ids, digest)
        while len(self._digests) > 4:
            self._digests.popitem(last=False)
        return digest

    # ---- fitting --------------------------------------------------------------------------
    def fit(self, library: str, model: str, method: str, dims: int, seed: int = 0,
            params: dict | None = None, quality: bool = True, progress=None) -> MapFit:
        """The map (fitted once, then read from the cache); with ``quality`` its quality numbers
        too (computed apart from the fit, so a map drawn meanwhile need not wait for them).
        UMAP above ``UMAP_SAMPLE_ABOVE`` points is fitted on a sample, the rest placed by
        transform; ``progress(done, total, message)`` hears that placement."""
        ids, X, pays = self._svc.vectors.read(library, model)
        if len(ids) == 0:
            raise ServiceError(f"library '{library}' has no clips for model '{model}'")
        labels = self._svc.vectors.derived(library, model, "labels", lambda _i, _X, ps: [p.get("label") for p in ps])
        k = min(10, max(1, len(ids) - 1))
        if method == "latent":
            # a model with a 3-D output (the autoencoder) is its own map: no projection
            if X.shape[1] != 3 or dims != 3:
                raise ServiceError(f"'latent' needs a model with 3-D vectors shown in 3D "
                                   f"('{model}' gives {X.shape[1]}-d): use PCA, LDA, UMAP or t-SNE")
            # the raw latent coordinates (kept in the payload at indexing) rather than the unit vectors of the
            # cosine collection, which would put every trajectory on a sphere
            raw = all(isinstance(p.get("latent"), list) and len(p["latent"]) == 3 for p in pays)
            coords = np.asarray([p["latent"] for p in pays], np.float32) if raw else X
            q = projections.map_quality(X, coords, labels, k=k)
            return MapFit(ids, X, pays, None, projections.Projection(coords=coords, method="latent", dims=3, quality=q,
                                                                     params={"raw_latent": raw}), True)
        params = dict(params or {})
        if method == "umap":
            if len(ids) > MAX_UMAP_POINTS:
                raise ServiceError(f"UMAP of {len(ids):,} points would take too long here (measured: {MAX_UMAP_TIME} for "
                                   f"1,000,000 on 2 busy cores): above {MAX_UMAP_POINTS:,} points use PCA or LDA")
            if len(ids) > UMAP_SAMPLE_ABOVE and "fit_sample" not in params:
                params["fit_sample"] = UMAP_FIT_SAMPLE
        elif method == "tsne" and len(ids) > MAX_NONLINEAR_POINTS:
            raise ServiceError(f"t-SNE of {len(ids):,} points would take many minutes here (it fits every point): "
                               f"above {MAX_NONLINEAR_POINTS:,} points use UMAP (fitted on a sample above "
                               f"{UMAP_SAMPLE_ABOVE:,}), PCA or LDA")
        key = projections.MapKey.build(library, model, method, dims, params={"seed": seed, **params},
                                       labels=labels, ids_digest=self._ids_digest(ids))
        hits_before = self.cache.stats.hits
        with self._svc.locks(("fit", key.digest)):  # one fit per map, however many events ask at once
            proj = self.cache.get_or_fit(key, X, labels, quality_k=None, progress=progress)
        cached = self.cache.stats.hits > hits_before
        if quality and proj.quality is None:
            with self._svc.locks(("quality", key.digest)):
                done = self.cache.get(key)
                if done is not None and done.quality is not None:  # another event computed them
                    proj.quality = done.quality
                else:
                    proj.quality = projections.map_quality(X, proj.coords, labels, k=k)
                    self.cache.set_quality(key, proj.quality)
        return MapFit(ids, X, pays, key, proj, cached)

    def placer(self, fit: MapFit):
        """A fitted projector that places new points into the map (the map does not move)."""
        if fit.key is None:  # the 'latent' map: frames are placed as they are
            return _Identity()
        placer = self.cache.projector(fit.key, fit.vectors)
        if placer is None:
            raise ServiceError("this map cannot place new points; redraw it")
        return placer

    def prewarm(self) -> threading.Thread:
        """In a background thread, read the first library's vectors (its first model) and load or fit
        its default map (PCA 2D), so the first page shows it sooner; errors are ignored."""
        def work() -> None:
            try:
                projections.preload()
                libs = self._svc.libs.names()
                model = self._svc.libs.default_model(libs[0]) if libs else None
                if model:
                    first = (libs[0], model, "pca", 2)
                    self.default_map()  # the map a new page draws first, published ...
                    self.color_options(*first[:2])  # ... what every page asks of all the payloads ...
                    self._svc.libs.files_of(*first[:2])
                    self.fit(*first)  # ... then its quality numbers
            except Exception:
                pass

        t = threading.Thread(target=work, name="prewarm", daemon=True)
        t.start()
        return t

    # ---- what the faces get ----------------------------------------------------------------
    def document(self, library: str, model: str, method: str = "umap", dims: int = 2, seed: int = 0,
                 params: dict | None = None, quality: bool = False, progress=None) -> dict:
        """Coordinates plus payload (path, label, tags, descriptors) of every clip, JSON-ready;
        ``fitted_on``: how many clips the map was fitted on (fewer than ``n`` for a UMAP fitted
        on a sample, the rest placed by transform; ``note`` then says so)."""
        fit = self.fit(library, model, method, dims, seed, params, quality, progress=progress)
        pts = []
        for i, (pid, p) in enumerate(zip(fit.ids, fit.payloads)):
            row = {"id": pid, "x": float(fit.coords[i, 0]), "y": float(fit.coords[i, 1])}
            if dims == 3:
                row["z"] = float(fit.coords[i, 2])
            row.update({k: p[k] for k in POINT_FIELDS if k in p})
            pts.append(row)
        fitted_on = self.fitted_on(fit)
        doc = {"library": library, "model": model, "method": method, "dims": dims, "params": fit.projection.params,
               "n": len(pts), "fitted_on": fitted_on, "cached": fit.cached, "points": pts}
        if fitted_on < len(pts):
            doc["note"] = fitted_on_note(method, fitted_on, len(pts))
        if quality:
            doc["quality"] = fit.projection.quality
        return doc

    def color_options(self, library: str, model: str) -> list[str]:
        """What a map can be coloured by: label, descriptors present, and tags."""
        return list(self._svc.vectors.derived(library, model, "color_options",
                                              lambda _i, _X, pays: self._color_options(pays)))

    @staticmethod
    def _color_options(pays: list[dict]) -> list[str]:
        opts = ["label"]
        if any(p.get("pred_label") for p in pays):
            opts.append(PREDICTED)
        if any(p.get("cluster_name") for p in pays):
            opts.append("cluster")
        user_tags: dict[str, int] = {}
        for p in pays:
            for t in p.get("tags") or []:
                user_tags[t] = user_tags.get(t, 0) + 1
        opts += [f"user tag: {t}" for t in sorted(user_tags, key=lambda t: (-user_tags[t], t))[:50]]
        opts += [f"file tag: {f}" for f in FILE_TAGS if any(p.get(f) for p in pays)]
        opts += [d for d in DESCRIPTORS if any(p.get(d) is not None for p in pays[:200])]
        tags: dict[str, int] = {}
        for p in pays:
            for t in p.get("top_tags", [])[:1]:
                tags[t] = tags.get(t, 0) + 1
        opts += [f"tag: {t}" for t in sorted(tags, key=lambda t: -tags[t])[:30]]
        return opts

    @staticmethod
    def colors(pays: list[dict], color_by: str) -> dict | None:
        """{mode, name, values} to colour points by a tag's score or a descriptor (None: by label)."""
        if not color_by or color_by == "label":
            return None
        if color_by == PREDICTED:
            return {"mode": "categorical", "name": "suggested",
                    "values": [p.get("label") or p.get("pred_label") for p in pays],
                    "alpha": [1.0 if p.get("label") else (p.get("pred_conf") if p.get("pred_label") else None)
                              for p in pays]}
        if color_by.startswith("file tag: ") and color_by[len("file tag: "):] in FILE_TAGS:
            key = color_by[len("file tag: "):]
            return {"mode": "categorical", "name": key, "values": [p.get(key) for p in pays]}
        if color_by == "cluster":
            return {"mode": "categorical", "name": "cluster",
                    "values": [p.get("cluster_name") if p.get("cluster", -1) != -1 else None for p in pays]}
        if color_by.startswith("user tag: "):
            tag = color_by[len("user tag: "):]
            return {"mode": "categorical", "name": tag,
                    "values": [tag if tag in (p.get("tags") or []) else None for p in pays]}
        if color_by.startswith("tag: "):
            tag = color_by[5:]
            vals = []
            for p in pays:
                tags, scores = p.get("top_tags", []), p.get("tag_scores", [])
                vals.append(float(scores[tags.index(tag)]) if tag in tags and len(scores) > tags.index(tag) else 0.0)
            return {"mode": "continuous", "name": tag, "values": vals}
        if color_by in DESCRIPTORS:
            vals = [p.get(color_by) for p in pays]
            return {"mode": "continuous", "name": color_by, "values": [float(v) if v is not None else None for v in vals]}
        raise ServiceError(f"cannot colour by '{color_by}'")

    def value(self, library: str, model: str, method: str, dims: int, color_by: str = "label",
              seed: int = 0, params: dict | None = None, highlight_ids: list[str] | None = None,
              quality: bool = True, selected_ids: list[str] | None = None, progress=None) -> tuple[dict, str]:
        """(value for the map component, one-line status). With ``quality=False`` a map fitted now
        skips its quality numbers (seconds at 50k points; `status` computes them after)."""
        fit = self.fit(library, model, method, dims, seed, params, quality, progress=progress)
        value = self.points_value(library, model, method, dims, fit, color_by=color_by, highlight_ids=highlight_ids,
                                  selected_ids=selected_ids)
        return value, map_status(len(fit.ids), model, method, dims, fit.cached, fit.projection.quality,
                                 self.fitted_on(fit))

    def status(self, library: str, model: str, method: str, dims: int, seed: int = 0,
               params: dict | None = None) -> str:
        """The map's one-line status with its quality numbers (computed and cached if missing)."""
        fit = self.fit(library, model, method, dims, seed, params)
        return map_status(len(fit.ids), model, method, dims, True, fit.projection.quality, self.fitted_on(fit))

    @staticmethod
    def fitted_on(fit: MapFit) -> int:
        """How many of the map's points it was fitted on (all but for UMAP fitted on a sample)."""
        sample = fit.projection.params.get("fit_sample")
        return len(fit.ids) if sample is None else min(int(sample), len(fit.ids))

    def points_value(self, library: str, model: str, method: str, dims: int, fit: MapFit,
                     color_by: str = "label", highlight_ids: list[str] | None = None,
                     own_ids: list[str] | None = None, selected_ids: list[str] | None = None) -> dict:
        """The map component's value: the points are published (fetched by the browser from
        `points_url`, not sent through Gradio), highlighted / own points go as indices into them."""
        ids, pays = fit.ids, fit.payloads
        n = len(ids)
        marked_any = bool(highlight_ids or own_ids or selected_ids)
        memo = None
        if fit.key is not None and not (marked_any and dims == 2 and n > LOD_THRESHOLD):
            memo = (fit.key.digest, dims, color_by, id(pays), n, LOD_THRESHOLD, LOD_CAP)
            got = self._published.get(memo)
            if got is not None and got[0] is pays and self.tokens.points(got[1]) is not None:
                self._published.move_to_end(memo)
                _, token, pts, shown, extra = got
                self.tokens.publish(pts, shown, (fit.coords[:, :2], ids, pays) if "n_total" in extra else None,
                                    token=token, source=(library, model))
                return self._points_out(library, model, method, dims, token, shown, extra, highlight_ids, own_ids,
                                        selected_ids)
        idx = np.arange(n)
        note = ""
        if dims == 3 and n > MAX_3D_POINTS:
            idx = np.sort(np.random.default_rng(0).choice(n, MAX_3D_POINTS, replace=False))
            note = f"showing {MAX_3D_POINTS:,} of {n:,} points (decimated for 3D)"
        density = None
        if dims == 2 and n > LOD_THRESHOLD:
            xy = fit.coords[:, :2]
            idx = self._lod_subset(fit, xy)
            marked = set(highlight_ids or ()) | set(own_ids or ()) | set(selected_ids or ())
            if marked:  # highlighted, own and selected points are always drawn
                idx = np.union1d(idx, [i for i, pid in enumerate(ids) if pid in marked]).astype(np.int64)
            density = self._lod_density(fit, xy, idx)
            note = (f"drawing {len(idx):,} of {n:,} points (every region keeps some); the grey density shows the "
                    f"rest: click it to hear the nearest clip")
        c = np.round(fit.coords[idx].astype(np.float64), 5)
        shown = [ids[i] for i in idx]
        pts = {"x": c[:, 0].tolist(), "y": c[:, 1].tolist(),
               "path": [pays[i].get("path", "") for i in idx], "label": [pays[i].get("label") for i in idx],
               "start_s": [pays[i].get("start_s", 0.0) if pays[i].get("segment") is not None else 0.0 for i in idx]}
        if any(pays[i].get("segment") is not None for i in idx[:2000]):
            pts["end_s"] = [pays[i].get("end_s") if pays[i].get("segment") is not None else None for i in idx]
        if any(pays[i].get("top_tags") for i in idx[:50]):
            pts["tags"] = [", ".join(pays[i].get("top_tags", [])[:3]) for i in idx]
        if any(pays[i].get("tags") for i in idx):
            pts["user_tags"] = [", ".join(pays[i].get("tags") or []) for i in idx]
        if dims == 3:
            pts["z"] = c[:, 2].tolist()
        color = self.colors([pays[i] for i in idx], color_by)
        if color is not None:
            pts["color_values"] = color.pop("values")
            if "alpha" in color:
                pts["color_alpha"] = color.pop("alpha")
        if any(pays[i].get("pred_label") for i in idx):
            pts["pred_label"] = [pays[i].get("pred_label") if not pays[i].get("label") else None for i in idx]
            pts["pred_conf"] = [pays[i].get("pred_conf") for i in idx]
        if density is not None:  # with the points (fetched by the browser), not in the component's value
            pts["density"] = density
        token = self.tokens.publish(pts, shown, (fit.coords[:, :2], ids, pays) if density is not None else None,
                                    source=(library, model))
        extra = {"n": len(idx), "note": note, "color": color}
        if density is not None:
            extra["n_total"] = n
        if memo is not None:
            self._published[memo] = (pays, token, pts, shown, extra)
            while len(self._published) > 6:
                self._published.popitem(last=False)
        return self._points_out(library, model, method, dims, token, shown, extra, highlight_ids, own_ids, selected_ids)

    @staticmethod
    def _points_out(library: str, model: str, method: str, dims: int, token: str, shown: list[str], extra: dict,
                    highlight_ids: list[str] | None, own_ids: list[str] | None, selected_ids: list[str] | None) -> dict:
        """The map component's value of published points: the marked points as indices into them."""
        def where(marked: list[str] | None) -> list[int]:
            s = set(marked or ())
            return [j for j, pid in enumerate(shown) if pid in s] if s else []

        out = {"library": library, "model": model, "dims": dims, "points_url": f"/mapdata/{token}", "token": token,
               "highlight_idx": where(highlight_ids), "own_idx": where(own_ids), "selected_idx": where(selected_ids),
               "n": extra["n"], "note": extra["note"], "color": dict(extra["color"]) if extra["color"] else None,
               "title": f"{library} · {model} · {METHOD_LABELS[method]} {dims}D",
               "key": f"{library}/{model}/{method}/{dims}"}
        if "n_total" in extra:
            out["n_total"] = extra["n_total"]
        return out

    def default_map(self) -> dict | None:
        """What a new page draws first (the pickers' first library, its preselected model, PCA 2D by
        label): {"value": map value, "points": its published points}, for the page to fetch while
        Gradio loads (None with no library). The same map the page's draw event then returns."""
        libs = self._svc.libs.names()
        if not libs:
            return None
        model = self._svc.libs.default_model(libs[0])
        if not model:
            return None
        value, _ = self.value(libs[0], model, "pca", 2, color_by="label", quality=False)
        return {"value": value, "token": value["token"]}

    def _lod_memo(self, fit: MapFit, what: tuple, compute):
        """A level-of-detail array of a fitted map, computed once per (map, what): the same map drawn
        again (another page, another colour) reuses it."""
        key = (fit.key.digest if fit.key is not None else id(fit.coords), len(fit.ids), LOD_CAP, LOD_GRID, *what)
        got = self._lod.get(key)
        if got is None:
            got = compute()
            self._lod[key] = got
            while len(self._lod) > 8:
                self._lod.popitem(last=False)
        return got

    def _lod_subset(self, fit: MapFit, xy: np.ndarray) -> np.ndarray:
        return self._lod_memo(fit, ("subset",), lambda: projections.stratified_subset(xy, LOD_CAP, bins=LOD_GRID))

    def _lod_density(self, fit: MapFit, xy: np.ndarray, idx: np.ndarray) -> dict:
        digest = hash(idx.tobytes())  # the drawn rows (marked points added to the subset change it)
        return self._lod_memo(fit, ("density", DENSITY_GRID, digest),
                              lambda: projections.density_grid(xy, bins=DENSITY_GRID, exclude=idx))

    def trajectory(self, library: str, model: str, method: str, dims: int, path: str,
                   seed: int = 0, params: dict | None = None, fit: MapFit | None = None) -> dict:
        """A file's frames placed into an existing map (the map does not move): times and coords."""
        fit = fit or self.fit(library, model, method, dims, seed, params, quality=False)
        own = [(i, p) for i, p in enumerate(fit.payloads) if p.get("path") == path]
        if not own:
            raise ServiceError(f"no clip '{path}' in library '{library}' for model '{model}'")
        file_id = own[0][1].get("file_id") or fit.ids[own[0][0]]
        got = index.read_frame_latents(self._svc.store, library, model, file_id) if fit.key is None else None
        if got is not None and fit.projection.params.get("raw_latent"):
            times, placed = got  # the 'latent' map: the raw latent trajectory, as drawn
        else:
            times, frames = index.read_frames(self._svc.store, library, model, file_id)
            placed = self.placer(fit).transform(frames)
        out = {"t": np.round(times, 4).tolist(), "x": np.round(placed[:, 0], 5).tolist(),
               "y": np.round(placed[:, 1], 5).tolist(), "file_id": file_id, "own_ids": [fit.ids[i] for i, _ in own]}
        if dims == 3:
            out["z"] = np.round(placed[:, 2], 5).tolist()
        return out

    def playback_value(self, library: str, model: str, method: str, dims: int, path: str,
                       trail_s: float = 0.0, rotate: bool = False, seed: int = 0) -> tuple[dict, str]:
        """Map value in playback mode: own points green, others grey, trajectory, audio, waveform, spectrogram."""
        fit = self.fit(library, model, method, dims, seed, None, quality=False)
        tr = self.trajectory(library, model, method, dims, path, seed, fit=fit)
        value = self.points_value(library, model, method, dims, fit, own_ids=tr["own_ids"])
        value["trajectory"] = {k: tr[k] for k in ("t", "x", "y", "z") if k in tr}
        value["trail_s"] = float(trail_s)
        value["rotate"] = bool(rotate)
        value["autoplay"] = True
        value["audio_url"] = f"/audio/{quote(library)}/{quote(path)}"
        value["audio_label"] = path
        value.update(self._svc.queries.waveform(library, path))
        value["key"] = value["key"] + "/play"
        n = len(tr["t"])
        note = (f"{n} frame{'s' if n != 1 else ''} of {path} placed into the {METHOD_LABELS[method]} map with "
                f"`transform` (the map does not move)")
        return value, note

    def compare(self, library: str, models: list[str], method: str, dims: int,
                highlight_path: str | None = None) -> tuple[list[dict], list[dict]]:
        """The same library in several models (same method), the same clip highlighted in all:
        (map values, quality rows)."""
        values, rows = [], []
        for m in models:
            fit = self.fit(library, m, method, dims)
            hl = [fit.ids[i] for i, p in enumerate(fit.payloads) if highlight_path and p.get("path") == highlight_path]
            v = self.points_value(library, m, method, dims, fit, highlight_ids=hl)
            v["height"], v["legend"] = 520, "below"  # three panels side by side: the legend under the points
            q = fit.projection.quality or {}
            v["title"] = compare_title(m, q)
            values.append(v)
            rows.append({"model": m, "trustworthiness": q.get("trustworthiness"),
                         "agreement_full": q.get("agreement_full"), "agreement_map": q.get("agreement_map")})
        return values, rows
