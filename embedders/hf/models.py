"""The hf model table: static facts about every listed model (no weights, no torch)."""
from __future__ import annotations

import re
from dataclasses import dataclass

FAMILY = "hf"


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
