"""Self-supervised library embedder: a compact CNN over log-mel patches trained with SimCLR (NT-Xent).

No labels are used. Two views of each clip are made by audio augmentations on the log-mel
spectrogram, and the network learns to tell which views come from the same clip:

* random crop of ~1.1 s at a random offset (short clips land at a random time: time shift),
* random time stretch and pitch shift (one affine resampling of the mel image),
* gain (a constant in the log domain) and a random equaliser (spectral tilt and one band),
* mixing with a background: another clip of the batch added at a random level (in linear power),
* SpecAugment: one frequency band and one time span masked.

The embedding is the pooled encoder output (before the projection head; centring it by the
mean training feature was measured and lowered retrieval precision): frames are ~1.1 s
windows every ~0.56 s, the clip vector their mean.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import common
from .common import (EpochLoop, EpochResult, Log, Progress, TrainConfig, TrainResult, TrainingError)

KIND = "selfsup"
PREFIX = "ssl-"
ITEM_MAX_S = 5.0  # long files are cut into items of at most this length


@dataclass
class SelfSupConfig(TrainConfig):
    """Options of the self-supervised trainer."""

    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 128  # clips per step (two views each)
    patience: int = 15
    weight_decay: float = 1e-4
    crop_frames: int = 96  # 1.11 s views and embedding windows
    hop_frames: int = 48  # embedding frame hop (0.56 s)
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    convs_per_block: int = 1
    feature_dim: int = 256  # embedding size: mean and max pooling of feature_dim // 2 features
    proj_dim: int = 128
    temperature: float = 0.2
    mix_max: float = 0.2  # background level (linear power ratio) drawn from U(0, mix_max)
    gain_db: float = 6.0
    eq_db: float = 6.0  # random equalisation: a spectral tilt and one band boost/cut of up to this many dB
    stretch: float = 0.2  # time stretch factor in [1 - s, 1 + s]
    pitch_bins: float = 4.0  # mel-bin shift in [-p, p]
    freq_mask: int = 6
    time_mask: int = 8
    val_fraction: float = 0.1


# ----------------------------------------------------------------------------- the network

class ConvBlock(nn.Module):
    """(conv3x3 - BN - ReLU) x n_convs, then maxpool 2x2."""

    def __init__(self, c_in: int, c_out: int, n_convs: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        for j in range(n_convs):
            layers += [nn.Conv2d(c_in if j == 0 else c_out, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers, nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """[B, n_mels, T] normalised log-mel -> [B, feature_dim] pooled features.

    Conv blocks halve frequency and time; the remaining frequency rows and channels are
    flattened per time step and mixed by a linear layer (BYOL-A style), then mean and max
    pooling over time are concatenated.
    """

    def __init__(self, n_mels: int, widths: Sequence[int], feature_dim: int, n_convs: int = 1):
        super().__init__()
        chans = [1, *widths]
        self.blocks = nn.Sequential(*[ConvBlock(a, b, n_convs) for a, b in zip(chans[:-1], chans[1:])])
        f_out = n_mels // (2 ** len(widths))
        self.fc = nn.Sequential(nn.Linear(widths[-1] * f_out, feature_dim // 2), nn.ReLU(inplace=True))
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x.unsqueeze(1))  # [B, C, F', T']
        b, c, f, t = h.shape
        h = self.fc(h.permute(0, 3, 1, 2).reshape(b, t, c * f))  # [B, T', D/2]
        return torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)


class SimCLR(nn.Module):
    """Encoder + projection head (the head is used for the loss only)."""

    def __init__(self, cfg: SelfSupConfig):
        super().__init__()
        self.encoder = Encoder(common.N_MELS, cfg.widths, cfg.feature_dim, cfg.convs_per_block)
        self.head = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.feature_dim), nn.ReLU(inplace=True),
                                  nn.Linear(cfg.feature_dim, cfg.proj_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        return feats, self.head(feats)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for 2B projections where rows i and i+B are two views of one clip."""
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    b = n // 2
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, n), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


# ----------------------------------------------------------------------------- augmentation

