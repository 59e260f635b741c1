"""Family 'hf': transformers audio models from the Hugging Face Hub or a local folder.

Models (registry names; `-l<N>` picks hidden layer N where a model has a layer choice):

- `wav2vec2-base[-l<N>]`   facebook/wav2vec2-base, 16 kHz, 768-d, layers 0..12
- `hubert-base[-l<N>]`     facebook/hubert-base-ls960, 16 kHz, 768-d, layers 0..12
- `mert-95m[-l<N>]`        m-a-p/MERT-v1-95M, 24 kHz, 768-d, layers 0..12
- `mert-330m[-l<N>]`       m-a-p/MERT-v1-330M, 24 kHz, 1024-d, layers 0..24
- `whisper-{tiny,base,small}[-l<N>]`  openai/whisper-*, encoder only, 16 kHz
- `ast-audioset`           MIT/ast-finetuned-audioset-10-10-0.4593: pooled 768-d + 527 AudioSet tags
- `clap-htsat-unfused`     laion/clap-htsat-unfused, 48 kHz: 512-d audio AND text embeddings

Layer numbering follows transformers' `hidden_states`: 0 is the input of the first transformer
layer (CNN features + positional convolution), N the output of layer N. Without `-l<N>` the
model's last hidden state is used.

Time axis. Every model sees at most its native context per forward pass (`window_s`: 10 s for
wav2vec2 / HuBERT / MERT / AST / CLAP, 30 s for Whisper); longer waves are cut into consecutive
windows, and a short tail is embedded as the LAST `window_s` of the file (right-aligned, so it
has full context) keeping only its new part. Native frames (20 ms for wav2vec2 / HuBERT /
Whisper, 13.3 ms for MERT) carry absolute times and are mean-pooled into `frame_hop_s` = 0.5 s
frames (frame k covers [k*0.5, (k+1)*0.5) s of the file). AST and CLAP yield one vector per
10 s window, so their frame hop is 10 s. Whisper pads every window to 30 s; only the encoder
frames that cover real audio are kept, so padding never reaches an embedding.

Where weights come from (first match wins):
1. `ModelSpec.extra["local_path"]` (set in code),
2. `AUDIO_EXPLORER_MODEL_PATHS="wav2vec2-base=/models/w2v;ast-audioset=/models/ast"`
   (keys: registry base names or hub ids; entries separated by `;` or new lines),
3. `<data dir>/weights/hf/<base name>/` when that folder exists,
4. the Hugging Face Hub id (its local cache first; `HF_HUB_OFFLINE=1` is respected).
A local folder is anything `save_pretrained` / `hf download --local-dir` wrote.

Batching: windows of all waves in a call are batched up to `batch_s` seconds of audio per
forward pass (40 s on CPU, 480 s on CUDA). Whisper, AST and CLAP pad every window to a fixed
size, so any windows batch together. wav2vec2-base / HuBERT-base / MERT were trained without
attention masks (zero padding would change their output), so only windows of equal length
share a pass: full 10 s windows batch across files, shorter clips run one by one. On CUDA the
weights run in float16; outputs are always float32.

No torch / transformers import happens at module import or in `specs()` / `check()`.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import numpy as np

from .base import (Availability, Embedder, EmbedderError, Frames, ModelSpec, frame_times,
                   l2_normalise)

FAMILY = "hf"
MODEL_PATHS_ENV = "AUDIO_EXPLORER_MODEL_PATHS"
DEVICE_ENV = "AUDIO_EXPLORER_DEVICE"  # "cpu" / "cuda" / "cuda:1"; default: cuda when available


# --------------------------------------------------------------------------- model table


@dataclass(frozen=True)
class _Def:
    """Static facts about one listed model (no weights needed)."""

    name: str
    kind: str  # "ssl" | "whisper" | "ast" | "clap"
    repo: str
    description: str
    sample_rate: int
    dim: int
    n_layers: int | None  # hidden layers (layer choice 0..n_layers) or None: no layer choice
    window_s: float  # native context per forward pass
    frame_hop_s: float  # hop of the frames returned by embed_frames
    size_mb: int  # approximate download size
    fp16: bool = True  # half precision is safe on GPU
    remote_code: bool = False  # the repo may need its own modelling code (trust_remote_code)


_DEFS: dict[str, _Def] = {
    d.name: d
    for d in [
        _Def("wav2vec2-base", "ssl", "facebook/wav2vec2-base",
             "wav2vec 2.0 base (self-supervised speech), 20 ms states pooled to 0.5 s",
             16000, 768, 12, 10.0, 0.5, 380),
        _Def("hubert-base", "ssl", "facebook/hubert-base-ls960",
             "HuBERT base (self-supervised speech, LibriSpeech 960 h), pooled to 0.5 s",
             16000, 768, 12, 10.0, 0.5, 380),
        _Def("mert-95m", "ssl", "m-a-p/MERT-v1-95M",
             "MERT v1 95M (self-supervised music), 24 kHz, pooled to 0.5 s",
             24000, 768, 12, 10.0, 0.5, 380, remote_code=True),
        _Def("mert-330m", "ssl", "m-a-p/MERT-v1-330M",
             "MERT v1 330M (self-supervised music), 24 kHz, pooled to 0.5 s",
             24000, 1024, 24, 10.0, 0.5, 1270, remote_code=True),
        _Def("whisper-tiny", "whisper", "openai/whisper-tiny",
             "Whisper tiny encoder (speech recognition), padding trimmed, pooled to 0.5 s",
             16000, 384, 4, 30.0, 0.5, 150),
        _Def("whisper-base", "whisper", "openai/whisper-base",
             "Whisper base encoder (speech recognition), padding trimmed, pooled to 0.5 s",
             16000, 512, 6, 30.0, 0.5, 290),
        _Def("whisper-small", "whisper", "openai/whisper-small",
             "Whisper small encoder (speech recognition), padding trimmed, pooled to 0.5 s",
             16000, 768, 12, 30.0, 0.5, 970),
        _Def("ast-audioset", "ast", "MIT/ast-finetuned-audioset-10-10-0.4593",
             "Audio Spectrogram Transformer (AudioSet): 768-d per 10 s + 527 AudioSet tags",
             16000, 768, None, 10.0, 10.0, 350),
        _Def("clap-htsat-unfused", "clap", "laion/clap-htsat-unfused",
             "LAION CLAP (HTSAT, unfused): 512-d audio per 10 s, text queries in the same space",
             48000, 512, None, 10.0, 10.0, 620),
    ]
}

_LAYER_RE = re.compile(r"^(?P<base>.+)-l(?P<layer>0|[1-9][0-9]*)$")


def specs(data_dir: Path) -> list[ModelSpec]:
    """The listed models of this family (cheap: reads no weights, imports no torch)."""
    return [_spec(d, None) for d in _DEFS.values()]


def resolve(name: str, data_dir: Path) -> ModelSpec | None:
    """Spec for a parametric name such as `wav2vec2-base-l6`; None if not of this family.

    Raises EmbedderError (one line) for a layer the model does not have.
    """
    m = _LAYER_RE.match(name)
    if m is None or m.group("base") not in _DEFS:
        return None
    d = _DEFS[m.group("base")]
    layer = int(m.group("layer"))
    if d.n_layers is None:
        raise EmbedderError(f"model '{d.name}' has no layer choice (asked for '{name}')")
    if layer > d.n_layers:
        raise EmbedderError(f"'{name}': {d.name} has hidden layers 0..{d.n_layers}, not {layer}")
    return _spec(d, layer)


def _spec(d: _Def, layer: int | None) -> ModelSpec:
    name = d.name if layer is None else f"{d.name}-l{layer}"
    description = d.description if layer is None else f"{d.description}; hidden layer {layer}"
    extra: dict[str, Any] = {"repo": d.repo, "base": d.name, "kind": d.kind, "layer": layer,
                             "sample_rate": d.sample_rate, "frame_hop_s": d.frame_hop_s,
                             "window_s": d.window_s, "local_path": None}
    if d.kind == "clap":
        extra["supports_text"] = True
    spec = ModelSpec(name=name, family=FAMILY, description=description, dim=d.dim,
                     build=lambda data_dir=None: None, listed=layer is None, extra=extra)
    # closures over the spec itself, so a caller may edit spec.extra (e.g. local_path) first
    spec.build = lambda data_dir=None, _s=spec: build_embedder(_s, data_dir)
    spec.check = lambda data_dir=None, _s=spec: check_spec(_s, data_dir)
    return spec


# --------------------------------------------------------------------------- where weights are


def configured_model_paths() -> dict[str, str]:
    """`AUDIO_EXPLORER_MODEL_PATHS` parsed into {name or hub id: folder} (hf, tfhub, crepe)."""
    raw = os.environ.get(MODEL_PATHS_ENV, "")
    out: dict[str, str] = {}
    for entry in re.split(r"[;\n]", raw):
        key, sep, path = entry.partition("=")
        if sep and key.strip() and path.strip():
            out[key.strip()] = path.strip()
    return out


def local_model_path(base: str, hub_id: str, family: str, data_dir: Path | None,
                     extra: dict) -> tuple[Path | None, str]:
    """The local folder configured for a model and where that setting came from, or (None, "")."""
    if extra.get("local_path"):
        return Path(extra["local_path"]).expanduser(), "the model spec"
    paths = configured_model_paths()
    for key in (base, hub_id):
        if key in paths:
            return Path(paths[key]).expanduser(), MODEL_PATHS_ENV
    if data_dir is not None:
        folder = Path(data_dir) / "weights" / family / base
        if folder.is_dir():
            return folder, "the data folder"
    return None, ""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, HF_HOME, XDG)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


_reachable_cache: dict[str, bool] = {}
_reachable_lock = threading.Lock()


def host_reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout_s` (cached per process)."""
    with _reachable_lock:
        if url in _reachable_cache:
            return _reachable_cache[url]
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:  # DNS lookups ignore socket timeouts: bound the whole probe by a thread
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    ok = bool(result and result[0])
    with _reachable_lock:
        _reachable_cache[url] = ok
    return ok


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, or the hub endpoint unreachable within 1 s."""
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE"):
        return True
    return not host_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                 "pytorch_model.bin", "pytorch_model.bin.index.json")


def hf_cached(repo: str) -> bool:
    """Whether config, preprocessor config and weights of `repo` are in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache  # light: no torch

    cache = hf_cache_dir()

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache), str)

    return (cached("config.json")
            and (cached("preprocessor_config.json") or cached("processor_config.json"))
            and any(cached(f) for f in _WEIGHT_FILES))


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _WEIGHT_FILES)


