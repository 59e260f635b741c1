"""Family 'trained': models trained here, found under `<data>/trained/<model name>/`.

Three kinds (training code in `embedders.training`; the `train` CLI verb runs it):

* `ae-<name>`: conditioned convolutional autoencoder, a 3-D latent per 0.37 s log-mel window
  (or, when it did not beat PCA-3 on its own windows, the PCA-3 fallback, said in its description);
* `ssl-<name>`: a compact CNN trained self-supervised (SimCLR) on a library's audio;
* `<base>+ssl-<name>`: a pretrained musicnn-family network (`vgg-msd`, `musicnn-msd`, ...) fine-tuned
  self-supervised on a library; it embeds like its base (built through the registry with the saved
  weights, so no family imports another);
* `<base>+supcon-<name>`: a supervised-contrastive projection head on the frozen embedder
  `<base>` (computes the base model's frames, then maps them to 128-d).

Listing reads only each folder's meta.json (no torch import); weights load on `load(name)`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times, l2_normalise
from .paths import data_dir as resolve_data_dir

FAMILY = "trained"
META_FILE, MODEL_FILE, LOG_FILE = "meta.json", "model.pt", "training_log.csv"  # as embedders.training.common
KINDS = ("autoencoder", "selfsup", "supcon", "finetune")


def trained_root(data_dir: str | Path) -> Path:
    """`<data>/trained`."""
    return Path(data_dir) / "trained"


def model_folder(name: str, data_dir: str | Path) -> Path:
    """Folder of the trained model `name`."""
    return trained_root(data_dir) / name


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS or not meta.get("name"):
        return None
    return meta


def model_meta(name: str, data_dir: str | Path | None = None) -> dict:
    """The saved metadata of a trained model; EmbedderError if there is none."""
    data_dir = resolve_data_dir(data_dir)
    meta = _read_meta(model_folder(name, data_dir))
    if meta is None:
        raise EmbedderError(f"no trained model '{name}' in {trained_root(data_dir)}")
    return meta


def training_log(name: str, data_dir: str | Path | None = None) -> list[dict]:
    """A trained model's per-epoch log: [{epoch, train_loss, val_loss, (val_knn_agreement,) wall_s}, ...]."""
    import csv

    data_dir = resolve_data_dir(data_dir)
    path = model_folder(name, data_dir) / LOG_FILE
    if not path.is_file():
        raise EmbedderError(f"no training log for model '{name}'")
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else int(float(v)) if k == "epoch" else float(v))
                         for k, v in row.items()})
    return rows


def _check(folder: Path, data_dir: Path) -> Availability:
    meta = _read_meta(folder) or {}
    name = meta.get("name", folder.name)
    common = dict(name=name, family=FAMILY, dim=meta.get("dim"), description=meta.get("description", ""))
    if meta.get("state") != "ready":
        return Availability(status="unavailable", reason=f"training not finished (resume it with `python app.py "
                            f"train {_verb(meta)} ... --resume`)", **common)
    if not (folder / MODEL_FILE).is_file():
        return Availability(status="unavailable", reason=f"weights missing: {folder / MODEL_FILE}", **common)
    if meta["kind"] in ("supcon", "finetune"):
        from . import check as check_model

        try:
            base = check_model(meta["base"], data_dir)
        except EmbedderError as exc:
            return Availability(status="unavailable", reason=f"base model: {exc}", **common)
        if base.status != "ready":
            return Availability(status=base.status, reason=f"base model '{meta['base']}': {base.reason}", **common)
    return Availability(status="ready", **common)


def _verb(meta: dict) -> str:
    return {"autoencoder": "autoencoder", "selfsup": "selfsup", "supcon": "contrastive",
            "finetune": "finetune"}.get(meta.get("kind"), "")


def _spec(folder: Path, meta: dict) -> ModelSpec:
    desc = meta.get("description") or f"{meta['kind']} model trained here (training not finished)"
    return ModelSpec(name=meta["name"], family=FAMILY, description=desc, dim=meta.get("dim"),
                     build=lambda data_dir, f=folder, **kw: build(f, Path(data_dir), **kw),
                     check=lambda data_dir, f=folder: _check(f, Path(data_dir)),
                     extra={"kind": meta["kind"], "folder": str(folder)})


def specs(data_dir: Path) -> list[ModelSpec]:
    """Every model trained under `<data>/trained/` (cheap: reads JSON only)."""
    root = trained_root(data_dir)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = _read_meta(folder)
        if meta is not None and meta["name"] == folder.name:
            out.append(_spec(folder, meta))
    return out


def build(folder: Path, data_dir: Path, device: str | None = None) -> Embedder:
    """The embedder of a trained model folder."""
    meta = _read_meta(folder)
    if meta is None or meta.get("state") != "ready":
        raise EmbedderError(f"trained model in {folder} is not ready")
    if meta["kind"] == "autoencoder":
        return AutoencoderEmbedder(folder, meta, device)
    if meta["kind"] == "selfsup":
        return SelfSupEmbedder(folder, meta, device)
    if meta["kind"] == "finetune":
        return fine_tuned(folder, meta, data_dir)
    return SupConEmbedder(folder, meta, data_dir, device)


