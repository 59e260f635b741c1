"""Family 'musicnn': MusiCNN and VGG music taggers (Pons et al.), re-implemented in PyTorch.

The `musicnn==0.1.0` wheel ships four TensorFlow 1 checkpoints (MusiCNN and VGG, each
trained on the Million Song Dataset (MSD) and on MagnaTagATune (MTT), 50 tags each).
`convert()` reads a checkpoint once (TensorFlow is imported only there) and caches a
PyTorch state dict as `paths.weights_dir(data, "musicnn")/<checkpoint>.pt`; every later
load needs only torch. The port reproduces the original graph (`musicnn/models.py`, inference mode:
batch norms use their moving statistics with TF's epsilon 1e-3, dropout off).

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

Layers (all computed by one forward pass; an embedder exposes one as its vectors):
- MusiCNN `pool` (1506-d, default): the input of the original's penultimate dense layer:
  the 753-channel concat of front end (561) and mid end (3 x 64), max- and mean-pooled over
  the patch's time axis, interleaved per channel exactly as the original flattens it
  (`[max_0, mean_0, max_1, mean_1, ...]`), then the original's batch norm (moving stats).
- MusiCNN `penultimate` (200-d): the original extractor's `penultimate` feature.
- VGG `pool5` (128-d): the original `pool5` map is [2 time x 1 freq x 128 channels] per
  patch; the vector is its mean over the 2 x 1 positions (per channel).
- `taggram` (50-d): sigmoid tag probabilities; also returned as `Frames.tags` by every layer.

Speed (CPU): one 3 s patch costs 2.80 GFLOP in MusiCNN (timbral convs 2.27, temporal 0.41,
mid end 0.12) and 1.75 GFLOP in VGG (conv2 1.30), so 200x real time needs ~190 / ~120
GFLOP/s. The torch modules below are the readable reference (and the CUDA path); on CPU the
embedder runs a plan of the same network (`_plans`: oneDNN products with prepacked weights,
Toeplitz-blocked timbral/temporal convs, one patch per call on single-threaded workers):
the same outputs to float rounding for 2-3x less CPU time per patch than the modules (and
4-6x their throughput on a busy machine). `-bf16` names (BF16_VARIANTS) trade a little
accuracy for ~1.6x more.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .base import Availability, Embedder, EmbedderError, Frames, ModelSpec
from .paths import weights_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

FAMILY = "musicnn"
SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # = librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
PATCH_S = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE  # 2.992 s
MIN_TAIL_FRAMES = (PATCH_FRAMES + 1) // 2  # a partial last patch needs this much new audio
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
MAX_BATCH_PATCHES = 16  # patches per forward pass on CUDA (bounds memory: ~0.1 GB per MusiCNN patch)
CPU_BATCH_PATCHES = 1  # patches per forward pass on CPU (per worker thread; small maps stay in cache)
FORMAT_VERSION = 1
WHEEL = "musicnn==0.1.0"

# From musicnn/configuration.py (copied so that converted weights need no musicnn package).
MTT_LABELS = ['guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano', 'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing', 'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal', 'pop', 'soft', 'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice', 'female vocal', 'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice', 'choral']  # noqa: E501
MSD_LABELS = ['rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s', 'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul', 'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies', 'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop', '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal', 'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy']  # noqa: E501

CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
LAYER_DIMS = {"pool": 1506, "penultimate": 200, "pool5": 128, "taggram": 50}
_DATASET_TEXT = {"MSD": "Million Song Dataset", "MTT": "MagnaTagATune"}


@dataclass(frozen=True)
class Variant:
    """One registry entry: a checkpoint and the layer its vectors come from."""

    name: str
    checkpoint: str  # e.g. "MSD_musicnn"
    layer: str  # "pool" | "penultimate" | "pool5" | "taggram"
    description: str
    precision: str = "fp32"  # "fp32" (exact port) | "bf16" (faster on CPU, see BF16_VARIANTS)

    @property
    def dim(self) -> int:
        return LAYER_DIMS[self.layer]

    @property
    def arch(self) -> str:
        return self.checkpoint.split("_", 1)[1]

    @property
    def tag_names(self) -> list[str]:
        return list(MSD_LABELS if self.checkpoint.startswith("MSD") else MTT_LABELS)


def _variants() -> list[Variant]:
    out = []
    for ds in ("msd", "mtt"):
        ckpt = ds.upper()
        data = _DATASET_TEXT[ckpt]
        out += [
            Variant(f"musicnn-{ds}", f"{ckpt}_musicnn", "pool",
                    f"MusiCNN ({data}): max+mean pooled front/mid-end features, 1506-d per 3 s"),
            Variant(f"musicnn-{ds}-penultimate", f"{ckpt}_musicnn", "penultimate",
                    f"MusiCNN ({data}): penultimate dense layer, 200-d per 3 s"),
            Variant(f"musicnn-{ds}-taggram", f"{ckpt}_musicnn", "taggram",
                    f"MusiCNN ({data}): 50 tag probabilities per 3 s"),
            Variant(f"vgg-{ds}", f"{ckpt}_vgg", "pool5",
                    f"VGG-like CNN ({data}): pool5 features averaged per 3 s patch, 128-d"),
            Variant(f"vgg-{ds}-taggram", f"{ckpt}_vgg", "taggram",
                    f"VGG-like CNN ({data}): 50 tag probabilities per 3 s"),
        ]
    return out


VARIANTS: dict[str, Variant] = {v.name: v for v in _variants()}
# Opt-in bfloat16 inference ("<name>-bf16"; loadable by name, not listed): about 1.6x the
# CPU throughput of the exact port where the CPU has AVX512-BF16 or AMX, at a small accuracy
# cost (MSD checkpoints on music: taggram within ~7e-3, cosine similarity to the exact
# vectors >= 0.9996 per patch and >= 0.9998 per clip). A separate name, so that its vectors
# never share a collection with the exact ones.
BF16_VARIANTS: dict[str, Variant] = {
    f"{v.name}-bf16": Variant(f"{v.name}-bf16", v.checkpoint, v.layer,
                              f"{v.description} (bfloat16 inference: faster, approximate)", "bf16")
    for v in VARIANTS.values()}


# ---------------------------------------------------------------- weights: where, convert

def converted_path(data_dir: Path, checkpoint: str) -> Path:
    """Where the converted state dict of `checkpoint` is cached."""
    return weights_dir(Path(data_dir), FAMILY) / f"{checkpoint}.pt"


def _installed_package_dir() -> Path | None:
    """The installed `musicnn` package folder (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "MSD_musicnn").is_dir():
            return Path(loc)
    return None