def check_spec(spec: ModelSpec, data_dir: Path | None = None) -> Availability:
    """ready (local folder or cached), downloadable (hub reachable) or unavailable (why, fix)."""
    x = spec.extra
    avail = lambda status, reason="": Availability(  # noqa: E731
        spec.name, FAMILY, status, reason, dim=spec.dim, description=spec.description)
    path, origin = local_model_path(x["base"], x["repo"], FAMILY, data_dir, x)
    if path is not None:
        if _is_model_folder(path):
            return avail("ready")
        return avail("unavailable", f"local folder {path} (from {origin}) has no config.json and "
                                    "weights: point it at a folder written by save_pretrained "
                                    f"or `hf download {x['repo']} --local-dir <folder>`")
    if hf_cached(x["repo"]):
        return avail("ready")
    size = _DEFS[x["base"]].size_mb
    if hub_offline():
        flagged = _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE")
        why = "HF_HUB_OFFLINE is set" if flagged else "the Hugging Face Hub is unreachable"
        return avail("unavailable", f"weights not downloaded (~{size} MB) and {why}: run "
                                    f"`hf download {x['repo']}` with internet, or "
                                    f"set {MODEL_PATHS_ENV}='{x['base']}=/path/to/folder'")
    return avail("downloadable", f"~{size} MB downloaded from the Hugging Face Hub on first use")


