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
"""
from __future__ import annotations

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
MAX_BATCH_PATCHES = 16  # patches per forward pass (bounds memory: ~0.1 GB per MusiCNN patch)
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


def clear_cache() -> None:
    """Forget the loaded networks (the next load reads the converted weights again)."""
    with _net_lock:
        _net_cache.clear()


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

    Runs on CUDA when available, else on CPU with torch's default intra-op threads (one per
    physical core; this module does not change process-wide torch settings). Patches of all
    waves given to `embed_frames_batch` share forward passes of up to MAX_BATCH_PATCHES.
    `hop_frames` < 187 gives overlapping patches (frame_hop_s = hop_frames * 256 / 16000).
    """

    family = FAMILY
    sample_rate = SAMPLE_RATE

    def __init__(self, variant: Variant, data_dir: Path, hop_frames: int = PATCH_FRAMES):
        if not 1 <= hop_frames <= PATCH_FRAMES:
            raise ValueError(f"hop_frames must be in 1..{PATCH_FRAMES}")
        self.variant = variant
        self.name = variant.name
        self.description = variant.description
        self.dim = variant.dim
        self.layer = variant.layer
        self.tag_names = variant.tag_names
        self.hop_frames = hop_frames
        self.frame_hop_s = hop_frames * HOP_LENGTH / SAMPLE_RATE
        self.net, self.mel_fb = load_net(variant.checkpoint, Path(data_dir))

    def patches(self, wave: np.ndarray) -> "torch.Tensor":
        """[n_patches, 187, 96] log-mel patches of one wave (the network's input)."""
        return make_patches(log_mel(wave, self.mel_fb), self.hop_frames)

    def forward_patches(self, patches) -> dict[str, np.ndarray]:
        """All layers for [n, 187, 96] log-mel patches, in chunks of MAX_BATCH_PATCHES."""
        import torch

        x = torch.as_tensor(patches, dtype=torch.float32, device=self.mel_fb.device)
        outs: dict[str, list] = {}
        with torch.inference_mode():
            for i in range(0, x.shape[0], MAX_BATCH_PATCHES):
                for k, v in self.net(x[i:i + MAX_BATCH_PATCHES]).items():
                    outs.setdefault(k, []).append(v.float().cpu().numpy())
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
        with torch.inference_mode():
            per_wave = [self.patches(w) for w in waves]
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
    if reason:
        return Availability(status="unavailable", reason=reason, **common)
    return Availability(status="ready", **common)  # converted on first load


def _spec(variant: Variant) -> ModelSpec:
    return ModelSpec(
        name=variant.name,
        family=FAMILY,
        description=variant.description,
        dim=variant.dim,
        build=lambda data_dir, v=variant, **kw: MusicnnEmbedder(v, Path(data_dir), **kw),
        check=lambda data_dir, v=variant: _check(v, Path(data_dir)),
        extra={"checkpoint": variant.checkpoint, "layer": variant.layer, "sample_rate": SAMPLE_RATE,
               "frame_hop_s": PATCH_S, "n_tags": 50},
    )


def specs(data_dir: Path) -> list[ModelSpec]:
    """Models of this family (cheap: imports neither torch nor TensorFlow)."""
    return [_spec(v) for v in VARIANTS.values()]
