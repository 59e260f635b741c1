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
3. `<weights folder>/<base name>/` when that folder exists (`runtime.weights_dir(data, "hf")`:
   `<data dir>/weights/hf/`, or `$AUDIO_EXPLORER_WEIGHTS/hf/` when set),
4. the Hugging Face Hub id (its local cache first; `HF_HUB_OFFLINE=1` is respected).
A local folder is anything `save_pretrained` / `hf download --local-dir` wrote.

Batching: windows of all waves in a call are batched up to `batch_s` seconds of audio per
forward pass (40 s on CPU, 480 s on CUDA). Whisper, AST and CLAP pad every window to a fixed
size, so any windows batch together. wav2vec2-base / HuBERT-base / MERT were trained without
attention masks (zero padding would change their output), so only windows of equal length
share a pass: full 10 s windows batch across files, shorter clips run one by one. On CUDA the
weights run in float16; outputs are always float32.

No torch / transformers import happens at module import or in `specs()` / `check()`.

Layout: `models` (the model table), `weights` (where weights are, availability), `windows`
(windowing and pooling), `embedder` (the embedder classes), `loading` (from_pretrained into them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import EmbedderError, ModelSpec
from ..runtime import (DEVICE_ENV, MODEL_PATHS_ENV, configured_model_paths, host_reachable,
                       hub_offline, local_model_path, pick_device)
from .embedder import ASTEmbedder, ClapEmbedder, HFEmbedder, SSLEmbedder, WhisperEmbedder
from .loading import _guard_broken_torchaudio, _transformers  # noqa: F401  (tests, benchmarks)
from .loading import build_embedder, embedder_from_model
from .models import _DEFS, _LAYER_RE, FAMILY, _Def
from .weights import check_spec, hf_cache_dir, hf_cached
from .windows import plan_windows, pool_frames


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


__all__ = ["ASTEmbedder", "ClapEmbedder", "DEVICE_ENV", "FAMILY", "HFEmbedder", "MODEL_PATHS_ENV",
           "SSLEmbedder", "WhisperEmbedder", "build_embedder", "check_spec",
           "configured_model_paths", "embedder_from_model", "hf_cache_dir", "hf_cached",
           "host_reachable", "hub_offline", "local_model_path", "pick_device", "plan_windows",
           "pool_frames", "resolve", "specs"]
