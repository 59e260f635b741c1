"""The hf embedders: shared windowing and batching (HFEmbedder) and one class per model kind."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..base import Embedder, EmbedderError, Frames, l2_normalise
from .models import FAMILY
from .windows import _Window, plan_windows, pool_frames


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
        """A checked wave zero-padded to at least `min_wave_s`."""
        need = int(math.ceil(self.min_wave_s * self.sample_rate))
        if len(wave) < need:
            wave = np.pad(wave, (0, need - len(wave)))
        return wave

    def _to_model(self, x: Any) -> Any:
        import torch

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
        import torch

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
        import torch

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
        import torch

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
        import torch

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
        import torch

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self._max_tokens,
                             return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                               attention_mask=tok["attention_mask"].to(self.device))
            v = _pooled(out).float().cpu().numpy()
        return l2_normalise(v)
