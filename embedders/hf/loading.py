"""Loading hf models (local folder or the Hub) into the embedders; in-memory models too."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from .. import runtime
from ..base import EmbedderError, ModelSpec
from .embedder import ASTEmbedder, ClapEmbedder, HFEmbedder, SSLEmbedder, WhisperEmbedder
from .models import _DEFS
from .weights import hf_cache_dir, source_for


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


def _transformers():
    """The transformers module (imported on first use, after the torchaudio guard)."""
    _guard_broken_torchaudio()
    import transformers

    return transformers


def _hub_kwargs(source: str, is_local: bool) -> dict[str, Any]:
    if is_local:
        return {}
    return {"cache_dir": str(hf_cache_dir()), "local_files_only": runtime.hub_offline()}


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


def build_embedder(spec: ModelSpec, data_dir: Path | None = None) -> HFEmbedder:
    """Load weights (local folder or hub) and return the embedder; EmbedderError on failure."""
    x = spec.extra
    source, is_local = source_for(spec, data_dir)
    kw = _hub_kwargs(source, is_local)
    try:
        import torch

        device = runtime.pick_device()
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
                            f"{runtime.one_line(exc)}") from None
    return emb


def _ready(model: Any, device: str, dtype: Any) -> Any:
    model.eval()
    return model.to(device=device, dtype=dtype)


def embedder_from_model(kind: str, name: str, model: Any, processor: Any, *,
                        layer: int | None = None, window_s: float | None = None,
                        frame_hop_s: float | None = None, device: str = "cpu") -> HFEmbedder:
    """Wrap an in-memory model (e.g. random-init from a config, for benchmarks) in the embedder
    code the registry uses. `processor`: the feature extractor (CLAP: the processor)."""
    import torch

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
