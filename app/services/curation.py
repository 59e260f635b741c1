"""Curation: the selection, tags and labels written back to Qdrant, clusters, near-duplicates,
exports of a set of clips (ZIP with a manifest, or a folder)."""
from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

import index
import projections
from index import curation

from app.errors import ServiceError


if TYPE_CHECKING:
    from app.services import Services

UNDO_DEPTH = 20       # edits a library can undo, per server
MAX_POSITIVES = 256   # "more like these": a larger selection is sampled (and says so)
DESCRIPTOR_WORDS = {  # (low, high) words for a cluster whose median sits in a descriptor's extreme fifth
    "loudness_dbfs": ("quiet", "loud"), "spectral_centroid_hz": ("dark", "bright"),
    "duration_s": ("short", "long"), "onset_rate_hz": ("sparse", "busy"), "pitch_salience": ("noisy", "tonal"),
}


@dataclass
class ClusterRow:
    """One cluster of a clustering, for tables and the CLI."""

    cluster: int
    name: str
    size: int
    medoid_id: str
    medoid_path: str
    ids: list[str]

    def to_dict(self, with_ids: bool = True) -> dict:
        """JSON-ready."""
        d = {"id": self.cluster, "name": self.name, "size": self.size, "medoid_id": self.medoid_id,
             "medoid_path": self.medoid_path}
        if with_ids:
            d["ids"] = self.ids
        return d


@dataclass
class ClusterReport:
    """A clustering of (library, model) with its names and, where labels exist, its agreement."""

    library: str
    model: str
    rows: list[ClusterRow]      # clusters, largest first; noise last (cluster -1) when there is any
    params: dict
    purity: float
    ari: float
    n_labelled: int
    cached: bool

    def to_dict(self, with_ids: bool = True) -> dict:
        """JSON-ready."""
        return {"library": self.library, "model": self.model, "params": self.params, "purity": self.purity,
                "ari": self.ari, "n_labelled": self.n_labelled, "clusters": [r.to_dict(with_ids) for r in self.rows]}


def cluster_name(pays: list[dict], all_pays: list[dict], quantiles: dict[str, tuple[float, float]]) -> str:
    """A readable name from what the members share: the dominant label or tag, the top taggram
    tag, and descriptor extremes (e.g. 'kick · low · short')."""
    n = len(pays)
    words: list[str] = []
    for key in ("label", "tags", "top_tags"):
        counts: Counter = Counter()
        for p in pays:
            v = p.get(key)
            for item in (v[:1] if key == "top_tags" else v) if isinstance(v, list) else ([v] if v else []):
                counts[str(item)] += 1
        if counts:
            word, c = counts.most_common(1)[0]
            if c >= max(2, 0.5 * n) and word not in words:
                words.append(word)
    for key, (lo_word, hi_word) in DESCRIPTOR_WORDS.items():
        if key not in quantiles:
            continue
        vals = [p[key] for p in pays if isinstance(p.get(key), (int, float))]
        if not vals:
            continue
        med, (lo, hi) = float(np.median(vals)), quantiles[key]
        if med <= lo:
            words.append(lo_word)
        elif med >= hi:
            words.append(hi_word)
        if len(words) >= 3:
            break
    return " · ".join(words[:3]) or f"{n} clips"