def _wheel_file(data_dir: Path) -> Path | None:
    """A musicnn wheel placed in the weights folder (`pip download --no-deps musicnn==0.1.0 -d ...`)."""
    found = sorted(weights_dir(Path(data_dir), FAMILY).glob("musicnn-*.whl"))
    return found[-1] if found else None


OFFLINE_ENV = "AUDIO_EXPLORER_OFFLINE"


def _may_fetch_wheel() -> bool:
    """True when the musicnn wheel may be fetched with pip on first use (a Space cannot say --no-deps)."""
    offline = {os.environ.get(OFFLINE_ENV, ""), os.environ.get("HF_HUB_OFFLINE", "")} & {"1", "true", "yes"}
    return not offline and importlib.util.find_spec("pip") is not None


def fetch_wheel(data_dir: Path) -> Path:
    """`pip download --no-deps musicnn==0.1.0` into the weights folder (its checkpoints are the weights)."""
    import subprocess
    import sys

    dest = weights_dir(Path(data_dir), FAMILY)
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(dest)],
                         capture_output=True, text=True, timeout=900)
    wheel = _wheel_file(data_dir)
    if res.returncode != 0 or wheel is None:
        last = (res.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise EmbedderError(f"could not fetch the musicnn weights with pip ({last}); "
                            f"run `pip install --no-deps {WHEEL}`")
    return wheel


def _source_available(data_dir: Path) -> str:
    """'' when a checkpoint source and TensorFlow exist to convert from, else why not."""
    if _installed_package_dir() is None and _wheel_file(data_dir) is None:
        return (f"musicnn weights not found: run `pip install --no-deps {WHEEL}` "
                f"(or `pip download --no-deps {WHEEL} -d {weights_dir(Path(data_dir), FAMILY)}`)")
    if importlib.util.find_spec("tensorflow") is None:
        return "converting the musicnn weights needs TensorFlow once: run `pip install tensorflow-cpu`"
    return ""


def _tf_to_torch_state(reader, arch: str) -> dict[str, np.ndarray]:
    """Map checkpoint tensors (TF layouts) onto the torch modules below (torch layouts)."""
    sd: dict[str, np.ndarray] = {}

    def conv2d(dst: str, src: str) -> None:  # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
        sd[f"{dst}.weight"] = reader.get_tensor(f"{src}/kernel").transpose(3, 2, 0, 1)
        sd[f"{dst}.bias"] = reader.get_tensor(f"{src}/bias")

    def conv1d(dst: str, src: str) -> None:  # TF [k, channels, 1, out] -> torch [out, channels, k]
        sd[f"{dst}.weight"] = reader.get_tensor(f"{src}/kernel")[:, :, 0, :].transpose(2, 1, 0)
        sd[f"{dst}.bias"] = reader.get_tensor(f"{src}/bias")

    def dense(dst: str, src: str) -> None:  # TF [in, out] -> torch [out, in]
        sd[f"{dst}.weight"] = reader.get_tensor(f"{src}/kernel").T
        sd[f"{dst}.bias"] = reader.get_tensor(f"{src}/bias")

    def bn(dst: str, src: str) -> None:  # same names and shapes
        for k in ("gamma", "beta", "moving_mean", "moving_variance"):
            sd[f"{dst}.{k}"] = reader.get_tensor(f"{src}/{k}")

    bn("bn_input", "batch_normalization")
    if arch == "musicnn":
        # creation order in models.build_musicnn: f74, f77, s1 (128), s2 (64), s3 (32), midend x3
        for i, name in enumerate(["timbral74", "timbral77", "temporal128", "temporal64", "temporal32"]):
            conv2d(f"{name}.conv", "conv2d" if i == 0 else f"conv2d_{i}")
            bn(f"{name}.bn", f"batch_normalization_{i + 1}")
        for j in range(3):
            conv1d(f"mid{j + 1}.conv", f"conv2d_{5 + j}")
            bn(f"mid{j + 1}.bn", f"batch_normalization_{6 + j}")
        bn("bn_pool", "batch_normalization_9")
        dense("dense", "dense")
        bn("bn_dense", "batch_normalization_10")
        dense("out", "dense_1")
    elif arch == "vgg":
        for i in range(1, 6):
            conv2d(f"block{i}.conv", f"{i}CNN")
            bn(f"block{i}.bn", f"batch_normalization_{i}")
        dense("out", "dense")
    else:
        raise ValueError(f"unknown musicnn architecture {arch!r}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _mel_filterbank() -> np.ndarray:
    """librosa's mel filterbank [96, 257] for sr 16000, n_fft 512 (Slaney scale and norm)."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)


def convert(checkpoint: str, data_dir: Path, force: bool = False) -> Path:
    """Convert one original TF checkpoint to a cached torch state dict; its path.

    Imports TensorFlow (only here). A no-op when the file exists, unless `force`.
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"unknown musicnn checkpoint {checkpoint!r} (known: {', '.join(CHECKPOINTS)})")
    data_dir = Path(data_dir)
    dst = converted_path(data_dir, checkpoint)
    if dst.exists() and not force:
        return dst
    reason = _source_available(data_dir)
    if reason and "weights not found" in reason and _may_fetch_wheel() and importlib.util.find_spec("tensorflow"):
        fetch_wheel(data_dir)  # first use on a machine without the wheel installed (e.g. a Space)
        reason = _source_available(data_dir)
    if reason:
        raise EmbedderError(reason)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # heavy: imported only here, to read the checkpoint
    import torch

    with tempfile.TemporaryDirectory(prefix="musicnn-") as tmp:
        pkg = _installed_package_dir()
        if pkg is not None:
            src = pkg / checkpoint
        else:  # unpack the checkpoint folder from a downloaded wheel
            wheel = _wheel_file(data_dir)
            with zipfile.ZipFile(wheel) as zf:
                for member in zf.namelist():
                    if member.startswith(f"musicnn/{checkpoint}/"):
                        zf.extract(member, tmp)
            src = Path(tmp) / "musicnn" / checkpoint
        # The `checkpoint` index file names the author's absolute path; read the prefix directly.
        reader = tf.compat.v1.train.NewCheckpointReader(str(src) + "/")
        state = _tf_to_torch_state(reader, checkpoint.split("_", 1)[1])
    return save_converted(checkpoint, {k: torch.from_numpy(v) for k, v in state.items()}, data_dir)


def save_converted(checkpoint: str, state_dict: dict, data_dir: Path) -> Path:
    """Write a torch state dict (+ the mel filterbank) as the cached weights of `checkpoint`.

    Atomic (temporary file + rename): an interrupted run leaves no half-written weights.
    """
    import torch

    dst = converted_path(Path(data_dir), checkpoint)
    payload = {
        "format": FORMAT_VERSION,
        "checkpoint": checkpoint,
        "source": f"{WHEEL}:{checkpoint}",
        "bn_eps": BN_EPS,
        "mel_fb": torch.from_numpy(_mel_filterbank()),
        "state_dict": dict(state_dict),
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{checkpoint}-", suffix=".pt", dir=dst.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; weights are ordinary files
        os.replace(tmp_name, dst)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dst


def convert_all(data_dir: Path, force: bool = False) -> list[Path]:
    """Convert all four checkpoints (no-op for those already converted); their paths."""
    return [convert(c, Path(data_dir), force=force) for c in CHECKPOINTS]


# ---------------------------------------------------------------- torch modules

def _nets():
    """Build the torch module classes (torch imported lazily)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class TFBatchNorm(nn.Module):
        """Inference-mode tf.compat.v1.layers.batch_normalization over dim 1."""

        def __init__(self, n: int):
            super().__init__()
            for k in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.register_buffer(k, torch.ones(n) if k in ("gamma", "moving_variance") else torch.zeros(n))

        def affine(self):
            """(scale, shift) with bn(x) = x * scale + shift."""
            scale = self.gamma * torch.rsqrt(self.moving_variance + BN_EPS)
            return scale, self.beta - self.moving_mean * scale

        def forward(self, x):
            scale, shift = self.affine()
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * scale.view(shape) + shift.view(shape)

    class ConvBN(nn.Module):
        """conv -> relu -> batch norm (the original's order), optionally followed by a max pool.

        `pooled(x, pool)` computes pool(bn(relu(conv(x)))) for any max-type `pool` without
        running relu and batch norm at full resolution: bn and relu are monotone per channel,
        so the max of bn(relu(z)) is bn(relu(max z)) where the bn scale is >= 0 and
        bn(relu(min z)) where it is negative; min z is taken as -max(-z) by negating those
        channels' conv weights (exact in floating point). Same values, a fraction of the work.
        """

        def __init__(self, conv: nn.Module, n: int):
            super().__init__()
            self.conv = conv
            self.bn = TFBatchNorm(n)

        def forward(self, x):
            return self.bn(F.relu(self.conv(x)))

        def pooled(self, x, pool, conv=None):
            scale, shift = self.bn.affine()
            sign = torch.where(scale < 0, -1.0, 1.0)
            w = self.conv.weight * sign.view((-1,) + (1,) * (self.conv.weight.dim() - 1))
            z = (conv or self._conv)(x, w, self.conv.bias * sign)
            m = pool(z)
            shape = (1, -1) + (1,) * (m.dim() - 2)
            return F.relu(m * sign.view(shape)) * scale.view(shape) + shift.view(shape)

        def _conv(self, x, w, b):
            if isinstance(self.conv, nn.Conv1d):
                return F.conv1d(x, w, b, padding=self.conv.padding)
            return F.conv2d(x, w, b, padding=self.conv.padding)

    def freq_max(z):  # [B, C, T, F] -> [B, C, T]
        return z.amax(dim=3)

    class MusicnnNet(nn.Module):
        """models.build_musicnn (num_filt_frontend 1.6, mid end 64, back end 200)."""

        arch = "musicnn"

        def __init__(self, n_classes: int = 50):
            super().__init__()
            self.bn_input = TFBatchNorm(1)
            self.timbral74 = ConvBN(nn.Conv2d(1, 204, (7, int(0.4 * N_MELS))), 204)
            self.timbral77 = ConvBN(nn.Conv2d(1, 204, (7, int(0.7 * N_MELS))), 204)
            self.temporal128 = ConvBN(nn.Conv2d(1, 51, (128, 1)), 51)
            self.temporal64 = ConvBN(nn.Conv2d(1, 51, (64, 1)), 51)
            self.temporal32 = ConvBN(nn.Conv2d(1, 51, (32, 1)), 51)
            self.mid1 = ConvBN(nn.Conv1d(561, 64, 7), 64)
            self.mid2 = ConvBN(nn.Conv1d(64, 64, 7), 64)
            self.mid3 = ConvBN(nn.Conv1d(64, 64, 7), 64)
            self.bn_pool = TFBatchNorm(1506)
            self.dense = nn.Linear(1506, 200)
            self.bn_dense = TFBatchNorm(200)
            self.out = nn.Linear(200, n_classes)

        def forward(self, x) -> dict:
            """x [B, 187, 96] log-mel patches -> dict of layers (see module docstring)."""
            b, t, f = x.shape
            h = self.bn_input(x.unsqueeze(1))  # [B, 1, T, F]
            # timbral: pad time only ('same' in time), 'valid' over frequency, max over frequency
            timbral_in = F.pad(h, (0, 0, 3, 3))
            front = [self.timbral74.pooled(timbral_in, freq_max),
                     self.timbral77.pooled(timbral_in, freq_max)]
            # temporal: [k, 1] kernels run as 1-d convs over time with frequency folded into
            # the batch; TF 'same' padding puts (k - 1) // 2 frames before, k // 2 after
            per_freq = h[:, 0].transpose(1, 2).reshape(b * f, 1, t)
            for k, block in ((128, self.temporal128), (64, self.temporal64), (32, self.temporal32)):
                front.append(block.pooled(
                    F.pad(per_freq, ((k - 1) // 2, k // 2)),
                    lambda z: z.view(b, f, z.shape[1], t).amax(dim=1).unsqueeze(-1),
                    conv=lambda xx, w, bias: F.conv1d(xx, w[..., 0], bias),
                ).squeeze(-1))
            front_t = torch.cat(front, dim=1)  # [B, 561, T]
            m1 = self.mid1(F.pad(front_t, (3, 3)))
            m2 = self.mid2(F.pad(m1, (3, 3))) + m1
            m3 = self.mid3(F.pad(m2, (3, 3))) + m2
            feats = torch.cat([front_t, m1, m2, m3], dim=1)  # [B, 753, T]
            max_pool = feats.amax(dim=2)
            mean_pool = feats.mean(dim=2)
            flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten order
            pool = self.bn_pool(flat)
            penultimate = self.bn_dense(F.relu(self.dense(pool)))
            logits = self.out(penultimate)
            return {"pool": pool, "penultimate": penultimate, "mean_pool": mean_pool,
                    "max_pool": max_pool, "taggram": torch.sigmoid(logits)}

    class VggNet(nn.Module):
        """models.vgg with 128 filters."""

        arch = "vgg"

        def __init__(self, n_classes: int = 50, n_filters: int = 128):
            super().__init__()
            self.bn_input = TFBatchNorm(1)
            for i in range(1, 6):
                cin = 1 if i == 1 else n_filters
                setattr(self, f"block{i}", ConvBN(nn.Conv2d(cin, n_filters, 3, padding=1), n_filters))
            # TF max_pooling2d, 'valid' padding: (pool size, strides) after each block
            self.pools = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)),
                          ((4, 4), (4, 4))]
            self.out = nn.Linear(2 * 1 * n_filters, n_classes)

        def forward(self, x) -> dict:
            """x [B, 187, 96] log-mel patches -> dict of layers (see module docstring)."""
            h = self.bn_input(x.unsqueeze(1))
            # pool1 is [4, 1] with strides [2, 2]: it keeps only even frequency columns, so
            # conv1 is evaluated there only (frequency stride 2), then pooled over time
            h = self.block1.pooled(
                h, lambda z: F.max_pool2d(z, (4, 1), (2, 1)),
                conv=lambda xx, w, bias: F.conv2d(xx, w, bias, padding=1, stride=(1, 2)))
            for i, (size, stride) in enumerate(self.pools[1:], start=2):
                h = getattr(self, f"block{i}").pooled(
                    h, lambda z, size=size, stride=stride: F.max_pool2d(z, size, stride))
            pool5 = h.permute(0, 2, 3, 1)  # [B, 2, 1, 128], TF NHWC layout
            logits = self.out(pool5.flatten(1))
            return {"pool5_map": pool5, "pool5": pool5.mean(dim=(1, 2)),
                    "taggram": torch.sigmoid(logits)}

    return MusicnnNet, VggNet


def build_net(arch: str):
    """An uninitialised (random-weight) torch module for `arch` ('musicnn' or 'vgg')."""
    musicnn_cls, vgg_cls = _nets()
    return {"musicnn": musicnn_cls, "vgg": vgg_cls}[arch]()


_net_cache: dict[str, tuple] = {}
_net_lock = threading.Lock()


_plan_cache: dict[tuple[str, str], object] = {}


def clear_cache() -> None:
    """Forget the loaded networks (the next load reads the converted weights again)."""
    with _net_lock:
        _net_cache.clear()
        _plan_cache.clear()


def load_net(checkpoint: str, data_dir: Path):
    """(torch module in eval mode, mel filterbank tensor) for a checkpoint; converts on first use.

    Shared by every variant of the same checkpoint and data folder.
    """
    path = converted_path(Path(data_dir), checkpoint)
    key = str(path)
    with _net_lock:
        if key in _net_cache:
            return _net_cache[key]
        if not path.exists():
            convert(checkpoint, Path(data_dir))
        import torch

        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("format") != FORMAT_VERSION or payload.get("checkpoint") != checkpoint:
                raise ValueError("not a converted model of this checkpoint")
            net = build_net(checkpoint.split("_", 1)[1])
            net.load_state_dict(payload["state_dict"], strict=True)
        except Exception as exc:  # corrupt or foreign file: say which and how to fix
            raise EmbedderError(f"cannot read converted weights {path} ({exc.__class__.__name__}); "
                                "delete the file to convert again") from exc
        net.eval()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        net.to(device)
        entry = (net, payload["mel_fb"].to(device))
        _net_cache[key] = entry
        return entry


# ---------------------------------------------------------------- CPU inference plans

PRECISIONS = ("fp32", "bf16")
FREQ_BLOCKS = (4, 4)  # timbral convs (7x38, 7x67): output frequencies per row of the Toeplitz GEMM
TIME_BLOCKS = (16, 16, 16)  # temporal convs (128, 64, 32 frames): output frames per row


def _mkldnn_ops():
    """torch.ops.mkldnn (oneDNN primitives with prepacked weights, as torch.compile uses them), or None."""
    import torch

    try:
        ops = torch.ops.mkldnn
        if torch.backends.mkldnn.is_available() and all(
                hasattr(ops, n) for n in ("_linear_pointwise", "_reorder_linear_weight",
                                          "_convolution_pointwise", "_reorder_convolution_weight")):
            return ops
    except (AttributeError, RuntimeError):
        pass
    return None


@functools.lru_cache(maxsize=None)
def _plans():
    """The CPU plan classes (torch imported lazily).

    A plan computes exactly what MusicnnNet / VggNet compute (same layers, same keys), with
    the same arithmetic up to float rounding, but organised for a CPU:
    - every convolution is one oneDNN matrix product with weights reordered once at load
      (torch's own conv path reorders weights, and MKL's sgemm is slow on AMD CPUs);
    - MusiCNN's timbral convs (1 input channel, 7 x 38 / 7 x 67 kernels, max over frequency)
      run as a block-Toeplitz product: each row holds 7 frames x (fb + K - 1) bins and
      yields fb (FREQ_BLOCKS) neighbouring output frequencies for all 204 filters (4-8 % more
      multiply-adds than the direct conv, but one large well-shaped GEMM);
    - the temporal convs ([k, 1] kernels over time, per frequency) likewise yield tb
      (TIME_BLOCKS) frames per row;
    - the mid end runs time-major, its 7-tap convs as one product over 7 x C columns;
    - VGG's 3 x 3 convs run channels-last with prepacked weights (oneDNN brgconv);
    - batch norms, relus and the sign trick of ConvBN.pooled act on pooled maps only.
    With dtype bfloat16 the products (and the maps between them) are bfloat16 (fp32
    accumulation inside oneDNN); batch norms, pooling over time and dense layers stay fp32.
    """
    import torch
    import torch.nn.functional as F

    ops = _mkldnn_ops()

    class Gemm:
        """x [M, K] -> x @ w.T + b, w [N, K] prepacked for oneDNN when it is available."""

        def __init__(self, w, b, dtype):
            w, self.b = w.to(dtype).contiguous(), b.to(dtype).contiguous()
            self.w = ops._reorder_linear_weight(w) if ops is not None else w

        def __call__(self, x):
            if ops is not None:
                return ops._linear_pointwise(x, self.w, self.b, "none", [], "")
            return F.linear(x, self.w, self.b)

    class Conv:
        """2-d convolution (channels-last, prepacked weights when oneDNN is available)."""

        def __init__(self, w, b, dtype, padding, stride):
            self.padding, self.stride = list(padding), list(stride)
            w, self.b = w.to(dtype).contiguous(), b.to(dtype).contiguous()
            self.w = (ops._reorder_convolution_weight(w, self.padding, self.stride, [1, 1], 1)
                      if ops is not None else w)

        def __call__(self, x):
            if ops is not None:
                return ops._convolution_pointwise(x, self.w, self.b, self.padding, self.stride,
                                                  [1, 1], 1, "none", [], "")
            return F.conv2d(x, self.w, self.b, padding=self.padding, stride=self.stride)

    def signed(block):
        """ConvBN's pooled form: (weight * sign, bias * sign, sign, bn scale, bn shift)."""
        scale, shift = block.bn.affine()
        sign = torch.where(scale < 0, -1.0, 1.0)
        w = block.conv.weight * sign.view((-1,) + (1,) * (block.conv.weight.dim() - 1))
        return w, block.conv.bias * sign, sign, scale, shift

    class PooledBN:
        """bn(relu(.)) of a max-pooled signed conv output, channels on the last axis (fp32)."""

        def __init__(self, sign, scale, shift):
            self.sign, self.scale, self.shift = sign, scale, shift

        def __call__(self, m):
            return torch.relu(m.float() * self.sign) * self.scale + self.shift

    class MusicnnPlan:
        arch = "musicnn"

        def __init__(self, net, dtype):
            self.dtype = dtype
            self.in_scale, self.in_shift = (float(v) for v in net.bn_input.affine())
            self.timbral = []
            for block, fb in zip((net.timbral74, net.timbral77), FREQ_BLOCKS):
                w, b, sign, scale, shift = signed(block)  # w [204, 1, 7, K]
                n_out, _, kt, k = w.shape
                f_out = N_MELS - k + 1
                n_blocks = -(-f_out // fb)
                k_row = fb + k - 1
                wt = w.new_zeros(fb, n_out, kt, k_row)
                for j in range(fb):
                    wt[j, :, :, j:j + k] = w[:, 0]
                self.timbral.append(dict(
                    gemm=Gemm(wt.reshape(fb * n_out, kt * k_row), b.repeat(fb), dtype),
                    bn=PooledBN(sign, scale, shift), kt=kt, k_row=k_row, f_out=f_out, n_blocks=n_blocks,
                    fb=fb, width=(n_blocks - 1) * fb + k_row, n_out=n_out))
            self.temporal = []
            for block, tb in zip((net.temporal128, net.temporal64, net.temporal32), TIME_BLOCKS):
                w, b, sign, scale, shift = signed(block)  # w [51, 1, k, 1]
                n_out, k = w.shape[0], w.shape[2]
                n_blocks = -(-PATCH_FRAMES // tb)
                k_row = tb + k - 1
                wt = w.new_zeros(tb, n_out, k_row)
                for j in range(tb):
                    wt[j, :, j:j + k] = w[:, 0, :, 0]
                self.temporal.append(dict(
                    gemm=Gemm(wt.reshape(tb * n_out, k_row), b.repeat(tb), dtype),
                    bn=PooledBN(sign, scale, shift), before=(k - 1) // 2, k_row=k_row, n_blocks=n_blocks,
                    tb=tb, length=(n_blocks - 1) * tb + k_row, n_out=n_out))
            self.mid = []
            for block in (net.mid1, net.mid2, net.mid3):
                scale, shift = block.bn.affine()
                w = block.conv.weight  # [64, C, 7] -> [64, 7 * C] (tap-major, like the time-major input)
                gemm = Gemm(w.permute(0, 2, 1).reshape(w.shape[0], -1), block.conv.bias, dtype)
                self.mid.append(dict(gemm=gemm, scale=scale, shift=shift, k=w.shape[2]))
            self.bn_pool, self.dense, self.bn_dense, self.out = net.bn_pool, net.dense, net.bn_dense, net.out

        def __call__(self, x):
            """x [B, 187, 96] float32 -> the dict of MusicnnNet.forward."""
            b, t, f = x.shape
            h = (x * self.in_scale + self.in_shift).to(self.dtype)
            front = []
            for d in self.timbral:
                w = d["width"]
                hp = F.pad(h, (0, w - f, d["kt"] // 2, d["kt"] // 2)).contiguous()  # [B, T + 6, W]
                rows = hp.as_strided((b, t, d["n_blocks"], d["kt"], d["k_row"]),
                                     ((t + d["kt"] - 1) * w, w, d["fb"], w, 1))
                z = d["gemm"](rows.reshape(-1, d["kt"] * d["k_row"]))
                z = z.view(b, t, d["n_blocks"] * d["fb"], d["n_out"])[:, :, :d["f_out"]]
                # max over frequency; max_pool2d's channels-last kernel beats amax(dim=2) here
                z = F.max_pool2d(z.permute(0, 3, 1, 2), (1, d["f_out"]))  # [B, 204, T, 1]
                front.append(d["bn"](z[..., 0].transpose(1, 2)))  # [B, T, 204]
            per_freq = h.transpose(1, 2)  # [B, F, T]
            for d in self.temporal:
                n = d["length"]
                hp = F.pad(per_freq, (d["before"], n - t - d["before"])).contiguous()  # [B, F, L]
                rows = hp.as_strided((b, f, d["n_blocks"], d["k_row"]), (f * n, n, d["tb"], 1))
                z = d["gemm"](rows.reshape(-1, d["k_row"]))
                z = z.view(b, f, d["n_blocks"] * d["tb"], d["n_out"]).amax(dim=1)[:, :t]
                front.append(d["bn"](z))  # [B, T, 51]
            front_t = torch.cat(front, dim=2)  # [B, T, 561], time-major
            feats, prev = [front_t], front_t
            for i, d in enumerate(self.mid):
                c, k = prev.shape[2], d["k"]
                xp = F.pad(prev.to(self.dtype), (0, 0, k // 2, k // 2)).contiguous()  # [B, T + 6, C]
                rows = xp.as_strided((b, t, k * c), ((t + k - 1) * c, c, 1))  # 7 frames per row
                y = torch.relu(d["gemm"](rows.reshape(-1, k * c)).float()).view(b, t, -1)
                y = y * d["scale"] + d["shift"]
                prev = y + prev if i else y
                feats.append(prev)
            feats = torch.cat(feats, dim=2)  # [B, T, 753]
            max_pool = feats.amax(dim=1)
            mean_pool = feats.mean(dim=1)
            flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF flatten order
            pool = self.bn_pool(flat)
            penultimate = self.bn_dense(torch.relu(self.dense(pool)))
            return {"pool": pool, "penultimate": penultimate, "mean_pool": mean_pool,
                    "max_pool": max_pool, "taggram": torch.sigmoid(self.out(penultimate))}

    class VggPlan:
        arch = "vgg"

        def __init__(self, net, dtype):
            self.dtype = dtype
            self.in_scale, self.in_shift = (float(v) for v in net.bn_input.affine())
            pools = [((4, 1), (2, 1))] + list(net.pools[1:])  # conv1 runs at frequency stride 2
            self.blocks = []
            for i, (size, stride) in enumerate(pools, start=1):
                w, b, sign, scale, shift = signed(getattr(net, f"block{i}"))
                shape = (1, -1, 1, 1)
                self.blocks.append((Conv(w, b, dtype, (1, 1), (1, 2) if i == 1 else (1, 1)), size, stride,
                                    sign.view(shape), scale.view(shape), shift.view(shape)))
            self.out = net.out

        def __call__(self, x):
            """x [B, 187, 96] float32 -> the dict of VggNet.forward."""
            h = (x * self.in_scale + self.in_shift).to(self.dtype).unsqueeze(1)
            for conv, size, stride, sign, scale, shift in self.blocks:
                m = F.max_pool2d(conv(h.contiguous(memory_format=torch.channels_last)), size, stride)
                h = (torch.relu(m.float() * sign) * scale + shift).to(self.dtype)
            pool5 = h.float().permute(0, 2, 3, 1).contiguous()  # [B, 2, 1, 128], TF NHWC layout
            logits = self.out(pool5.flatten(1))
            return {"pool5_map": pool5, "pool5": pool5.mean(dim=(1, 2)), "taggram": torch.sigmoid(logits)}

    return {"musicnn": MusicnnPlan, "vgg": VggPlan}


def build_plan(net, precision: str = "fp32"):
    """A CPU plan of a loaded network (see `_plans`); checked against the network itself.

    Returns None (the caller then runs the torch module) when the plan cannot be built or
    disagrees with the module: fp32 plans must match it to 1e-4 on the taggram.
    """
    import warnings

    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    try:
        with torch.inference_mode():
            plan = _plans()[net.arch](net, dtype)
            x = torch.rand(2, PATCH_FRAMES, N_MELS, generator=torch.Generator().manual_seed(0)) * 4
            got, want = plan(x)["taggram"], net(x)["taggram"]
        err = float((got - want).abs().max())
        tol = 1e-4 if precision == "fp32" else 0.05
        if not err <= tol:
            raise RuntimeError(f"taggram differs by {err:.2g} from the module")
    except Exception as exc:  # pragma: no cover - depends on the torch build
        warnings.warn(f"musicnn: {precision} CPU plan for {net.arch} unavailable ({exc}); "
                      "running the plain torch module", RuntimeWarning, stacklevel=2)
        if precision == "fp32":
            return None
        raise EmbedderError(f"bfloat16 inference is not available here ({exc})") from exc
    return plan


def load_plan(checkpoint: str, data_dir: Path, precision: str = "fp32"):
    """The cached CPU plan of a checkpoint (None on CUDA, or where only the module runs)."""
    net, mel_fb = load_net(checkpoint, data_dir)
    if mel_fb.device.type != "cpu":
        return None
    key = (str(converted_path(Path(data_dir), checkpoint)), precision)
    with _net_lock:
        if key not in _plan_cache:
            _plan_cache[key] = build_plan(net, precision)
        return _plan_cache[key]


_pool_lock = threading.Lock()
_pool: tuple | None = None  # (n_workers, process id, ThreadPoolExecutor)


def cpu_workers(n: int):
    """A pool of `n` threads whose torch ops each run on one intra-op thread (None if n < 2).

    Patches are independent, so n workers with one thread each use n cores without the
    per-op fork/join of intra-op parallelism; on a busy machine (more runnable threads than
    cores) that join makes every op wait for its slowest, descheduled thread.
    `torch.set_num_threads(1)` in a worker sets that thread's own OpenMP/MKL thread count;
    the default it also records for threads started later is put back right away, so other
    threads of the process keep their settings.
    """
    global _pool
    if n < 2:
        return None
    with _pool_lock:
        if _pool is not None and _pool[:2] == (n, os.getpid()):
            return _pool[2]
        from concurrent.futures import ThreadPoolExecutor

        import torch

        def one_thread():
            torch.get_num_threads()  # torch's lazy per-thread init first: it would undo the next line
            torch.set_num_threads(1)

        ex = ThreadPoolExecutor(n, thread_name_prefix="musicnn", initializer=one_thread)
        barrier = threading.Barrier(n + 1)
        for _ in range(n):  # start all n workers now (each runs the initializer once)
            ex.submit(barrier.wait)
        barrier.wait()
        restore = threading.Thread(target=torch.set_num_threads, args=(torch.get_num_threads(),))
        restore.start()
        restore.join()
        if _pool is not None and _pool[1] == os.getpid():  # (a forked child has no workers to stop)
            _pool[2].shutdown(wait=False)
        _pool = (n, os.getpid(), ex)
        return ex


# ---------------------------------------------------------------- front end

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
    """

    family = FAMILY
    sample_rate = SAMPLE_RATE

    def __init__(self, variant: Variant, data_dir: Path, hop_frames: int = PATCH_FRAMES,
                 precision: str | None = None):
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
        self.net, self.mel_fb = load_net(variant.checkpoint, Path(data_dir))
        self.plan = load_plan(variant.checkpoint, Path(data_dir), self.precision)

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
        vectors, tags = out[self.layer], out["taggram"]
        frames, start = [], 0
        for n in counts:
            frames.append(Frames(times_s=self._times(n),
                                 vectors=np.ascontiguousarray(vectors[start:start + n], np.float32),
                                 tags=np.ascontiguousarray(tags[start:start + n], np.float32)))
            start += n
        return frames


# ---------------------------------------------------------------- registry

def _check(variant: Variant, data_dir: Path) -> Availability:
    data_dir = Path(data_dir)
    common = dict(name=variant.name, family=FAMILY, dim=variant.dim, description=variant.description)
    if converted_path(data_dir, variant.checkpoint).exists():
        return Availability(status="ready", **common)
    reason = _source_available(data_dir)
    if reason and "weights not found" in reason and _may_fetch_wheel() and importlib.util.find_spec("tensorflow"):
        return Availability(status="downloadable", reason=f"weights are fetched on first use (`pip download "
                                                         f"--no-deps {WHEEL}`), then converted once", **common)
    if reason:
        return Availability(status="unavailable", reason=reason, **common)
    return Availability(status="ready", **common)  # converted on first load


def _spec(variant: Variant) -> ModelSpec:
    return ModelSpec(
        listed=variant.precision == "fp32",
        name=variant.name,
        family=FAMILY,
        description=variant.description,
        dim=variant.dim,
        build=lambda data_dir, v=variant, **kw: MusicnnEmbedder(v, Path(data_dir), **kw),
        check=lambda data_dir, v=variant: _check(v, Path(data_dir)),
        extra={"checkpoint": variant.checkpoint, "layer": variant.layer, "sample_rate": SAMPLE_RATE,
               "frame_hop_s": PATCH_S, "n_tags": 50, "precision": variant.precision},
    )


def specs(data_dir: Path) -> list[ModelSpec]:
    """Models of this family (cheap: imports neither torch nor TensorFlow)."""
    return [_spec(v) for v in (*VARIANTS.values(), *BF16_VARIANTS.values())]
