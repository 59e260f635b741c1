"""Training data from a library, handed to `embedders.training`.

The library's files and labels come from its Qdrant payloads (path relative to the library
root, label, file id); the audio is decoded from the library folder; a frozen model's clip
vectors (for the contrastive head) are read back from its collection. Trained models land in
`<data>/trained/<model name>/` and are then listed by `embedders.available()` like any model.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import embedders
from embedders.audio import decode
from embedders.paths import data_dir as resolve_data_dir
from embedders.training import common as tcommon
from embedders.training.autoencoder import AutoencoderConfig
from embedders.training.common import TrainingError, TrainResult, stoppable
from embedders.training.finetune import BASES as FINETUNE_BASES
from embedders.training.finetune import FineTuneConfig
from embedders.training.selfsup import SelfSupConfig
from embedders.training.supcon import SupConConfig
from projections.quality import knn_agreement

from .libraries import LibraryError, get_library
from .naming import collection_name
from .queries import read_vectors
from .store import Store

Progress = Callable[[int, int, str], None]
Log = Callable[[str], None]

__all__ = ["AutoencoderConfig", "FINETUNE_BASES", "FineTuneConfig", "SelfSupConfig", "SupConConfig", "TrainingError",
           "TrainResult", "library_files", "model_name", "stoppable", "train_autoencoder", "train_contrastive",
           "train_finetune", "train_selfsup"]


@dataclass
class TrainFile:
    """One file of a library, as its payloads describe it."""

    rel: str  # path relative to the library root
    path: Path
    label: str | None
    file_id: str


def model_name(kind: str, name: str, base: str | None = None) -> str:
    """The embedder name a training run registers: ae-NAME, ssl-NAME, BASE+ssl-NAME (fine-tuned) or
    BASE+supcon-NAME."""
    tcommon.check_name(name)
    if kind == "autoencoder":
        return f"ae-{name}"
    if kind == "selfsup":
        return f"ssl-{name}"
    if kind == "supcon":
        if not base:
            raise TrainingError("contrastive training needs a base model (--base)")
        return f"{base}+supcon-{name}"
    if kind == "finetune":
        if not base:
            raise TrainingError(f"fine-tuning needs a pretrained base model (--base: {', '.join(FINETUNE_BASES)})")
        return f"{base}+ssl-{name}"
    raise TrainingError(f"unknown kind of training '{kind}' (autoencoder, selfsup, finetune, contrastive)")


def library_files(store: Store, library: str) -> list[TrainFile]:
    """Every file of a library (one entry per file, whatever its segments), sorted by path."""
    lib = get_library(store, library)
    coll = next((collection_name(library, m) for m in lib.models if store.has_collection(collection_name(library, m))),
                None)
    if coll is None:
        raise LibraryError(f"library '{library}' has no indexed clips yet")
    by_path: dict[str, TrainFile] = {}
    for rec in store.scroll(coll):
        rel = rec.payload.get("path")
        if rel and rel not in by_path:
            by_path[rel] = TrainFile(rel=rel, path=lib.resolve(rel), label=rec.payload.get("label"),
                                     file_id=rec.payload.get("file_id") or rel)
    if not by_path:
        raise LibraryError(f"library '{library}' has no indexed clips yet")
    return [by_path[k] for k in sorted(by_path)]


def _decode_all(files: list[TrainFile], sr: int, to_mel: Callable[[np.ndarray], np.ndarray], log: Log,
                progress: Progress | None = None) -> list[np.ndarray]:
    """`to_mel` of each file decoded at `sr` (a file that cannot be decoded is reported and skipped)."""
    t0 = time.perf_counter()
    mels, failed, audio_s = [], [], 0.0
    for i, f in enumerate(files):
        try:
            wave, _ = decode(f.path, sr)
            audio_s += len(wave) / sr
            mels.append(to_mel(wave))
        except Exception as exc:  # one bad file never stops the run
            failed.append((f.rel, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__))
        if progress:
            progress(i + 1, len(files), f.rel)
    for rel, why in failed:
        log(f"skipped {rel}: {why}")
    log(f"decoded {len(mels)} files ({audio_s:.0f} s of audio) in {time.perf_counter() - t0:.1f} s")
    if not mels:
        raise TrainingError("no file of the library could be decoded")
    return mels


def _decode_mels(files: list[TrainFile], log: Log, progress: Progress | None = None) -> list[np.ndarray]:
    """Raw log-mel spectrograms of the files (the trained models' 22.05 kHz front end)."""
    return _decode_all(files, tcommon.SAMPLE_RATE, tcommon.log_mel, log, progress)


def _decode_mel_power(files: list[TrainFile], mel_fb, log: Log, progress: Progress | None = None) -> list[np.ndarray]:
    """Mel power arrays of the files on musicnn's 16 kHz front end (for fine-tuning)."""
    from embedders.musicnn import SAMPLE_RATE
    from embedders.training import finetune

    return _decode_all(files, SAMPLE_RATE, lambda w: finetune.mel_power(w, mel_fb), log, progress)


def _folder(ddir: Path, name: str, resume: bool, overwrite: bool, library: str) -> Path:
    folder = tcommon.model_folder(ddir, name)
    tcommon.prepare_folder(folder, resume, overwrite)
    if resume:
        src = tcommon.read_meta(folder).get("source", {})
        if src.get("library") not in (None, library):
            raise TrainingError(f"model '{name}' was trained on library '{src['library']}', not '{library}'")
    return folder


def _done(result: TrainResult) -> TrainResult:
    embedders.forget(result.model)
    return result


def train_autoencoder(store: Store, library: str, name: str | None = None, file: str | None = None,
                      data_dir: str | os.PathLike | None = None, config=None, resume: bool = False,
                      overwrite: bool = False, progress: Progress | None = None, log: Log | None = None,
                      decode_progress: Progress | None = None) -> TrainResult:
    """Train `ae-<name>` on a whole library, or on one (long) file of it."""
    from embedders.training import autoencoder

    log = log or tcommon.stderr_log
    ddir = resolve_data_dir(data_dir)
    model = model_name("autoencoder", name or library)
    lib = get_library(store, library)
    if file:
        path = lib.resolve(file)
        if not path.is_file():
            raise LibraryError(f"no file '{file}' in library '{library}'")
        rel = path.relative_to(Path(lib.root).resolve()).as_posix()
        files = [TrainFile(rel=rel, path=path, label=None, file_id=rel)]
    else:
        files = library_files(store, library)
    folder = _folder(ddir, model, resume, overwrite, library)
    mels = _decode_mels(files, log, decode_progress)
    source = {"library": library, "file": files[0].rel if file else None, "n_files": len(mels)}
    return _done(autoencoder.train(mels, folder, model, config, resume=resume, progress=progress, log=log,
                                   source=source))


def train_selfsup(store: Store, library: str, name: str | None = None, data_dir: str | os.PathLike | None = None,
                  config=None, resume: bool = False, overwrite: bool = False, progress: Progress | None = None,
                  log: Log | None = None, decode_progress: Progress | None = None) -> TrainResult:
    """Train `ssl-<name>` self-supervised on a library's audio (labels unused)."""
    from embedders.training import selfsup

    log = log or tcommon.stderr_log
    ddir = resolve_data_dir(data_dir)
    model = model_name("selfsup", name or library)
    files = library_files(store, library)
    folder = _folder(ddir, model, resume, overwrite, library)
    mels = _decode_mels(files, log, decode_progress)
    source = {"library": library, "n_files": len(mels)}
    return _done(selfsup.train(mels, folder, model, config, resume=resume, progress=progress, log=log,
                               source=source))


def train_finetune(store: Store, library: str, base: str, name: str | None = None,
                   data_dir: str | os.PathLike | None = None, config=None, resume: bool = False,
                   overwrite: bool = False, progress: Progress | None = None, log: Log | None = None,
                   decode_progress: Progress | None = None) -> TrainResult:
    """Fine-tune the pretrained `base` (vgg-msd, musicnn-msd, ...) self-supervised on a library's audio
    (labels unused) into `<base>+ssl-<name>`."""
    from embedders.training import finetune

    log = log or tcommon.stderr_log
    ddir = resolve_data_dir(data_dir)
    model = model_name("finetune", name or library, base)
    _, _, mel_fb = finetune.base_parts(base, ddir)
    files = library_files(store, library)
    folder = _folder(ddir, model, resume, overwrite, library)
    mels = _decode_mel_power(files, mel_fb, log, decode_progress)
    source = {"library": library, "n_files": len(mels)}
    return _done(finetune.train(mels, folder, model, base, ddir, config, resume=resume, progress=progress, log=log,
                                source=source))


def train_contrastive(store: Store, library: str, base: str, name: str | None = None,
                      data_dir: str | os.PathLike | None = None, config=None, resume: bool = False,
                      overwrite: bool = False, progress: Progress | None = None,
                      log: Log | None = None) -> TrainResult:
    """Train `<base>+supcon-<name>` on the base model's clip vectors in the library and their labels."""
    from embedders.training import supcon

    log = log or tcommon.stderr_log
    ddir = resolve_data_dir(data_dir)
    model = model_name("supcon", name or library, base)
    spec = embedders.get_spec(base, ddir)
    _, vectors, payloads = read_vectors(store, library, base)
    rows = [i for i, p in enumerate(payloads) if p.get("label")]
    if not rows:
        raise TrainingError(f"library '{library}' has no labelled clips: contrastive training needs labels "
                            f"(index with sub-folders per class, or --labels)")
    labels = [str(payloads[i]["label"]) for i in rows]
    if len(set(labels)) < 2:
        raise TrainingError(f"library '{library}' has only one label ('{labels[0]}'): contrastive training "
                            f"needs at least two")
    files = [payloads[i].get("file_id") or payloads[i].get("path", str(i)) for i in rows]
    emb = embedders.load(base, ddir)  # the head is applied to this model's vectors when embedding
    folder = _folder(ddir, model, resume, overwrite, library)
    base_info = {"name": spec.name, "dim": int(vectors.shape[1]), "sample_rate": emb.sample_rate,
                 "frame_hop_s": emb.frame_hop_s, "window_s": emb.window_s}
    source = {"library": library, "n_clips": len(rows), "n_unlabelled_skipped": len(payloads) - len(rows)}
    return _done(supcon.train(vectors[rows], labels, files, folder, model, base_info, config, resume=resume,
                              progress=progress, log=log, source=source, agreement=knn_agreement))