class CurationService:
    """The curation side of one data folder."""

    def __init__(self, svc: "Services"):
        self._svc = svc
        self.clusters_cache = projections.ClusterCache(svc.data_dir / "clusters")
        self._undo: dict[str, list[curation.Undo]] = {}

    # ---- the selection --------------------------------------------------------------------
    def resolve(self, token: str | None, indices: Sequence[int]) -> list[str]:
        """Point ids of the indices of a published map; ServiceError when the map has expired."""
        if not indices:
            return []
        tokens = self._svc.maps.tokens
        if tokens.points(str(token)) is None:
            raise ServiceError("this map has expired: draw it again, then select")
        ids = [tokens.point_id(token, i) for i in indices]
        return [i for i in dict.fromkeys(ids) if i]

    def payloads(self, library: str, model: str, ids: Sequence[str]) -> list[tuple[str, dict]]:
        """(id, payload) of the clips of a selection that are in (library, model), in selection order.
        From the map's cached read when there is one, else only these points from Qdrant (an
        export of a few clips from a 100k library does not read the library's vectors)."""
        held = self._svc.vectors.cached(library, model)
        if held is not None:
            by_id = dict(zip(held[0], held[2]))
        else:
            coll = index.collection_name(library, model)
            if not self._svc.store.has_collection(coll):
                return []
            by_id = {}
            wanted = list(dict.fromkeys(ids))
            for start in range(0, len(wanted), 1000):
                for r in self._svc.store.retrieve(coll, wanted[start:start + 1000]):
                    by_id[r.id] = r.payload
        return [(i, by_id[i]) for i in ids if i in by_id]

    def summary(self, library: str, model: str, ids: Sequence[str]) -> dict:
        """Count, label and tag breakdown of a selection."""
        rows = self.payloads(library, model, ids)
        labels = Counter(p.get("label") or "(no label)" for _i, p in rows)
        tags = Counter(t for _i, p in rows for t in p.get("tags") or [])
        return {"n": len(rows), "labels": dict(labels.most_common()), "tags": dict(tags.most_common()),
                "missing": len(ids) - len(rows)}

    # ---- edits ----------------------------------------------------------------------------
    def edit(self, library: str, ids: Sequence[str], add: Iterable[str] = (), remove: Iterable[str] = (),
             label: object = curation.UNSET, whole_file: bool = False) -> curation.EditResult:
        """Tag / untag / relabel clips in every model collection of the library."""
        try:
            res = curation.edit(self._svc.store, library, ids, add=add, remove=remove, label=label,
                                whole_file=whole_file)
        finally:
            self._svc.vectors.clear()
        if res.undo:
            stack = self._undo.setdefault(library, [])
            stack.append(res.undo)
            del stack[:-UNDO_DEPTH]
        return res

    def undo(self, library: str) -> curation.EditResult:
        """Undo the library's last edit made through this server; ServiceError when there is none."""
        stack = self._undo.get(library)
        if not stack:
            raise ServiceError("nothing to undo")
        last = stack.pop()
        try:
            return curation.restore(self._svc.store, library, last)
        finally:
            self._svc.vectors.clear()

    def tag_counts(self, library: str, model: str) -> dict[str, int]:
        """{tag: clips} (Qdrant facet)."""
        return curation.tag_counts(self._svc.store, library, model)

    def ids_matching(self, library: str, model: str, flt: dict) -> list[str]:
        """Ids of the clips whose payload matches a filter spec ({"label": "kick", "tags": "keep"})."""
        return curation.ids_where(self._svc.store, library, model, flt)

    def ids_where(self, library: str, model: str, tag: str | None = None, cluster: int | None = None) -> list[str]:
        """Ids with a tag, or in a persisted cluster."""
        if tag is None and cluster is None:
            raise ServiceError("give a tag or a cluster")
        flt = {"tags": tag} if tag is not None else {"cluster": int(cluster)}
        return curation.ids_where(self._svc.store, library, model, flt)

    def more_like(self, library: str, model: str, ids: Sequence[str], negative_ids: Sequence[str] = (),
                  k: int = 10) -> tuple[list, str]:
        """(hits, note): Qdrant recommend with the selection as positives (average vector), the
        selection itself left out."""
        if not ids:
            raise ServiceError("nothing selected: select clips on the map first")
        pos = list(ids)
        note = ""
        if len(pos) > MAX_POSITIVES:
            rng = np.random.default_rng(0)
            pos = [pos[i] for i in sorted(rng.choice(len(pos), MAX_POSITIVES, replace=False))]
            note = f" (from {MAX_POSITIVES} of the {len(ids)} selected clips, drawn at random)"
        hits = index.recommend(self._svc.store, library, model, pos, negative_ids=list(negative_ids), k=k,
                               exclude_ids=list(ids) + list(negative_ids))
        return hits, note

    # ---- clusters -------------------------------------------------------------------------
    def clusters(self, library: str, model: str, min_size: int = 5, pca_dims: int | None = 50,
                 persist: bool = True) -> ClusterReport:
        """HDBSCAN on (library, model)'s full vectors (cached per params and point set); named,
        with medoids; cluster ids written to the payload (`cluster`, `cluster_name`)."""
        ids, X, pays = self._svc.vectors.read(library, model)
        if not ids:
            raise ServiceError(f"library '{library}' has no clips for model '{model}'")
        params = {"min_cluster_size": int(min_size), "pca_dims": pca_dims}
        key = self.clusters_cache.key(library, model, ids, params)
        got = self.clusters_cache.get(library, key)
        cached = got is not None
        if got is None:
            with self._svc.locks(("clusters", key)):
                got = self.clusters_cache.get(library, key)
                if got is None:
                    got = projections.cluster(X, min_cluster_size=int(min_size), pca_dims=pca_dims)
                    self.clusters_cache.put(library, key, got)
        quant = {}
        for d in DESCRIPTOR_WORDS:
            vals = [p[d] for p in pays if isinstance(p.get(d), (int, float))]
            if len(vals) >= 10:
                quant[d] = (float(np.quantile(vals, 0.2)), float(np.quantile(vals, 0.8)))
        rows = []
        names: dict[int, str] = {}
        for c, medoid in got.medoids.items():
            idx = got.members(c)
            name = cluster_name([pays[i] for i in idx], pays, quant)
            names[c] = name
            rows.append(ClusterRow(c, name, len(idx), ids[medoid], pays[medoid].get("path", ""), [ids[i] for i in idx]))
        rows.sort(key=lambda r: (-r.size, r.cluster))
        noise = got.members(projections.clusters.NOISE)
        if len(noise):
            rows.append(ClusterRow(-1, "noise", len(noise), ids[noise[0]], pays[noise[0]].get("path", ""),
                                   [ids[i] for i in noise]))
        agree = projections.clusters.agreement([p.get("label") for p in pays], got.labels)
        if persist and not cached:
            curation.write_clusters(self._svc.store, library, model, ids, got.labels.tolist(), names)
            self._svc.vectors.clear()
        return ClusterReport(library, model, rows, got.params, agree["purity"], agree["ari"], agree["n"], cached)

    # ---- duplicates -----------------------------------------------------------------------
    @staticmethod
    def duplicate_threshold(model: str | None) -> float:
        """The model's measured best near-duplicate threshold."""
        return curation.duplicate_threshold(model)

    def duplicates(self, library: str, model: str, threshold: float | None = None) -> list[curation.DuplicateGroup]:
        """Groups of near-duplicate (and byte-identical) clips."""
        return curation.near_duplicates(self._svc.store, library, model,
                                        threshold=None if threshold is None else float(threshold))

    @staticmethod
    def others_csv(groups: Sequence[curation.DuplicateGroup]) -> str:
        """'Keep one per group': CSV of every clip but the first of each group."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["group", "keep", "duplicate", "duplicate_id", "kind", "similarity"])
        for g_i, g in enumerate(groups):
            for pid, path in list(zip(g.ids, g.paths))[1:]:
                w.writerow([g_i + 1, g.paths[0], path, pid, g.kind, g.similarity])
        return buf.getvalue()

    # ---- export ---------------------------------------------------------------------------
    def manifest_rows(self, library: str, model: str, ids: Sequence[str],
                      scores: dict[str, float] | None = None) -> list[dict]:
        """path, label, tags, cluster, score of each clip of a set."""
        rows = []
        for pid, p in self.payloads(library, model, ids):
            rows.append({"id": pid, "path": p.get("path", ""), "label": p.get("label"), "tags": p.get("tags") or [],
                         "cluster": p.get("cluster_name"), "start_s": p.get("start_s"), "end_s": p.get("end_s"),
                         "score": None if scores is None else scores.get(pid)})
        return rows

    def export(self, library: str, model: str, ids: Sequence[str], out: str | os.PathLike | None = None,
               scores: dict[str, float] | None = None) -> dict:
        """Write the clips' audio files and a manifest (CSV and JSON) to a ZIP (`out` ending in
        .zip, or a new file under the data folder) or a folder. Files are copied one at a time
        (a 100k-clip set never sits in memory); a missing file is one manifest line, the rest go on."""
        if not ids:
            raise ServiceError("nothing to export: the set is empty")
        lib = self._svc.libs.get(library)
        rows = self.manifest_rows(library, model, ids, scores)
        if not rows:
            raise ServiceError("none of these clips is in the library any more")
        if out is None:
            folder = self._svc.data_dir / "exports"
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / f"{library}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.zip"
        out = Path(out).expanduser()
        as_zip = out.suffix.lower() == ".zip"
        written, missing, seen = 0, [], set()
        zf = None
        if as_zip:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            zf = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        else:
            out.mkdir(parents=True, exist_ok=True)
        try:
            for r in rows:
                r["status"] = "ok"
                if r["path"] in seen:  # segments of one file: the file once
                    continue
                seen.add(r["path"])
                try:
                    src = lib.resolve(r["path"])
                    if not src.is_file():
                        raise FileNotFoundError("missing")
                    arc = "audio/" + r["path"]
                    if zf is not None:
                        zf.write(src, arc)  # streamed from disk in chunks
                    else:
                        dest = out / arc
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        import shutil

                        shutil.copyfile(src, dest)
                    written += 1
                except (OSError, index.LibraryError) as exc:
                    r["status"] = f"missing: {type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]}"
                    missing.append(r["path"])
            csv_text = self._manifest_csv(rows)
            json_text = json.dumps({"library": library, "model": model, "clips": rows}, indent=1)
            if zf is not None:
                zf.writestr("manifest.csv", csv_text)
                zf.writestr("manifest.json", json_text)
                zf.close()
                zf = None
                os.replace(tmp, out)
            else:
                (out / "manifest.csv").write_text(csv_text)
                (out / "manifest.json").write_text(json_text)
        finally:
            if zf is not None:
                zf.close()
                tmp.unlink(missing_ok=True)
        return {"out": str(out), "clips": len(rows), "files": written, "missing": missing}

    @staticmethod
    def _manifest_csv(rows: list[dict]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = ["path", "label", "tags", "cluster", "score", "start_s", "end_s", "id", "status"]
        w.writerow(cols)
        for r in rows:
            w.writerow([";".join(r[c]) if c == "tags" else ("" if r.get(c) is None else r[c]) for c in cols])
        return buf.getvalue()
