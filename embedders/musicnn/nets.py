"""The torch modules of MusiCNN and VGG, and loading converted weights into them.

The port reproduces the original graph (`models.py` of the musicnn wheel, inference mode: batch norms use
their moving statistics with TF's epsilon 1e-3, dropout off). These modules are the readable
reference and the CUDA path; on CPU the embedder runs a plan of the same network (`plans`).
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import runtime
from ..base import EmbedderError
from . import weights
from .models import N_MELS
from .weights import BN_EPS, FORMAT_VERSION


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


def load_net(checkpoint: str, data_dir: Path):
    """(torch module in eval mode, mel filterbank tensor) for a checkpoint; converts on first use.

    Shared by every variant of the same checkpoint and data folder.
    """
    path = weights.converted_path(Path(data_dir), checkpoint)
    key = str(path)
    with _net_lock:
        if key in _net_cache:
            return _net_cache[key]
        if not path.exists():
            weights.convert(checkpoint, Path(data_dir))
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
        device = runtime.pick_device()
        net.to(device)
        entry = (net, payload["mel_fb"].to(device))
        _net_cache[key] = entry
        return entry


def load_finetuned(checkpoint: str, data_dir: Path, weights_file: Path):
    """(torch module in eval mode, mel filterbank) of a network fine-tuned from `checkpoint`: its
    architecture and front end, the weights saved in `weights_file` ({"net": state dict})."""
    import torch

    base, mel_fb = load_net(checkpoint, data_dir)
    try:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        net = build_net(base.arch)
        net.load_state_dict(state["net"], strict=True)
    except Exception as exc:  # corrupt or foreign file: say which
        raise EmbedderError(f"cannot read fine-tuned weights {weights_file} ({exc.__class__.__name__}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc
    return net.eval().to(mel_fb.device), mel_fb
