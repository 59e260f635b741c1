"""Family 'tfhub': YAMNet and VGGish SavedModels through tensorflow-hub.

- `yamnet`: 1024-d embeddings + 521 AudioSet class scores (the taggram; class names from the
  model's `class_map_path()` CSV asset). 0.96 s patches every 0.48 s (`frame_hop_s` = 0.48).
- `vggish`: 128-d embeddings of non-overlapping 0.96 s patches (`frame_hop_s` = 0.96).

Both take a whole 16 kHz waveform per call (their own framing handles any length; waves
shorter than one patch are zero-padded to one), so there is no windowing here and batches
are embedded one wave after another.

Weights (first match wins): `ModelSpec.extra["local_path"]`, `AUDIO_EXPLORER_MODEL_PATHS`
(`yamnet=/models/yamnet`; the key may also be the hub handle), `<weights folder>/<name>/`
(`runtime.weights_dir(data, "tfhub")`; a SavedModel folder: `saved_model.pb` + `variables/`),
else the tfhub handle, which tensorflow-hub caches under `$TFHUB_CACHE_DIR` (default
`<tmp>/tfhub_modules`) in a folder named by the SHA-1 of the handle. TensorFlow is imported
only when a model is built.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times
from .runtime import MODEL_PATHS_ENV, host_reachable, local_model_path, one_line

FAMILY = "tfhub"
SAMPLE_RATE = 16000
MIN_SAMPLES = 15600  # one 0.96 s patch of 25 ms / 10 ms frames: 0.975 s


@dataclass(frozen=True)
class _Def:
    name: str
    handle: str
    description: str
    dim: int
    window_s: float
    hop_s: float
    has_scores: bool


_DEFS = {
    d.name: d
    for d in [
        _Def("yamnet", "https://tfhub.dev/google/yamnet/1",
             "YAMNet (AudioSet, MobileNet v1): 1024-d per 0.96 s every 0.48 s + 521 AudioSet tags",
             1024, 0.96, 0.48, True),
        _Def("vggish", "https://tfhub.dev/google/vggish/1",
             "VGGish (AudioSet, VGG-like): 128-d per non-overlapping 0.96 s patch",
             128, 0.96, 0.96, False),
    ]
}


def specs(data_dir: Path) -> list[ModelSpec]:
    """yamnet and vggish (cheap: no TensorFlow import)."""
    out = []
    for d in _DEFS.values():
        spec = ModelSpec(name=d.name, family=FAMILY, description=d.description, dim=d.dim,
                         build=lambda data_dir=None: None,
                         extra={"handle": d.handle, "local_path": None})
        spec.build = lambda data_dir=None, _s=spec: build_embedder(_s, data_dir)
        spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
        out.append(spec)
    return out


def tfhub_cache_dir() -> Path:
    """Where tensorflow-hub caches downloads: $TFHUB_CACHE_DIR or <tmp>/tfhub_modules."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def cached_module_dir(handle: str) -> Path:
    """The folder tensorflow-hub uses for `handle` in its cache (it may not exist)."""
    return tfhub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _source(spec: ModelSpec, data_dir: Path | None) -> tuple[str, str]:
    """(what to pass to hub.load, status): status is local / cached / remote / bad-local:<why>."""
    handle = spec.extra["handle"]
    path, origin = local_model_path(spec.name, handle, FAMILY, data_dir, spec.extra)
    if path is not None:
        if _is_saved_model(path):
            return str(path), "local"
        return str(path), f"bad-local:{origin}"
    if _is_saved_model(cached_module_dir(handle)):
        return handle, "cached"
    return handle, "remote"


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """ready (local SavedModel or in the tfhub cache), downloadable, or unavailable (why, fix)."""
    mk = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    source, status = _source(spec, data_dir)
    if status in ("local", "cached"):
        return mk("ready")
    if status.startswith("bad-local"):
        return mk("unavailable", f"{source} (from {status.split(':', 1)[1]}) is not a SavedModel "
                                 "folder (no saved_model.pb)")
    problem = _hub_import_problem()
    if problem:
        return mk("unavailable", f"weights not downloaded and {problem}; or set "
                                 f"{MODEL_PATHS_ENV}='{spec.name}=/path/to/saved_model_folder'")
    if host_reachable(source):
        return mk("downloadable", "downloaded from TF Hub (Kaggle Models) on first use")
    return mk("unavailable", f"weights not downloaded and {_host(source)} is unreachable: with "
                             f"internet run `python -c \"import tensorflow_hub as h; "
                             f"h.load('{source}')\"` (caches in $TFHUB_CACHE_DIR), or set "
                             f"{MODEL_PATHS_ENV}='{spec.name}=/path/to/saved_model_folder'")


