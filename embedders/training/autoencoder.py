"""Conditioned convolutional autoencoder with a 3-D latent over log-mel windows.

Each window is 64 mel bands x 32 frames (0.37 s), taken every 16 frames (0.19 s). The encoder
squeezes a window into 3 numbers; the decoder rebuilds the window from those 3 numbers and a
small context vector of the window (its loudness and spectral centroid), fed through FiLM
layers. Because level and brightness are given to the decoder, the 3-D latent is free to
describe the rest (texture, envelope, pitch pattern): it is meant to be looked at directly as
a 3-D map.

Non-convergence is checked, not assumed: after training, the reconstruction MSE of the
autoencoder on the windows is compared with that of PCA with 3 components fitted on the same
windows. If the autoencoder is not better, the model is saved with `fallback: pca3` and embeds
windows by their PCA-3 coordinates instead.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import common
from .common import EpochLoop, EpochResult, Log, Progress, TrainConfig, TrainResult, TrainingError

KIND = "autoencoder"
PREFIX = "ae-"
N_CONTEXT = 2  # loudness, spectral centroid


@dataclass
class AutoencoderConfig(TrainConfig):
    """Options of the autoencoder trainer."""

    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 128
    patience: int = 6
    window_frames: int = 32  # 0.37 s
    hop_frames: int = 16  # 0.19 s: the embedder's frame hop
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    hidden: int = 128
    latent_dim: int = 3
    val_fraction: float = 0.1
    epoch_windows: int = 50_000  # at most this many (random) windows per epoch
    min_epoch_windows: int = 2048  # at least this many (drawn with replacement from a small library or file)
    compare_windows: int = 20_000  # windows used for the PCA-3 comparison


class FiLM(nn.Module):
    """Feature-wise affine modulation of [B, C, ...] by a context vector [B, n_ctx]."""

    def __init__(self, n_ctx: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(n_ctx, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(ctx).chunk(2, dim=1)
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2)
        return h * (1 + gamma.view(shape)) + beta.view(shape)


class ConditionedAE(nn.Module):
    """[B, n_mels, frames] -> latent [B, 3] -> reconstruction, the decoder conditioned by context [B, 2]."""

    def __init__(self, cfg: AutoencoderConfig, n_mels: int = common.N_MELS):
        super().__init__()
        w = cfg.widths
        n_down = len(w)
        if n_mels % (2 ** n_down) or cfg.window_frames % (2 ** n_down):
            raise TrainingError(f"window {n_mels}x{cfg.window_frames} is not divisible by 2^{n_down}")
        self.f_out, self.t_out = n_mels // 2 ** n_down, cfg.window_frames // 2 ** n_down
        flat = w[-1] * self.f_out * self.t_out
        enc: list[nn.Module] = []
        for a, b in zip([1, *w[:-1]], w):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, cfg.hidden), nn.LeakyReLU(0.1),
                                     nn.Linear(cfg.hidden, cfg.latent_dim))
        self.dec_in = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.film_hidden = FiLM(N_CONTEXT, cfg.hidden)
        self.dec_fc = nn.Linear(cfg.hidden, flat)
        self.film_map = FiLM(N_CONTEXT, w[-1])
        dec: list[nn.Module] = []
        rev = list(reversed(w))
        for i, (a, b) in enumerate(zip(rev, [*rev[1:], 1])):
            dec.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(rev) - 1:
                dec.append(nn.LeakyReLU(0.1))
        self.decoder = nn.Sequential(*dec)
        self.channels = w[-1]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.unsqueeze(1))

    def decode(self, z: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.film_hidden(self.dec_in(z), ctx), 0.1)
        h = F.leaky_relu(self.dec_fc(h), 0.1).view(-1, self.channels, self.f_out, self.t_out)
        return self.decoder(self.film_map(h, ctx)).squeeze(1)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z, ctx), z


def context(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """[B, 2] conditioning of normalised windows [B, F, T]: loudness and spectral centroid, ~[-1, 1]-scaled."""
    loud = x.mean(dim=(1, 2))
    power = torch.exp((x * std + mean).clamp(max=30)).mean(dim=2)  # [B, F]
    bins = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
    centroid = (power * bins).sum(1) / power.sum(1).clamp_min(1e-12) / max(x.shape[1] - 1, 1)
    return torch.stack([loud, 2 * centroid - 1], dim=1)


# ----------------------------------------------------------------------------- windows

def window_index(mels: Sequence[np.ndarray], win: int, hop: int) -> np.ndarray:
    """[N, 2] (spectrogram index, start column) of every window."""
    rows = [(i, s) for i, m in enumerate(mels) for s in common.window_starts(m.shape[1], win, hop)]
    return np.asarray(rows, np.int64).reshape(-1, 2)


def gather(mels: Sequence[np.ndarray], index: np.ndarray, win: int, mean: float, std: float) -> np.ndarray:
    """[len(index), F, win] normalised windows (short spectrograms padded with silence)."""
    fill = common.silence_value()
    out = np.empty((len(index), common.N_MELS, win), np.float32)
    for j, (i, s) in enumerate(index):
        m = mels[i][:, s:s + win]
        if m.shape[1] < win:
            m = common.pad_to(m, win, fill)
        out[j] = m
    return (out - mean) / std


def fit_pca(x: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], components [k, D]) of flattened windows x [N, D] (exact: SVD, or top-k of the covariance)."""
    mu = x.mean(axis=0)
    xc = (x - mu).astype(np.float64)
    if len(x) <= x.shape[1]:
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[:k]
    else:
        from scipy.linalg import eigh

        d = x.shape[1]
        _, vecs = eigh(xc.T @ xc, subset_by_index=[d - k, d - 1])
        comps = vecs[:, ::-1].T
    if len(comps) < k:  # fewer windows than components
        comps = np.vstack([comps, np.zeros((k - len(comps), x.shape[1]))])
    comps = comps * np.where(comps.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # a stable sign convention
    return mu.astype(np.float32), comps.astype(np.float32)


def pca_mse(x: np.ndarray, mu: np.ndarray, comps: np.ndarray) -> float:
    """Reconstruction MSE of x [N, D] from its PCA coordinates."""
    xc = x - mu
    rec = (xc @ comps.T) @ comps
    return float(np.mean((xc - rec) ** 2))


@torch.no_grad()
def ae_mse(model: ConditionedAE, x: np.ndarray, mean: float, std: float, device: torch.device,
           batch: int = 512) -> float:
    """Reconstruction MSE of the autoencoder on windows x [N, F, T]."""
    model.eval()
    tot = 0.0
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(x[i:i + batch]).to(device)
        rec, _ = model(xb, context(xb, mean, std))
        tot += float(((rec - xb) ** 2).sum())
    return tot / max(x.size, 1)


@torch.no_grad()
def encode_windows(model: ConditionedAE, x: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
    """[N, latent_dim] latents of windows x [N, F, T]."""
    model.eval()
    out = [model.encode(torch.from_numpy(x[i:i + batch]).to(device)).cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 3), np.float32)


# ----------------------------------------------------------------------------- training

def config_from_meta(meta: dict) -> AutoencoderConfig:
    """The config saved in a model's meta.json."""
    known = AutoencoderConfig.__dataclass_fields__
    return AutoencoderConfig(**{k: v for k, v in meta["config"].items() if k in known})


def train(mels: Sequence[np.ndarray], folder: Path, model_name: str, cfg: AutoencoderConfig | None = None,
          resume: bool = False, progress: Progress | None = None, log: Log | None = None,
          source: dict | None = None) -> TrainResult:
    """Train (or resume) the conditioned autoencoder on raw log-mel spectrograms; writes the model folder."""
    t_start = time.perf_counter()
    log = log or common.stderr_log
    if not mels:
        raise TrainingError("no audio to train on")
    if resume:
        meta0 = common.read_meta(folder)
        saved = config_from_meta(meta0)
        if cfg is not None:
            saved.epochs, saved.device = cfg.epochs, cfg.device
        cfg = saved
        mean, std = meta0["norm_mean"], meta0["norm_std"]
    else:
        cfg = cfg or AutoencoderConfig()
        mean, std = common.norm_stats(mels)
    device = common.pick_device(cfg.device)
    rng = common.seed_everything(cfg.seed)
    index = window_index(mels, cfg.window_frames, cfg.hop_frames)
    if len(index) < 4:
        raise TrainingError(f"too little audio: {len(index)} windows of {cfg.window_frames} frames")
    order = rng.permutation(len(index))
    n_val = int(round(cfg.val_fraction * len(index))) if len(index) >= 20 else 0
    val_idx = index[order[:n_val]] if n_val else index
    train_idx = index[order[n_val:]]

    model = ConditionedAE(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    hop_s = cfg.hop_frames * common.HOP / common.SAMPLE_RATE
    meta = {"kind": KIND, "name": model_name, "state": "training", "dim": cfg.latent_dim,
            "sample_rate": common.SAMPLE_RATE, "hop": common.HOP, "n_mels": common.N_MELS, "n_fft": common.N_FFT,
            "fmin": common.FMIN, "fmax": common.FMAX, "frame_hop_s": hop_s,
            "window_s": cfg.window_frames * common.HOP / common.SAMPLE_RATE, "context": ["loudness", "centroid"],
            "norm_mean": mean, "norm_std": std, "config": asdict(cfg), "source": source or {},
            "n_windows": int(len(index)), "fallback": None}
    loop = EpochLoop(folder, model, opt, cfg, log=log)
    if resume:
        loop.restore()
        meta = {**common.read_meta(folder), "config": asdict(cfg), "state": "training"}
    common.write_json_atomic(folder / common.META_FILE, meta)
    val_x = gather(mels, val_idx, cfg.window_frames, mean, std)
    per_epoch = min(len(train_idx), cfg.epoch_windows) if cfg.epoch_windows else len(train_idx)
    per_epoch = max(per_epoch, cfg.min_epoch_windows)

    def save_best() -> None:
        common.save_tensors(folder / common.MODEL_FILE, {"autoencoder": common.cpu_state(model)})

    def step(epoch: int) -> EpochResult:
        erng = np.random.default_rng([cfg.seed, epoch])
        if per_epoch <= len(train_idx):
            pick = train_idx[erng.permutation(len(train_idx))[:per_epoch]]
        else:
            pick = train_idx[erng.integers(0, len(train_idx), per_epoch)]
        model.train()
        tot, n = 0.0, 0
        for b in common.batches(len(pick), cfg.batch_size, erng, shuffle=False):
            xb = torch.from_numpy(gather(mels, pick[b], cfg.window_frames, mean, std)).to(device)
            rec, _ = model(xb, context(xb, mean, std))
            loss = F.mse_loss(rec, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
            n += len(b)
        return EpochResult(tot / max(n, 1), ae_mse(model, val_x, mean, std, device))

    loop.run(step, save_best, items_per_epoch=per_epoch, progress=progress)

    # non-convergence check: the best autoencoder against PCA-3 on the same windows
    model.load_state_dict(common.load_tensors(folder / common.MODEL_FILE)["autoencoder"])
    crng = np.random.default_rng(cfg.seed)
    cmp_idx = index if len(index) <= cfg.compare_windows else index[crng.choice(len(index), cfg.compare_windows,
                                                                                 replace=False)]
    cmp_x = gather(mels, cmp_idx, cfg.window_frames, mean, std)
    flat = cmp_x.reshape(len(cmp_x), -1)
    p_mean, p_comps = fit_pca(flat, cfg.latent_dim)
    mse_pca = pca_mse(flat, p_mean, p_comps)
    mse_ae = ae_mse(model, cmp_x, mean, std, device)
    fallback = not (mse_ae < mse_pca)
    notes = [f"reconstruction MSE on {len(cmp_x)} windows: autoencoder {mse_ae:.5f}, PCA-3 baseline {mse_pca:.5f}"]
    if fallback:
        notes.append(f"WARNING: the autoencoder did not beat PCA-3 ({mse_ae:.5f} >= {mse_pca:.5f}): it did not "
                     f"converge usefully. '{model_name}' will embed with PCA-3 of the same log-mel windows "
                     f"(marked 'fallback: pca3'); train longer or with another learning rate to replace it.")
        coords = (flat - p_mean) @ p_comps.T
    else:
        notes.append(f"the autoencoder beats PCA-3 by {100 * (1 - mse_ae / max(mse_pca, 1e-12)):.1f}%")
        coords = encode_windows(model, cmp_x, device)
    lat_mean, lat_std = coords.mean(axis=0), np.maximum(coords.std(axis=0), 1e-6)
    state = {"autoencoder": common.cpu_state(model), "pca_mean": torch.from_numpy(p_mean),
             "pca_components": torch.from_numpy(p_comps), "latent_mean": torch.from_numpy(lat_mean.astype(np.float32)),
             "latent_std": torch.from_numpy(lat_std.astype(np.float32))}
    common.save_tensors(folder / common.MODEL_FILE, state)
    lib = (source or {}).get("library", "?")
    what = f"library '{lib}'" + (f" file '{source['file']}'" if source and source.get("file") else "")
    desc = (f"FALLBACK PCA-3 of log-mel windows (the autoencoder trained on {what} did not beat PCA-3)" if fallback
            else f"conditioned autoencoder, 3-D latent of 0.37 s log-mel windows, trained here on {what}")
    meta.update({"state": "ready", "epochs": loop.epoch, "best_epoch": loop.best_epoch,
                 "best_val_loss": loop.best_loss, "ae_mse": mse_ae, "pca3_mse": mse_pca,
                 "fallback": "pca3" if fallback else None, "description": desc})
    common.write_json_atomic(folder / common.META_FILE, meta)
    return TrainResult(model=model_name, kind=KIND, folder=str(folder), epochs_run=loop.epoch,
                       best_epoch=loop.best_epoch, best_val_loss=loop.best_loss, stopped_early=loop.stopped_early,
                       wall_s=time.perf_counter() - t_start, windows_per_s=loop.items_per_s, history=loop.history,
                       notes=notes, metrics={"ae_mse": mse_ae, "pca3_mse": mse_pca,
                                             "fallback": "pca3" if fallback else None})


class AutoencoderModel:
    """A trained autoencoder (or its PCA-3 fallback) ready to embed raw log-mel spectrograms."""

    def __init__(self, folder: Path, device: str | None = None):
        self.meta = common.read_meta(folder)
        self.cfg = config_from_meta(self.meta)
        self.device = common.pick_device(device)
        state = common.load_tensors(folder / common.MODEL_FILE)
        self.fallback = self.meta.get("fallback") == "pca3"
        self.model = ConditionedAE(self.cfg)
        self.model.load_state_dict(state["autoencoder"])
        self.model.to(self.device).eval()
        self.pca_mean = state["pca_mean"].numpy()
        self.pca_components = state["pca_components"].numpy()
        self.latent_mean = state["latent_mean"].numpy()
        self.latent_std = state["latent_std"].numpy()

    def frames(self, mel: np.ndarray) -> np.ndarray:
        """[n_windows, 3] standardised latent (or PCA-3) coordinates of a raw log-mel's windows."""
        win, hop = self.cfg.window_frames, self.cfg.hop_frames
        mel = common.pad_to(mel, win, common.silence_value())
        idx = np.asarray([(0, s) for s in common.window_starts(mel.shape[1], win, hop)], np.int64)
        x = gather([mel], idx, win, self.meta["norm_mean"], self.meta["norm_std"])
        if self.fallback:
            coords = (x.reshape(len(x), -1) - self.pca_mean) @ self.pca_components.T
        else:
            coords = encode_windows(self.model, x, self.device)
        return ((coords - self.latent_mean) / self.latent_std).astype(np.float32)