# --------------------------------------------------------------------------- lazy heavy imports


def _guard_broken_torchaudio() -> None:
    """Treat an installed-but-unloadable torchaudio as absent.

    transformers imports torchaudio whenever it is installed; a torchaudio wheel built for
    another torch (torchcrepe pulls one in) then fails to load and takes every model with it.
    """
    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is None:
        return
    try:
        import torchaudio  # noqa: F401
    except Exception:  # OSError for a mismatched native library
        sys.modules["torchaudio"] = None  # type: ignore[assignment]  # find_spec -> None


def _torch():
    import torch

    return torch


def _transformers():
    _guard_broken_torchaudio()
    import transformers

    return transformers


def pick_device() -> str:
    """$AUDIO_EXPLORER_DEVICE, else "cuda" when available, else "cpu"."""
    wanted = os.environ.get(DEVICE_ENV, "").strip()
    if wanted:
        return wanted
    return "cuda" if _torch().cuda.is_available() else "cpu"


def _one_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- windows and frames


@dataclass(frozen=True)
class _Window:
    wave: int  # index of the wave in the batch
    start: int  # first sample
    stop: int  # one past the last sample
    keep_from_s: float  # native frames starting before this time (s, absolute) are dropped


def plan_windows(n_samples: int, sample_rate: int, window_s: float, min_tail_s: float,
                 wave: int = 0) -> list[_Window]:
    """Consecutive windows of `window_s`; a tail shorter than `min_tail_s` becomes a full window
    right-aligned to the end of the wave that keeps only its new part."""
    win = int(round(window_s * sample_rate))
    if n_samples <= win:
        return [_Window(wave, 0, n_samples, 0.0)]
    out = []
    start = 0
    while start < n_samples:
        stop = min(start + win, n_samples)
        if stop - start < win and (stop - start) < min_tail_s * sample_rate:
            out.append(_Window(wave, n_samples - win, n_samples, start / sample_rate))
        else:
            out.append(_Window(wave, start, stop, start / sample_rate))
        start = stop
    return out


