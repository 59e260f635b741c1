"""Library operations: list, describe, index (a server folder or uploads), delete; models;
training logs; thumbnails; the first-run demo library."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import index
from index.ingest import IngestOptions, IngestReport, thumbnail_path
from index.libraries import Library

from app.errors import ServiceError

if TYPE_CHECKING:
    from app.services import Services

DEMO_LIBRARY = "demo"
# best first: the library's first model is the UI's default (musicnn-msd has the best P@5 in the README)
DEMO_MODELS = ("musicnn-msd", "vgg-msd", "dsp")
DEMO_AUDIO = "demo_audio"  # the demo's audio folder inside the data folder
Progress = Callable[[int, int, str], None]


class LibraryService:
    """Libraries and models of one data folder."""

    def __init__(self, svc: "Services"):
        self._svc = svc

    @property
    def _store(self) -> index.Store:
        return self._svc.store

    def list(self) -> list[Library]:
        """Every library."""
        return index.list_libraries(self._store)

    def names(self) -> list[str]:
        """Every library's name."""
        return [lib.name for lib in self.list()]

    def get(self, name: str) -> Library:
        """One library (LibraryError if unknown)."""
        return index.get_library(self._store, name)

    def models_of(self, name: str | None) -> list[str]:
        """The models a library is indexed with ([] for no library)."""
        return list(self.get(name).models) if name else []

    def default_model(self, name: str | None) -> str | None:
        """The model to preselect: the best measured one (index.adapt.best_model: kNN label
        agreement where the library has labels, an unlabelled estimate otherwise), else the first."""
        models = self.models_of(name)
        if not models:
            return None
        return index.best_model(self._store, name, models) or models[0]

    def table(self) -> list[dict]:
        """Name, root, models and clip counts per library; a damaged model's count is None and its
        one-line message (with the fix) is in "damaged"."""
        rows = []
        for lib in self.list():
            counts, damage = index.library_status(self._store, lib.name)
            rows.append({"name": lib.name, "root": lib.root, "models": list(lib.models), "counts": counts,
                         "clips": max((n for n in counts.values() if n is not None), default=0),
                         "damaged": list(damage.values())})
        return rows

    def models(self) -> list[dict]:
        """Every registered model with its availability."""
        return [{"name": a.name, "family": a.family, "status": a.status, "dim": a.dim, "reason": a.reason,
                 "description": a.description} for a in index.available_models(self._svc.data_dir)]

    def ready_models(self) -> list[str]:
        """Names of models that can run here now."""
        return [a.name for a in index.available_models(self._svc.data_dir) if a.ready]

    def trained_models(self) -> list[str]:
        """Names of models trained here (family 'trained')."""
        return [m["name"] for m in self.models() if m["family"] == "trained"]

    def training_log(self, name: str) -> list[dict]:
        """Per-epoch rows (epoch, train_loss, val_loss, ...) of a trained model."""
        return index.training_log(name, self._svc.data_dir)

    def thumbnail(self, library: str, point_id: str) -> Path | None:
        """The thumbnail PNG of a point, if one was made at ingest."""
        p = thumbnail_path(self._svc.data_dir, library, point_id)
        return p if p.is_file() else None

    def files_of(self, library: str, model: str) -> list[str]:
        """Relative paths of the files in (library, model), sorted."""
        return list(self._svc.vectors.derived(library, model, "files",
                                              lambda _i, _v, pays: sorted({p.get("path", "") for p in pays})))

    def ensure_demo(self, progress: Progress | None = None) -> Library | None:
        """Build the demo library on first run (when there is no library at all): Sonic Pi's samples
        (Debian's `sonic-pi-samples`) by category, or the synthetic set without the package, indexed
        with the best of `DEMO_MODELS` that are ready or downloadable (the first is the UI's default).
        Progress goes to `progress`, or to stderr when none is given."""
        if self.list():
            return None
        import sys
        import time

        from app.demo import write_demo_audio

        t0 = time.perf_counter()

        def say(msg: str) -> None:
            print(f"[demo {time.perf_counter() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

        if progress is None:
            step = {"next": 0}

            def progress(done: int, total: int, what: str) -> None:
                if done >= step["next"] or done == total:
                    say(f"indexed {done}/{total} clips")
                    step["next"] = done + max(1, total // 10)

        folder = self._svc.data_dir / DEMO_AUDIO
        shutil.rmtree(folder, ignore_errors=True)  # no library uses it (there is none): start clean
        folder, source, counts = write_demo_audio(folder)
        say(f"{sum(counts.values())} {source} clips in {len(counts)} categories -> {folder}")
        status = {a.name: a.status for a in index.available_models(self._svc.data_dir)}
        models = [m for m in DEMO_MODELS if status.get(m) in ("ready", "downloadable")]
        fetch = [m for m in models if status[m] == "downloadable"]
        say(f"models: {', '.join(models)}" + (f" (fetching the weights of {', '.join(fetch)} first)" if fetch else ""))
        try:
            report = index.index_folder(self._store, DEMO_LIBRARY, folder, models, data_dir=self._svc.data_dir,
                                        progress=progress)
        except index.EmbedderError as exc:
            if not fetch:
                raise
            models = [m for m in models if m not in fetch]
            say(f"{exc}; indexing with {', '.join(models)} only")
            report = index.index_folder(self._store, DEMO_LIBRARY, folder, models, data_dir=self._svc.data_dir,
                                        progress=progress)
        say(f"demo library ready: {report.added} clips added, {len(report.failed)} skipped, models {', '.join(models)}")
        return self.get(DEMO_LIBRARY)

    def index(self, library: str, folder: str | None = None, uploads: list[str] | None = None,
              models: list[str] | None = None, progress: Progress | None = None, labels: str = "folder",
              segment: str = "auto", segment_s: float = 1.0, trim: bool = False) -> IngestReport:
        """Index a server-side folder, or uploaded files (copied into the data folder), into a library."""
        opts = IngestOptions(segment=segment, segment_s=segment_s, hop_s=segment_s, trim=trim,
                             labels=None if labels in ("", "folder") else labels)
        models = list(models or ["dsp"])
        index.naming.check_library_name(library)
        if folder and uploads:
            raise ServiceError("give a folder or uploads, not both")
        if uploads:
            dest = self._svc.data_dir / "uploads" / library
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
        try:
            return index.index_folder(self._store, library, path, models, data_dir=self._svc.data_dir,
                                      progress=progress, options=opts)
        finally:
            self._svc.vectors.clear()

    def index_scratch(self, library: str, uploads: list[str], models: list[str], progress: Progress | None = None,
                      **options) -> IngestReport:
        """Index a visitor's uploads into their scratch library, within the quotas (files, bytes,
        total duration); expired scratch libraries are deleted first."""
        from app.access import SCRATCH_PREFIX

        q = self._svc.access.quota
        self.expire_scratch()
        if not uploads:
            raise ServiceError("upload files to index (visitors cannot index server folders)")
        if not library.startswith(SCRATCH_PREFIX):
            raise ServiceError(f"a visitor's library is named {SCRATCH_PREFIX}...")
        held = []
        try:
            held = [p for p in self.get(library).resolve(".").rglob("*") if p.is_file()]
        except Exception:
            held = []
        files = [Path(f) for f in uploads]
        n_files = len(held) + len(files)
        n_bytes = sum(p.stat().st_size for p in held + files)
        if n_files > q.files:
            raise ServiceError(f"quota: a visitor's library holds at most {q.files} files ({n_files} with these)")
        if n_bytes > q.bytes:
            raise ServiceError(f"quota: a visitor's library holds at most {q.bytes / 1e6:.0f} MB "
                               f"({n_bytes / 1e6:.1f} MB with these)")
        dur = 0.0
        for p in held + files:
            try:
                dur += float(index.audio_info(p).duration_s)
            except Exception:
                pass  # not audio: indexing reports it
        if dur > q.duration_s:
            raise ServiceError(f"quota: a visitor's library holds at most {q.duration_s / 60:.0f} min of audio "
                               f"({dur / 60:.1f} min with these)")
        return self.index(library, uploads=uploads, models=models, progress=progress, **options)

    def expire_scratch(self, now: float | None = None) -> list[str]:
        """Delete visitors' scratch libraries not updated within the quota's time to live."""
        import time

        from app.access import SCRATCH_PREFIX

        now = time.time() if now is None else now
        gone = []
        for lib in self.list():
            if lib.name.startswith(SCRATCH_PREFIX) and now - (lib.updated or lib.created) > self._svc.access.quota.ttl_s:
                self.delete(lib.name)
                shutil.rmtree(self._svc.data_dir / "uploads" / lib.name, ignore_errors=True)
                gone.append(lib.name)
        return gone

    def delete(self, name: str, model: str | None = None) -> list[str]:
        """Delete a library (or one model's collections in it); the names of the collections dropped."""
        try:
            if model:
                from index.libraries import delete_model

                delete_model(self._store, name, model)
                return [index.collection_name(name, model)]
            return index.delete_library(self._store, name)
        finally:
            self._svc.vectors.clear()