class Views:
    """Makes augmented views of spectrogram items (items = (spectrogram index, start, end) columns)."""

    def __init__(self, mels: Sequence[np.ndarray], items: Sequence[tuple[int, int, int]], cfg: SelfSupConfig,
                 mean: float, std: float, device: torch.device):
        self.mels, self.items, self.cfg = mels, list(items), cfg
        self.mean, self.std, self.device = mean, std, device
        self.silence = common.silence_value()
        self.canvas = int(round(cfg.crop_frames * (1 + cfg.stretch) + 2))

    def _canvas(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A raw log-mel canvas [F, canvas] from item i at a random offset (short items at a random place)."""
        m_idx, a, b = self.items[i]
        mel = self.mels[m_idx][:, a:b]
        n, c = mel.shape[1], self.canvas
        out = np.full((mel.shape[0], c), self.silence, np.float32)
        if n >= c:
            s = int(rng.integers(0, n - c + 1))
            out[:] = mel[:, s:s + c]
        else:
            # the short clip goes somewhere inside the view's centre part (random time shift)
            lo = max(0, (c - self.cfg.crop_frames) // 2 - n // 2)
            hi = max(lo, (c + self.cfg.crop_frames) // 2 - n // 2)
            s = int(rng.integers(lo, hi + 1)) if hi > lo else lo
            s = min(s, c - n)
            out[:, s:s + n] = mel
        return out

    def make(self, idx: np.ndarray, rng: np.random.Generator, augment: bool = True) -> torch.Tensor:
        """[2B, n_mels, crop_frames] normalised views: rows i and i+B come from item idx[i]."""
        cfg = self.cfg
        canv = np.stack([self._canvas(int(i), rng) for i in idx] +
                        [self._canvas(int(i), rng) for i in idx])  # [2B, F, C]
        x = torch.from_numpy(canv).to(self.device)
        n = x.shape[0]
        if augment:
            # background mix (linear power), before anything else changes the level
            lam = torch.from_numpy(rng.uniform(0, cfg.mix_max, n).astype(np.float32)).to(self.device)
            perm = torch.from_numpy(rng.permutation(n)).to(self.device)
            x = torch.logaddexp(x, x[perm] + torch.log(lam.clamp_min(1e-6))[:, None, None])
            # gain
            g = rng.uniform(-1, 1, n) * cfg.gain_db * math.log(10) / 10
            x = x + torch.from_numpy(g.astype(np.float32)).to(self.device)[:, None, None]
            if cfg.eq_db > 0:
                x = x + torch.from_numpy(_random_eq(n, x.shape[1], cfg.eq_db, rng)).to(self.device)[:, :, None]
        x = (x - self.mean) / self.std
        # crop + time stretch + pitch shift in one affine resampling
        c, t_out = x.shape[2], cfg.crop_frames
        st = rng.uniform(1 - cfg.stretch, 1 + cfg.stretch, n) if augment else np.ones(n)
        span = t_out * st / c  # fraction of the canvas each view covers
        centre = rng.uniform(-1 + span, 1 - span, n) if augment else np.zeros(n)
        shift = rng.uniform(-cfg.pitch_bins, cfg.pitch_bins, n) * 2 / x.shape[1] if augment else np.zeros(n)
        theta = np.zeros((n, 2, 3), np.float32)
        theta[:, 0, 0] = span
        theta[:, 0, 2] = centre
        theta[:, 1, 1] = 1.0
        theta[:, 1, 2] = shift
        grid = F.affine_grid(torch.from_numpy(theta).to(self.device), (n, 1, x.shape[1], t_out),
                             align_corners=False)
        x = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                          align_corners=False).squeeze(1)
        if augment:
            x = _spec_augment(x, cfg.freq_mask, cfg.time_mask, rng)
        return x.contiguous()


def _random_eq(n: int, n_mels: int, eq_db: float, rng: np.random.Generator) -> np.ndarray:
    """[n, n_mels] log-power offsets of random equalisers: a tilt across the band plus one bell-shaped
    boost or cut (a different microphone, room or recording chain)."""
    f = np.linspace(-1, 1, n_mels)[None, :]
    tilt = rng.uniform(-0.5, 0.5, (n, 1)) * eq_db * f
    centre = rng.uniform(-1, 1, (n, 1))
    width = rng.uniform(0.1, 0.4, (n, 1))
    bell = rng.uniform(-1, 1, (n, 1)) * eq_db * np.exp(-0.5 * ((f - centre) / width) ** 2)
    return ((tilt + bell) * math.log(10) / 10).astype(np.float32)


def _spec_augment(x: torch.Tensor, f_mask: int, t_mask: int, rng: np.random.Generator) -> torch.Tensor:
    """One frequency and one time mask per view (set to 0, the normalised mean)."""
    n, f, t = x.shape
    x = x.clone()
    for i in range(n):
        if f_mask > 0:
            w = int(rng.integers(0, f_mask + 1))
            s = int(rng.integers(0, f - w + 1))
            x[i, s:s + w, :] = 0.0
        if t_mask > 0:
            w = int(rng.integers(0, t_mask + 1))
            s = int(rng.integers(0, t - w + 1))
            x[i, :, s:s + w] = 0.0
    return x


def make_items(mels: Sequence[np.ndarray], max_s: float = ITEM_MAX_S) -> list[tuple[int, int, int]]:
    """Training items: each spectrogram whole, or cut into pieces of at most `max_s` seconds."""
    step = max(1, int(round(max_s * common.FRAMES_PER_S)))
    items = []
    for i, m in enumerate(mels):
        n = m.shape[1]
        for a in range(0, max(n, 1), step):
            b = min(n, a + step)
            if b - a >= 4 or a == 0:
                items.append((i, a, b))
    return items


# ----------------------------------------------------------------------------- embedding

def window_batch(mel: np.ndarray, crop: int, hop: int, mean: float, std: float) -> tuple[np.ndarray, int]:
    """[n, n_mels, crop] normalised windows of a raw log-mel, and n."""
    mel = common.pad_to(mel, crop, common.silence_value())
    starts = common.window_starts(mel.shape[1], crop, hop)
    wins = np.stack([mel[:, s:s + crop] for s in starts])
    return (wins - mean) / std, len(starts)


@torch.no_grad()
def encode_mels(encoder: Encoder, mels: Sequence[np.ndarray], crop: int, hop: int, mean: float, std: float,
                device: torch.device, batch: int = 256) -> list[np.ndarray]:
    """Per-spectrogram [n_windows, feature_dim] encoder features (eval mode)."""
    encoder.eval()
    wins, counts = [], []
    for m in mels:
        w, n = window_batch(m, crop, hop, mean, std)
        wins.append(w)
        counts.append(n)
    allw = np.concatenate(wins) if wins else np.zeros((0, common.N_MELS, crop), np.float32)
    feats = []
    for i in range(0, len(allw), batch):
        feats.append(encoder(torch.from_numpy(allw[i:i + batch]).to(device)).cpu().numpy())
    f = np.concatenate(feats) if feats else np.zeros((0, encoder.feature_dim), np.float32)
    out, pos = [], 0
    for n in counts:
        out.append(f[pos:pos + n].astype(np.float32))
        pos += n
    return out


# ----------------------------------------------------------------------------- training

def config_from_meta(meta: dict) -> SelfSupConfig:
    """The config saved in a model's meta.json."""
    known = SelfSupConfig.__dataclass_fields__
    return SelfSupConfig(**{k: v for k, v in meta["config"].items() if k in known})


def build_model(cfg: SelfSupConfig) -> SimCLR:
    """A freshly initialised network for a config."""
    return SimCLR(cfg)


def train(mels: Sequence[np.ndarray], folder: Path, model_name: str, cfg: SelfSupConfig | None = None,
          resume: bool = False, progress: Progress | None = None, log: Log | None = None,
          source: dict | None = None) -> TrainResult:
    """Train (or resume) a SimCLR model on raw log-mel spectrograms; writes the model folder."""
    import time

    t_start = time.perf_counter()
    log = log or common.stderr_log
    if resume:
        meta = common.read_meta(folder)
        saved = config_from_meta(meta)
        saved.epochs, saved.device = (cfg.epochs if cfg else saved.epochs), (cfg.device if cfg else None)
        cfg = saved
        mean, std = meta["norm_mean"], meta["norm_std"]
    else:
        cfg = cfg or SelfSupConfig()
        mean, std = common.norm_stats(mels)
    if not mels:
        raise TrainingError("no audio to train on")
    device = common.pick_device(cfg.device)
    items = make_items(mels)
    if len(items) < 4:
        raise TrainingError(f"self-supervised training needs at least 4 clips (got {len(items)})")
    rng = common.seed_everything(cfg.seed)
    order = rng.permutation(len(items))
    n_val = max(2, int(round(cfg.val_fraction * len(items)))) if len(items) >= 20 else 2
    val_items = [items[i] for i in order[:n_val]]
    train_items = [items[i] for i in order[n_val:]] if len(items) - n_val >= 2 else items
    views = Views(mels, train_items, cfg, mean, std, device)
    val_views = Views(mels, val_items, cfg, mean, std, device)

    model = build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    meta = {"kind": KIND, "name": model_name, "state": "training", "dim": cfg.feature_dim,
            "sample_rate": common.SAMPLE_RATE, "hop": common.HOP, "n_mels": common.N_MELS, "n_fft": common.N_FFT,
            "fmin": common.FMIN, "fmax": common.FMAX,
            "frame_hop_s": cfg.hop_frames * common.HOP / common.SAMPLE_RATE,
            "window_s": cfg.crop_frames * common.HOP / common.SAMPLE_RATE,
            "norm_mean": mean, "norm_std": std, "config": asdict(cfg), "source": source or {},
            "n_items": len(items)}
    loop = EpochLoop(folder, model, opt, cfg, log=log)
    if resume:
        loop.restore()
        meta = {**common.read_meta(folder), "config": asdict(cfg), "state": "training"}
    common.write_json_atomic(folder / common.META_FILE, meta)
    n_train = len(train_items)
    bsz = max(2, min(cfg.batch_size, n_train))

    def save_best() -> None:
        common.save_tensors(folder / common.MODEL_FILE, {"encoder": common.cpu_state(model.encoder)})

    def step(epoch: int) -> EpochResult:
        erng = np.random.default_rng([cfg.seed, epoch])
        model.train()
        losses = []
        for idx in common.batches(n_train, bsz, erng, drop_last=True):
            if len(idx) < 2:
                continue
            x = views.make(idx, erng)
            _, z = model(x)
            loss = nt_xent(z, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return EpochResult(float(np.mean(losses)) if losses else float("nan"), val_loss())

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        vrng = np.random.default_rng([cfg.seed, 999])  # the same validation views every epoch
        out = []
        for idx in common.batches(len(val_items), bsz, vrng, shuffle=False):
            if len(idx) < 2:
                continue
            _, z = model(val_views.make(idx, vrng))
            out.append(float(nt_xent(z, cfg.temperature)))
        return float(np.mean(out)) if out else float("nan")

    loop.run(step, save_best, items_per_epoch=2 * (n_train // bsz) * bsz, progress=progress)

    # the embedder uses the best epoch's encoder (model.pt, written by save_best)
    meta.update({"state": "ready", "epochs": loop.epoch, "best_epoch": loop.best_epoch,
                 "best_val_loss": loop.best_loss,
                 "description": f"self-supervised CNN (SimCLR) trained here on library "
                                f"'{(source or {}).get('library', '?')}' ({len(items)} clips, epoch {loop.best_epoch})"})
    common.write_json_atomic(folder / common.META_FILE, meta)
    return TrainResult(model=model_name, kind=KIND, folder=str(folder), epochs_run=loop.epoch,
                       best_epoch=loop.best_epoch, best_val_loss=loop.best_loss, stopped_early=loop.stopped_early,
                       wall_s=time.perf_counter() - t_start, windows_per_s=loop.items_per_s,
                       history=loop.history, notes=[], metrics={})


class SelfSupModel:
    """A trained encoder ready to embed raw log-mel spectrograms."""

    def __init__(self, folder: Path, device: str | None = None):
        meta = common.read_meta(folder)
        self.meta = meta
        self.cfg = config_from_meta(meta)
        self.device = common.pick_device(device)
        state = common.load_tensors(folder / common.MODEL_FILE)
        self.encoder = Encoder(common.N_MELS, self.cfg.widths, self.cfg.feature_dim, self.cfg.convs_per_block)
        self.encoder.load_state_dict(state["encoder"])
        self.encoder.to(self.device).eval()

    def frames(self, mels: Sequence[np.ndarray]) -> list[np.ndarray]:
        """[n_windows, dim] pooled features per spectrogram."""
        return encode_mels(self.encoder, mels, self.cfg.crop_frames, self.cfg.hop_frames,
                           self.meta["norm_mean"], self.meta["norm_std"], self.device)