def pool_frames(starts_s: np.ndarray, vectors: np.ndarray, tags: np.ndarray | None,
                hop_s: float) -> Frames:
    """Mean-pool native frames (absolute start times) into frames k covering [k*hop, (k+1)*hop)."""
    bins = np.floor(starts_s / hop_s + 1e-6).astype(np.int64)
    n = int(bins.max()) + 1
    counts = np.bincount(bins, minlength=n).astype(np.float64)

    def pool(x: np.ndarray) -> np.ndarray:
        acc = np.zeros((n, x.shape[1]), np.float64)
        np.add.at(acc, bins, x.astype(np.float64))
        filled = counts > 0
        acc[filled] /= counts[filled, None]
        for k in np.flatnonzero(~filled):  # cannot happen for contiguous native frames; be safe
            acc[k] = acc[k - 1] if k > 0 else acc[np.argmax(filled)]
        return acc.astype(np.float32)

    return Frames(times_s=frame_times(n, hop_s, hop_s), vectors=pool(vectors),
                  tags=None if tags is None else pool(tags))


# --------------------------------------------------------------------------- the embedders


class HFEmbedder(Embedder):
    """Shared machinery: windowing, duration-based batching, pooling to `frame_hop_s`."""

    family = FAMILY
    supports_text = False
    min_wave_s = 0.1  # shorter waves are zero-padded to this (the conv front-ends need ~25 ms)
    min_tail_s = 0.0  # see plan_windows; per model
    one_vector_per_window = False  # AST / CLAP: the window's vector stands for its new part

    def __init__(self, name: str, description: str, sample_rate: int, dim: int,
                 frame_hop_s: float, window_s: float, device: str, dtype: Any,
                 source: str) -> None:
        self.name = name
        self.description = description
        self.sample_rate = int(sample_rate)
        self.dim = int(dim)
        self.frame_hop_s = float(frame_hop_s)
        self.window_s = float(window_s)
        self.device = device
        self.dtype = dtype
        self.source = source  # hub id or local folder the weights came from
        self.batch_s = 480.0 if str(device).startswith("cuda") else 40.0  # audio s per forward

    # -- subclass hooks
    def _forward(self, segments: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per segment: native vectors [n, D] and tags [n, K] | None (n >= 1)."""
        raise NotImplementedError

    def _native_hop_s(self) -> float:
        """Seconds between native frames within one segment (window_s for one-vector models)."""
        raise NotImplementedError

    def _batch_key(self, window: _Window) -> Any:
        """Windows with equal keys may share a forward pass (default: equal length, no padding)."""
        return window.stop - window.start

    def _cost_s(self, window: _Window) -> float:
        return (window.stop - window.start) / self.sample_rate

    # -- contract
    def embed_frames(self, wave: np.ndarray) -> Frames:
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        prepared = [self._prepare(w) for w in waves]
        windows = [w for i, wave in enumerate(prepared)
                   for w in plan_windows(len(wave), self.sample_rate, self.window_s,
                                         self.min_tail_s, wave=i)]
        outputs: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        groups: dict[Any, list[int]] = {}
        for j, w in enumerate(windows):
            groups.setdefault(self._batch_key(w), []).append(j)
        for idx in groups.values():
            batch: list[int] = []
            cost = 0.0
            for j in idx + [-1]:
                if j == -1 or (batch and cost + self._cost_s(windows[j]) > self.batch_s):
                    segs = [prepared[windows[k].wave][windows[k].start:windows[k].stop]
                            for k in batch]
                    for k, out in zip(batch, self._forward(segs)):
                        outputs[k] = out
                    batch, cost = [], 0.0
                if j != -1:
                    batch.append(j)
                    cost += self._cost_s(windows[j])
        hop = self._native_hop_s()
        result = []
        for i in range(len(prepared)):
            starts, vecs, tags = [], [], []
            for j, w in enumerate(windows):
                if w.wave != i:
                    continue
                v, t = outputs[j]
                s = w.start / self.sample_rate + np.arange(len(v)) * hop
                keep = s >= w.keep_from_s - 1e-9
                if self.one_vector_per_window:
                    s, keep = np.array([w.keep_from_s]), np.array([True])
                starts.append(s[keep])
                vecs.append(v[keep])
                if t is not None:
                    tags.append(t[keep])
            result.append(pool_frames(np.concatenate(starts), np.concatenate(vecs),
                                      np.concatenate(tags) if tags else None, self.frame_hop_s))
        return result

    def _prepare(self, wave: np.ndarray) -> np.ndarray:
        w = np.asarray(wave, dtype=np.float32)
        if w.ndim != 1:
            raise EmbedderError(f"{self.name}: expected a mono wave [n], got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise EmbedderError(f"{self.name}: the wave contains NaN or infinite samples")
        need = int(math.ceil(self.min_wave_s * self.sample_rate))
        if len(w) < need:
            w = np.pad(w, (0, need - len(w)))
        return w

    def _to_model(self, x: Any) -> Any:
        torch = _torch()
        x = x.to(self.device)
        return x.to(self.dtype) if torch.is_floating_point(x) else x


def _hidden(out: Any, layer: int | None) -> Any:
    if layer is None:
        return out.last_hidden_state
    hs = getattr(out, "hidden_states", None)
    if hs is None:
        raise EmbedderError("this model returns no hidden states here, so no layer can be chosen; "
                            "use the model name without -l<N>")
    return hs[layer]


class SSLEmbedder(HFEmbedder):
    """wav2vec2 / HuBERT / MERT: CNN front-end + transformer, any hidden layer."""

    def __init__(self, model: Any, feature_extractor: Any, *, layer: int | None, **kw: Any) -> None:
        cfg = model.config
        super().__init__(dim=cfg.hidden_size, sample_rate=feature_extractor.sampling_rate, **kw)
        self.min_tail_s = self.window_s / 2
        self.fe = feature_extractor
        self.layer = layer
        self._select = layer
        n_layers = cfg.num_hidden_layers
        if layer is not None and not 0 <= layer <= n_layers:
            raise EmbedderError(f"'{self.name}': this model has hidden layers 0..{n_layers}, "
                                f"not {layer}")
        if layer is not None and layer == n_layers:
            self._select = None  # the last hidden state
        encoder = getattr(model, "encoder", None)
        post_ln = not getattr(cfg, "do_stable_layer_norm", False)
        if (self._select is not None and post_ln and encoder is not None
                and hasattr(encoder, "layers") and getattr(model, "_native_hf", True)):
            # post-LN encoder: the output after layer N is hidden_states[N]; skip later layers
            encoder.layers = encoder.layers[:layer]
            self._select = None
        self.model = model
        self._hop_s = float(np.prod(cfg.conv_stride)) / self.sample_rate

    def _native_hop_s(self) -> float:
        return self._hop_s

    def _forward(self, segments: list[np.ndarray]) -> list[tuple[np.ndarray, None]]:
        torch = _torch()
        inputs = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(self._to_model(inputs["input_values"]),
                             output_hidden_states=self._select is not None)
            h = _hidden(out, self._select).float().cpu().numpy()
        return [(h[i], None) for i in range(len(segments))]


class WhisperEmbedder(HFEmbedder):
    """Whisper encoder states, only those covering real audio (the 30 s padding is cut)."""

    min_tail_s = float("inf")  # the model always sees 30 s: a right-aligned tail costs nothing

    def __init__(self, encoder: Any, feature_extractor: Any, *, layer: int | None,
                 **kw: Any) -> None:
        cfg = encoder.config
        super().__init__(dim=cfg.d_model, sample_rate=feature_extractor.sampling_rate, **kw)
        self.window_s = min(self.window_s, feature_extractor.n_samples / self.sample_rate)
        self.fe = feature_extractor
        self.encoder = encoder
        n_layers = cfg.encoder_layers
        if layer is not None and not 0 <= layer <= n_layers:
            raise EmbedderError(f"'{self.name}': this encoder has hidden layers 0..{n_layers}, "
                                f"not {layer}")
        self.layer = None if layer == n_layers else layer
        # encoder frame j covers mel frames 2j, 2j+1 (conv2 has stride 2)
        self._samples_per_frame = 2 * feature_extractor.hop_length

    def _native_hop_s(self) -> float:
        return self._samples_per_frame / self.sample_rate

    def _batch_key(self, window: _Window) -> Any:
        return 0  # every window is padded to 30 s

    def _cost_s(self, window: _Window) -> float:
        return self.window_s

    def _forward(self, segments: list[np.ndarray]) -> list[tuple[np.ndarray, None]]:
        torch = _torch()
        feats = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self.encoder(self._to_model(feats["input_features"]),
                               output_hidden_states=self.layer is not None)
            h = _hidden(out, self.layer).float().cpu().numpy()
        res = []
        for i, seg in enumerate(segments):
            n = max(1, int(math.ceil(len(seg) / self._samples_per_frame)))
            res.append((h[i, :n], None))
        return res


class ASTEmbedder(HFEmbedder):
    """AST: pooled output (mean of CLS and distillation tokens) + sigmoid AudioSet taggram."""

    min_tail_s = float("inf")  # AST pads every input to 10.24 s anyway
    one_vector_per_window = True

    def __init__(self, model: Any, feature_extractor: Any, **kw: Any) -> None:
        cfg = model.config
        super().__init__(dim=cfg.hidden_size, sample_rate=feature_extractor.sampling_rate, **kw)
        self.fe = feature_extractor
        self.model = model
        self.tag_names = [str(cfg.id2label[i]) for i in range(len(cfg.id2label))]

    def _native_hop_s(self) -> float:
        return self.window_s

    def _batch_key(self, window: _Window) -> Any:
        return 0

    def _cost_s(self, window: _Window) -> float:
        return self.window_s

    def _forward(self, segments: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        torch = _torch()
        feats = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.audio_spectrogram_transformer(self._to_model(feats["input_values"]))
            pooled = out.pooler_output
            probs = torch.sigmoid(self.model.classifier(pooled))
            pooled, probs = pooled.float().cpu().numpy(), probs.float().cpu().numpy()
        return [(pooled[i:i + 1], probs[i:i + 1]) for i in range(len(segments))]


def _pooled(out: Any) -> Any:
    """transformers 5 returns model outputs from get_*_features; 4.x returned tensors."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


class ClapEmbedder(HFEmbedder):
    """CLAP audio tower (one vector per 10 s) and text tower, in one normalised space."""

    supports_text = True
    min_tail_s = float("inf")  # CLAP repeat-pads short inputs to 10 s: use real context instead
    one_vector_per_window = True

    def __init__(self, model: Any, processor: Any, **kw: Any) -> None:
        fe = processor.feature_extractor
        super().__init__(dim=model.config.projection_dim, sample_rate=fe.sampling_rate, **kw)
        self.window_s = min(self.window_s, fe.nb_max_samples / self.sample_rate)
        self.fe = fe
        self.tokenizer = processor.tokenizer
        self.model = model
        text_cfg = model.config.text_config
        self._max_tokens = min(int(getattr(self.tokenizer, "model_max_length", 512) or 512),
                               int(text_cfg.max_position_embeddings) - 2)

    def _native_hop_s(self) -> float:
        return self.window_s

    def _batch_key(self, window: _Window) -> Any:
        return 0

    def _cost_s(self, window: _Window) -> float:
        return self.window_s

    def _forward(self, segments: list[np.ndarray]) -> list[tuple[np.ndarray, None]]:
        torch = _torch()
        feats = self.fe(segments, sampling_rate=self.sample_rate, return_tensors="pt")
        kwargs = {"input_features": self._to_model(feats["input_features"])}
        if "is_longer" in feats:
            kwargs["is_longer"] = feats["is_longer"].to(self.device)
        with torch.inference_mode():
            v = _pooled(self.model.get_audio_features(**kwargs)).float().cpu().numpy()
        v = l2_normalise(v)
        return [(v[i:i + 1], None) for i in range(len(segments))]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] L2-normalised text embeddings, comparable with this model's audio vectors."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        torch = _torch()
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self._max_tokens,
                             return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                               attention_mask=tok["attention_mask"].to(self.device))
            v = _pooled(out).float().cpu().numpy()
        return l2_normalise(v)