# ----------------------------------------------------------------------------- embedders

def fine_tuned(folder: Path, meta: dict, data_dir: Path) -> Embedder:
    """The base model's embedder (through the registry) running the fine-tuned weights of `folder`."""
    from . import get_spec

    emb = get_spec(meta["base"], data_dir).build(data_dir=data_dir, weights=folder / MODEL_FILE)
    emb.name, emb.family = meta["name"], FAMILY
    emb.description = meta.get("description", "")
    return emb


class _MelEmbedder(Embedder):
    """Shared by the models over this family's log-mel front end (22.05 kHz, 64 mels, hop 256)."""

    family = FAMILY
    tag_names = None

    def __init__(self, meta: dict):
        self.meta = meta
        self.name = meta["name"]
        self.description = meta.get("description", "")
        self.sample_rate = int(meta["sample_rate"])
        self.dim = int(meta["dim"])
        self.frame_hop_s = float(meta["frame_hop_s"])
        self.window_s = float(meta["window_s"])

    def _times(self, n: int, wave: np.ndarray) -> np.ndarray:
        return frame_times(n, self.frame_hop_s, min(self.window_s, max(len(wave), 1) / self.sample_rate))


class AutoencoderEmbedder(_MelEmbedder):
    """3-D latent (standardised) of 0.37 s log-mel windows every 0.19 s; or their PCA-3 fallback."""

    raw_latent = True  # its frames are coordinates: ingest keeps them raw beside the unit vectors

    def __init__(self, folder: Path, meta: dict, device: str | None = None):
        super().__init__(meta)
        from .training.autoencoder import AutoencoderModel

        self.model = AutoencoderModel(folder, device)
        self.fallback = self.model.fallback

    def embed_frames(self, wave: np.ndarray) -> Frames:
        from .training.common import log_mel

        vecs = self.model.frames(log_mel(np.asarray(wave, np.float32)))
        return Frames(times_s=self._times(len(vecs), wave), vectors=vecs, tags=None)


class SelfSupEmbedder(_MelEmbedder):
    """Pooled CNN features of 1.1 s log-mel windows (self-supervised); the clip vector is their mean."""

    def __init__(self, folder: Path, meta: dict, device: str | None = None):
        super().__init__(meta)
        from .training.selfsup import SelfSupModel

        self.model = SelfSupModel(folder, device)

    def embed_frames(self, wave: np.ndarray) -> Frames:
        from .training.common import log_mel

        vecs = self.model.frames([log_mel(np.asarray(wave, np.float32))])[0]
        return Frames(times_s=self._times(len(vecs), wave), vectors=vecs.astype(np.float32), tags=None)

    def embed_frames_batch(self, waves) -> list[Frames]:
        from .training.common import log_mel

        feats = self.model.frames([log_mel(np.asarray(w, np.float32)) for w in waves])
        return [Frames(times_s=self._times(len(v), w), vectors=v.astype(np.float32), tags=None)
                for v, w in zip(feats, waves)]


class SupConEmbedder(Embedder):
    """A SupCon head over a frozen base embedder: frames and clip vectors of the base, mapped to 128-d."""

    family = FAMILY
    tag_names = None

    def __init__(self, folder: Path, meta: dict, data_dir: Path, device: str | None = None):
        from .training.supcon import SupConHead

        self.meta = meta
        self.name = meta["name"]
        self.description = meta.get("description", "")
        self.head = SupConHead(folder, device)
        self._data_dir = data_dir
        self._base: Embedder | None = None
        self.sample_rate = int(meta["sample_rate"])
        self.dim = int(meta["dim"])
        self.frame_hop_s = float(meta["frame_hop_s"])
        self.window_s = meta.get("window_s")

    @property
    def base(self) -> Embedder:
        """The frozen base embedder (loaded through the registry on first use, outside its build lock)."""
        if self._base is None:
            from . import load

            self._base = load(self.meta["base"], self._data_dir)
        return self._base

    def embed_frames(self, wave: np.ndarray) -> Frames:
        fr = self.base.embed_frames(wave)
        return Frames(times_s=fr.times_s, vectors=self.head(fr.vectors), tags=None)

    def embed_frames_batch(self, waves) -> list[Frames]:
        return [Frames(times_s=f.times_s, vectors=self.head(f.vectors), tags=None)
                for f in self.base.embed_frames_batch(waves)]

    def embed_clip(self, wave: np.ndarray) -> np.ndarray:
        # the head was trained on the base's clip vectors: map those (not the mean of mapped frames)
        return l2_normalise(self.head(self.base.embed_clip(wave)[None])[0])

    def embed_clip_batch(self, waves) -> np.ndarray:
        if not len(waves):
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(self.head(self.base.embed_clip_batch(waves)))