def _host(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).hostname or url


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _hub_import_problem() -> str:
    """Why tensorflow_hub cannot be imported, found cheaply (no TF import); "" if it can."""
    if importlib.util.find_spec("tensorflow_hub") is None:
        return "tensorflow-hub is not installed (`pip install tensorflow-hub==0.16.1 tf-keras`)"
    if importlib.util.find_spec("pkg_resources") is None:  # tensorflow_hub 0.16 imports it
        return ("tensorflow-hub 0.16 needs pkg_resources, which setuptools>=81 no longer ships "
                "(`pip install 'setuptools<81'`)")
    return ""


def load_saved_model(source: str, status: str) -> Any:
    """hub.load(source); without an importable tensorflow_hub, a local or cached SavedModel is
    loaded with tf.saved_model.load (what hub.load does once a handle is resolved)."""
    tf = _tf()
    problem = _hub_import_problem()
    if not problem:
        import tensorflow_hub as hub

        return hub.load(source)
    if status == "local":
        return tf.saved_model.load(source)
    if status == "cached":
        return tf.saved_model.load(str(cached_module_dir(source)))
    raise EmbedderError(f"cannot download {source}: {problem}")


def _class_names(model: Any, n: int) -> list[str]:
    """Display names from the model's class-map CSV asset (index,mid,display_name), if any."""
    fn = getattr(model, "class_map_path", None)
    if fn is not None:
        try:
            path = fn().numpy().decode("utf-8")
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            names = [r.get("display_name") or r.get("name") or "" for r in rows]
            if len(names) == n and all(names):
                return names
        except Exception:  # no usable asset: fall back to numbered names
            pass
    return [f"class {i}" for i in range(n)]


class TFHubEmbedder(Embedder):
    """A YAMNet-style (scores, embeddings, spectrogram) or VGGish-style (embeddings) model."""

    family = FAMILY
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, description: str, model: Any, window_s: float, hop_s: float,
                 has_scores: bool, source: str) -> None:
        self._tf = _tf()
        self.name = name
        self.description = description
        self.model = model
        self.window_s = window_s
        self.frame_hop_s = hop_s
        self.has_scores = has_scores
        self.source = source
        scores, emb = self._run(np.zeros(MIN_SAMPLES, np.float32))
        self.dim = int(emb.shape[1])
        self.tag_names = _class_names(model, scores.shape[1]) if scores is not None else None

    def _run(self, wave: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        out = self.model(self._tf.constant(wave, dtype=self._tf.float32))
        if self.has_scores:
            if not isinstance(out, (tuple, list)) or len(out) < 2:
                raise EmbedderError(f"{self.name}: expected (scores, embeddings, ...) from the "
                                    "model, got one tensor")
            return np.asarray(out[0], np.float32), np.asarray(out[1], np.float32)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return None, np.asarray(out, np.float32)

    def embed_frames(self, wave: np.ndarray) -> Frames:
        if len(wave) < MIN_SAMPLES:
            wave = np.pad(wave, (0, MIN_SAMPLES - len(wave)))
        scores, emb = self._run(wave)
        n = emb.shape[0]
        return Frames(times_s=frame_times(n, self.frame_hop_s, self.window_s),
                      vectors=np.ascontiguousarray(emb, np.float32),
                      tags=None if scores is None else np.ascontiguousarray(scores, np.float32))


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> TFHubEmbedder:
    """Load the SavedModel (local folder, tfhub cache or download); EmbedderError on failure."""
    d = _DEFS[spec.name]
    source, status = _source(spec, data_dir)
    if status.startswith("bad-local"):
        raise EmbedderError(f"model '{spec.name}': {source} is not a SavedModel folder")
    try:
        model = load_saved_model(source, status)
        return TFHubEmbedder(spec.name, spec.description, model, d.window_s, d.hop_s,
                             d.has_scores, source)
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"could not load '{spec.name}' from {source}: {one_line(exc)}") from None