# --------------------------------------------------------------------------- loading


def _hub_kwargs(source: str, is_local: bool) -> dict[str, Any]:
    if is_local:
        return {}
    return {"cache_dir": str(hf_cache_dir()), "local_files_only": hub_offline()}


def _load_ssl(source: str, kw: dict[str, Any], allow_remote_code: bool) -> tuple[Any, Any]:
    tr = _transformers()
    fe = tr.AutoFeatureExtractor.from_pretrained(source, **kw)
    raw = json.loads(Path(tr.utils.cached_file(source, "config.json", **kw)).read_text("utf-8"))
    model = _load_mert_native(source, raw, kw)
    if model is None:
        remote = raw.get("model_type") not in tr.models.auto.configuration_auto.CONFIG_MAPPING
        if remote and not allow_remote_code:
            raise EmbedderError(f"{source}: model type {raw.get('model_type')!r} is not built into "
                                "transformers and this registry entry runs no remote code")
        model = tr.AutoModel.from_pretrained(source, trust_remote_code=remote, **kw)
        model._native_hf = not remote
    return model, fe


# MERT's remote code adds options a stock HubertModel lacks; with these off, MERT *is* a HuBERT
# with a layer-normed feature projection (and `attention_relax` only rescales logits inside the
# softmax: same result), so its weights load into transformers' own HubertModel and no remote code
# runs. That also keeps hidden states (layer choice) working under transformers 5, where the
# remote forward no longer collects them.
_MERT_ONLY_KEYS = ("feature_extractor_cqt", "feature_extractor_cqt_bins", "deepnorm",
                   "attention_relax", "auto_map", "architectures", "model_type",
                   "transformers_version", "_name_or_path")


