"""The musicnn front end (wave -> log-mel patches) and the embedder.

Input pipeline (as `musicnn.extractor.batch_data`): 16 kHz mono, librosa mel spectrogram
(n_fft 512, hop 256, centred frames with zero padding, periodic Hann window, 96 Slaney
mels, power 2), `log10(10000 * mel + 1)`, cut into patches of 187 frames (2.992 s).
The front end here runs in torch with librosa's mel filterbank (stored with the weights);
it computes in float32, whereas the original casts the mel spectrogram to float16 first,
which rounds it (outputs move by up to ~1e-3) and overflows to inf where
`10000 * mel` exceeds 65504 (mel power above ~6.55: a 440 Hz sine at -14 dBFS already
gets there); `log_mel(..., float16_compat=True)` reproduces that rounding.

Patching rule (one `Frames` row per patch): patch i covers mel frames
[i * hop, i * hop + 187) with hop = 187 frames by default (non-overlapping, like the
original). Every full patch is used. A last, partial patch is kept when it adds at least
half a patch (94 frames, 1.5 s) of audio not covered by the full patches, and always
when the clip is shorter than one patch (the original fails on those); its missing frames
are filled by repeating its own frames from its start (repeat-pad, the `pad_short`
setting these models were trained with), so a 0.3 s clip yields one patch of that clip
looped. Silent or empty waves work too. `Frames.times_s` are patch centres: the centre
of the patch's middle mel frame, `i * hop_s + 93 * 256 / 16000` seconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..base import Embedder, Frames
from .models import (FAMILY, HOP_LENGTH, MIN_TAIL_FRAMES, N_FFT, PATCH_FRAMES, PRECISIONS,
                     SAMPLE_RATE, Variant)
from .nets import load_finetuned, load_net
from .plans import build_plan, cpu_workers, load_plan

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_BATCH_PATCHES = 16  # patches per forward pass on CUDA (bounds memory: ~0.1 GB per MusiCNN patch)
CPU_BATCH_PATCHES = 1  # patches per forward pass on CPU (per worker thread; small maps stay in cache)


def log_mel(wave: np.ndarray, mel_fb: "torch.Tensor", float16_compat: bool = False) -> "torch.Tensor":
    """[n_frames, 96] log-compressed mel spectrogram of a 16 kHz wave (musicnn's input).

    n_frames = 1 + len(wave) // 256 (centred frames). With `float16_compat` the mel
    spectrogram and the log arithmetic are rounded to float16 like the original extractor
    (including its overflow to inf above mel power 6.55).
    """
    import torch

    x = torch.as_tensor(np.asarray(wave, dtype=np.float32).reshape(-1), device=mel_fb.device)
    if x.numel() == 0:
        x = torch.zeros(1, device=mel_fb.device)
    window = torch.hann_window(N_FFT, periodic=True, device=x.device)
    spec = torch.stft(x, N_FFT, hop_length=HOP_LENGTH, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [257, n_frames]
    mel = (mel_fb @ power).T  # [n_frames, 96]
    if float16_compat:
        m16 = mel.to(torch.float16)
        return torch.log10(m16 * 10000 + 1).to(torch.float32)
    return torch.log10(10000.0 * mel + 1.0)


def patch_starts(n_frames: int, hop_frames: int = PATCH_FRAMES) -> list[int]:
    """Start frames of the patches cut from `n_frames` mel frames (see the module docstring)."""
    if n_frames < PATCH_FRAMES:
        return [0]
    n_full = (n_frames - PATCH_FRAMES) // hop_frames + 1
    starts = [i * hop_frames for i in range(n_full)]
    new_audio = n_frames - (starts[-1] + PATCH_FRAMES)
    if new_audio >= MIN_TAIL_FRAMES:
        starts.append(n_full * hop_frames)
    return starts


def make_patches(mel: "torch.Tensor", hop_frames: int = PATCH_FRAMES) -> "torch.Tensor":
    """[n_patches, 187, 96] patches of a [n_frames, 96] log-mel (partial ones repeat-padded)."""
    import torch

    out = []
    for s in patch_starts(mel.shape[0], hop_frames):
        patch = mel[s:s + PATCH_FRAMES]
        if patch.shape[0] < PATCH_FRAMES:
            reps = -(-PATCH_FRAMES // patch.shape[0])
            patch = patch.repeat(reps, 1)[:PATCH_FRAMES]
        out.append(patch)
    return torch.stack(out)


# ---------------------------------------------------------------- the embedder

class MusicnnEmbedder(Embedder):
    """A musicnn checkpoint (MusiCNN or VGG) exposing one of its layers as vectors.

    Runs on CUDA when available (the torch modules, MAX_BATCH_PATCHES patches per forward).
    On CPU it runs the checkpoint's plan (`_plans`: same numbers, CPU-shaped arithmetic),
    CPU_BATCH_PATCHES patches per call, spread over `cpu_workers(torch.get_num_threads())`
    threads of one intra-op thread each (inline when torch uses one thread); the log-mel
    front end of each wave runs on those workers too. Each patch is computed on its own, so
    a wave gets the same vectors whatever it is batched with. Patches of all waves given to
    `embed_frames_batch` share that work.
    `hop_frames` < 187 gives overlapping patches (frame_hop_s = hop_frames * 256 / 16000).
    `precision` "bf16" (default: the variant's) runs the plan in bfloat16 (see BF16_VARIANTS).
    `weights` (a file written by self-supervised fine-tuning, `embedders.training.finetune`) runs the
    variant's network and layer with those weights instead of the checkpoint's; its taggram is then
    not the tagger's any more, so such an embedder has no tags.
    """

    family = FAMILY
    sample_rate = SAMPLE_RATE

    def __init__(self, variant: Variant, data_dir: Path, hop_frames: int = PATCH_FRAMES,
                 precision: str | None = None, weights: str | Path | None = None):
        if not 1 <= hop_frames <= PATCH_FRAMES:
            raise ValueError(f"hop_frames must be in 1..{PATCH_FRAMES}")
        self.precision = precision or variant.precision
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.variant = variant
        self.name = variant.name
        self.description = variant.description
        self.dim = variant.dim
        self.layer = variant.layer
        self.tag_names = variant.tag_names
        self.hop_frames = hop_frames
        self.frame_hop_s = hop_frames * HOP_LENGTH / SAMPLE_RATE
        if weights is None:
            self.net, self.mel_fb = load_net(variant.checkpoint, Path(data_dir))
            self.plan = load_plan(variant.checkpoint, Path(data_dir), self.precision)
        else:
            self.net, self.mel_fb = load_finetuned(variant.checkpoint, Path(data_dir), Path(weights))
            self.plan = build_plan(self.net, self.precision) if self.mel_fb.device.type == "cpu" else None
            self.tag_names = None

    def patches(self, wave: np.ndarray) -> "torch.Tensor":
        """[n_patches, 187, 96] log-mel patches of one wave (the network's input)."""
        return make_patches(log_mel(wave, self.mel_fb), self.hop_frames)

    def _map(self, fn, items: list) -> list:
        """[fn(item)] in inference mode; on CPU spread over the worker threads."""
        import torch

        def run(item):
            with torch.inference_mode():
                return fn(item)

        pool = cpu_workers(torch.get_num_threads()) if self.mel_fb.device.type == "cpu" else None
        return list(pool.map(run, items)) if pool is not None else [run(i) for i in items]

    def _forward(self, x) -> dict:
        if self.plan is not None:
            return self.plan(x)
        if self.precision == "bf16":  # CUDA, or a CPU without the plan
            import torch

            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.net(x)
        return self.net(x)

    def forward_patches(self, patches) -> dict[str, np.ndarray]:
        """All layers for [n, 187, 96] log-mel patches (see the class docstring for batching)."""
        import torch

        x = torch.as_tensor(patches, dtype=torch.float32, device=self.mel_fb.device)
        step = CPU_BATCH_PATCHES if self.mel_fb.device.type == "cpu" else MAX_BATCH_PATCHES
        chunks = [x[i:i + step] for i in range(0, x.shape[0], step)]
        outs: dict[str, list] = {}
        for out in self._map(lambda c: {k: v.float().cpu().numpy() for k, v in self._forward(c).items()},
                             chunks):
            for k, v in out.items():
                outs.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in outs.items()}

    def _times(self, n: int) -> np.ndarray:
        centre = (PATCH_FRAMES // 2) * HOP_LENGTH / SAMPLE_RATE
        return np.arange(n, dtype=np.float64) * self.frame_hop_s + centre

    def embed_frames(self, wave: np.ndarray) -> Frames:
        """One row per patch: the chosen layer as vectors, the taggram as tags."""
        return self.embed_frames_batch([wave])[0]

    def embed_frames_batch(self, waves: Sequence[np.ndarray]) -> list[Frames]:
        """`embed_frames` for several waves, their patches batched into shared forward passes."""
        import torch

        if len(waves) == 0:
            return []
        per_wave = self._map(self.patches, list(waves))
        counts = [p.shape[0] for p in per_wave]
        out = self.forward_patches(torch.cat(per_wave))
        vectors, tags = out[self.layer], out["taggram"] if self.tag_names is not None else None
        frames, start = [], 0
        for n in counts:
            frames.append(Frames(times_s=self._times(n),
                                 vectors=np.ascontiguousarray(vectors[start:start + n], np.float32),
                                 tags=None if tags is None else np.ascontiguousarray(tags[start:start + n],
                                                                                     np.float32)))
            start += n
        return frames