def _load_mert_native(source: str, raw: dict[str, Any], kw: dict[str, Any]) -> Any | None:
    tr = _transformers()
    if raw.get("model_type") != "mert_model":
        return None
    if raw.get("feature_extractor_cqt") or raw.get("deepnorm"):
        return None  # needs the remote code
    config = tr.HubertConfig(**{k: v for k, v in raw.items() if k not in _MERT_ONLY_KEYS})
    model, info = tr.HubertModel.from_pretrained(source, config=config, output_loading_info=True,
                                                 **kw)
    missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
    if missing:
        return None  # not the layout we know: let the model's own code load it
    model._native_hf = True
    return model


def _source_for(spec: ModelSpec, data_dir: Path | None) -> tuple[str, bool]:
    x = spec.extra
    path, origin = local_model_path(x["base"], x["repo"], FAMILY, data_dir, x)
    if path is None:
        return x["repo"], False
    if not _is_model_folder(path):
        raise EmbedderError(f"model '{spec.name}': local folder {path} (from {origin}) has no "
                            "config.json and weights")
    return str(path), True


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> HFEmbedder:
    """Load weights (local folder or hub) and return the embedder; EmbedderError on failure."""
    x = spec.extra
    source, is_local = _source_for(spec, data_dir)
    kw = _hub_kwargs(source, is_local)
    try:
        torch = _torch()
        device = pick_device()
        use_fp16 = device.startswith("cuda") and _DEFS[x["base"]].fp16
        dtype = torch.float16 if use_fp16 else torch.float32
        common = dict(name=spec.name, description=spec.description, frame_hop_s=x["frame_hop_s"],
                      window_s=x["window_s"], device=device, dtype=dtype, source=source)
        tr = _transformers()
        kind = x["kind"]
        if kind == "ssl":
            model, fe = _load_ssl(source, kw, _DEFS[x["base"]].remote_code)
            emb: HFEmbedder = SSLEmbedder(_ready(model, device, dtype), fe, layer=x["layer"],
                                          **common)
        elif kind == "whisper":
            fe = tr.AutoFeatureExtractor.from_pretrained(source, **kw)
            full = tr.WhisperModel.from_pretrained(source, **kw)
            encoder = full.get_encoder()
            del full  # drop the decoder
            emb = WhisperEmbedder(_ready(encoder, device, dtype), fe, layer=x["layer"], **common)
        elif kind == "ast":
            fe = tr.AutoFeatureExtractor.from_pretrained(source, **kw)
            model = tr.ASTForAudioClassification.from_pretrained(source, **kw)
            emb = ASTEmbedder(_ready(model, device, dtype), fe, **common)
        elif kind == "clap":
            processor = tr.AutoProcessor.from_pretrained(source, **kw)
            model = tr.ClapModel.from_pretrained(source, **kw)
            emb = ClapEmbedder(_ready(model, device, dtype), processor, **common)
        else:  # pragma: no cover - table error
            raise EmbedderError(f"model '{spec.name}': unknown kind {kind!r}")
    except EmbedderError as exc:
        raise EmbedderError(str(exc)) from None
    except Exception as exc:  # download / format / code errors: one line for the UI and CLI
        where = ("local folder" if is_local else "the HF cache (offline)"
                 if kw.get("local_files_only") else "the Hugging Face Hub")
        raise EmbedderError(f"could not load '{spec.name}' ({source}) from {where}: "
                            f"{_one_line(exc)}") from None
    return emb


def _ready(model: Any, device: str, dtype: Any) -> Any:
    model.eval()
    return model.to(device=device, dtype=dtype)


def embedder_from_model(kind: str, name: str, model: Any, processor: Any, *,
                        layer: int | None = None, window_s: float | None = None,
                        frame_hop_s: float | None = None, device: str = "cpu") -> HFEmbedder:
    """Wrap an in-memory model (e.g. random-init from a config, for benchmarks) in the embedder
    code the registry uses. `processor`: the feature extractor (CLAP: the processor)."""
    torch = _torch()
    defaults = {"ssl": (10.0, 0.5), "whisper": (30.0, 0.5), "ast": (10.0, 10.0),
                "clap": (10.0, 10.0)}
    w, h = defaults[kind]
    common = dict(name=name, description=f"{name} (in-memory)", frame_hop_s=frame_hop_s or h,
                  window_s=window_s or w, device=device, dtype=torch.float32, source="<memory>")
    model = _ready(model, device, torch.float32)
    if kind == "ssl":
        return SSLEmbedder(model, processor, layer=layer, **common)
    if kind == "whisper":
        return WhisperEmbedder(model.get_encoder() if hasattr(model, "get_encoder") else model,
                               processor, layer=layer, **common)
    if kind == "ast":
        return ASTEmbedder(model, processor, **common)
    if kind == "clap":
        return ClapEmbedder(model, processor, **common)
    raise ValueError(f"unknown kind {kind!r}")


__all__ = ["ASTEmbedder", "ClapEmbedder", "HFEmbedder", "MODEL_PATHS_ENV", "SSLEmbedder",
           "WhisperEmbedder", "build_embedder", "check_spec", "configured_model_paths",
           "embedder_from_model", "hf_cache_dir", "hf_cached", "host_reachable", "hub_offline",
           "local_model_path", "pick_device", "plan_windows", "pool_frames", "resolve", "specs"]
