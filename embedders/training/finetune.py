"""Self-supervised fine-tuning of a pretrained musicnn-family network (VGG or MusiCNN) on a library.

No labels are used. The network starts from the converted checkpoint of a ready model (`vgg-msd`,
`musicnn-msd`, ...) and is trained with SimCLR (NT-Xent, temperature 0.2; a small projection head
on the model's own layer, `pool5` or `pool`, used for the loss only) on two augmented views of each
clip of the library, computed on musicnn's 16 kHz, 96-band mel power before the log:

* `simclr` (default): random 3 s crop of the repeat-padded clip (so also a time shift), mixup with
  another clip (power ratio <= `mix_max`), random gain (+-`gain_db`) and a smooth random EQ
  (+-`eq_db` over five interpolated points), then `log10(10000 * mel + 1)` and one frequency mask;
* `byola` (BYOL-A's augmentations): mixup in the power domain (ratio <= `mix_max`), the log, then a
  random resize crop (frequency and time scales in [0.6, 1.5] on a canvas 1.5x the patch long,
  resized back to 187 x 96 bicubically) and a random linear fader (+-`gain_db` over the patch).

With `tune="top"` only the later layers train (VGG blocks 3-5, MusiCNN's mid end): about half the
compute per step, so twice the steps in the same time. The batch norms keep the checkpoint's statistics (the port has inference-mode batch norms only),
so before any step the network computes exactly the frozen base model's vectors. The embedder is
the base model's (same patches, same layer, mean over 3 s patches) with the fine-tuned weights,
registered as `BASE+ssl-NAME` (`embedders/trained.py`); its taggram is dropped (no tags).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import common
from .common import EpochLoop, EpochResult, Log, Progress, TrainConfig, TrainingError, TrainResult, stop_requested
from .selfsup import nt_xent

KIND = "finetune"
BASES = ("vgg-msd", "vgg-mtt", "musicnn-msd", "musicnn-mtt")  # pretrained starts offered in the UI and CLI
RECIPES = ("simclr", "byola")
TOP_LAYERS = {"vgg": ("block3.", "block4.", "block5."), "musicnn": ("mid1.", "mid2.", "mid3.")}  # tune="top"
ITEM_MAX_S = 10.0  # long files are cut into training items of at most this length


@dataclass
class FineTuneConfig(TrainConfig):
    """Options of the fine-tuning trainer."""

    epochs: int = 20
    lr: float = 3e-4
    batch_size: int = 32  # clips per step (two views each)
    patience: int = 5
    max_minutes: float = 10.0
    weight_decay: float = 0.0
    temperature: float = 0.2
    recipe: str = "simclr"  # "simclr" | "byola" (see the module docstring)
    init: str = "pretrained"  # "pretrained" | "random" (the same network from random weights: a baseline)
    tune: str = "all"  # "all" layers, or "top": VGG blocks 3-5 / MusiCNN mid end only (the rest stays pretrained)
    proj_dim: int = 64
    mix_max: float = 0.3
    gain_db: float = 6.0
    eq_db: float = 6.0
    freq_mask: int = 12
    val_fraction: float = 0.1
    val_batches: int = 2  # validation loss over at most this many fixed batches


# ----------------------------------------------------------------------------- front end

def base_parts(base: str, data_dir: Path) -> tuple[dict, object, "torch.Tensor"]:
    """(info about the base model, its pretrained network, its mel filterbank) for a musicnn-family
    model name; TrainingError when it is not one that can be fine-tuned here."""
    from .. import musicnn

    v = musicnn.VARIANTS.get(base)
    if v is None or v.layer not in ("pool", "pool5"):
        raise TrainingError(f"cannot fine-tune '{base}': pick a pretrained model of the musicnn family "
                            f"({', '.join(BASES)})")
    net, mel_fb = musicnn.load_net(v.checkpoint, Path(data_dir))
    info = {"base": v.name, "checkpoint": v.checkpoint, "arch": v.arch, "layer": v.layer, "dim": v.dim,
            "sample_rate": musicnn.SAMPLE_RATE, "frame_hop_s": musicnn.PATCH_S, "window_s": musicnn.PATCH_S}
    return info, net, mel_fb


def mel_power(wave: np.ndarray, mel_fb: "torch.Tensor") -> np.ndarray:
    """[n_frames, 96] mel power of a 16 kHz wave (musicnn's front end before the log)."""
    from ..musicnn import HOP_LENGTH, N_FFT

    x = torch.as_tensor(np.asarray(wave, np.float32).reshape(-1))
    if x.numel() == 0:
        x = torch.zeros(1)
    spec = torch.stft(x, N_FFT, hop_length=HOP_LENGTH, window=torch.hann_window(N_FFT, periodic=True),
                      center=True, pad_mode="constant", return_complex=True)
    fb = mel_fb.detach().to("cpu", torch.float32)
    return (fb @ (spec.real.square() + spec.imag.square())).T.numpy().astype(np.float32)


def _log(v: np.ndarray) -> np.ndarray:
    return np.log10(10000.0 * v + 1.0)


def _repeat_to(m: np.ndarray, n: int) -> np.ndarray:
    """`m` ([T, F]) repeated along time to at least n frames (musicnn's repeat-padding)."""
    if len(m) >= n:
        return m
    reps = -(-n // max(len(m), 1))
    return np.tile(m, (reps, 1))[:n]


def _crop(m: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    m = _repeat_to(m, n)
    s = int(rng.integers(0, len(m) - n + 1))
    return m[s:s + n]


class Views:
    """Augmented [B, 187, 96] log-mel views of training items (mel power arrays)."""

    def __init__(self, mels: Sequence[np.ndarray], cfg: FineTuneConfig):
        from ..musicnn import N_MELS, PATCH_FRAMES

        if cfg.recipe not in RECIPES:
            raise TrainingError(f"unknown fine-tuning recipe '{cfg.recipe}' ({', '.join(RECIPES)})")
        self.mels, self.cfg = list(mels), cfg
        self.t, self.f = PATCH_FRAMES, N_MELS

    def _mix(self, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        other = _crop(self.mels[int(rng.integers(len(self.mels)))], len(v), rng)
        lam = rng.uniform(0, self.cfg.mix_max)
        return (1 - lam) * v + lam * other

    def _simclr(self, i: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        v = self._mix(_crop(self.mels[i], self.t, rng), rng)
        gain = 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 10)
        eq = np.interp(np.arange(self.f), np.linspace(0, self.f - 1, 5), rng.uniform(-cfg.eq_db, cfg.eq_db, 5))
        v = _log(v * gain * 10 ** (eq / 10)[None, :])
        if cfg.freq_mask > 0:
            f0 = int(rng.integers(0, self.f - cfg.freq_mask))
            v[:, f0:f0 + int(rng.integers(0, cfg.freq_mask))] = 0.0
        return v

    def _byola(self, i: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        v = _log(self._mix(_crop(self.mels[i], self.t, rng), rng))  # [T, F]
        # random resize crop on a canvas 1.5x as long (silence, 0 after the log, around the patch)
        cw = int(round(1.5 * self.t))
        canvas = np.zeros((cw, self.f), np.float32)
        off = (cw - self.t) // 2
        canvas[off:off + self.t] = v
        h = int(np.clip(round(self.f * rng.uniform(0.6, 1.5)), 1, self.f))
        w = int(np.clip(round(self.t * rng.uniform(0.6, 1.5)), 1, cw))
        fi, ti = int(rng.integers(0, self.f - h + 1)), int(rng.integers(0, cw - w + 1))
        crop = torch.from_numpy(np.ascontiguousarray(canvas[ti:ti + w, fi:fi + h]))[None, None]
        out = F.interpolate(crop, size=(self.t, self.f), mode="bicubic", align_corners=True)[0, 0].numpy()
        # random linear fader: a gain ramp over the patch (in the log-compressed domain, ~dB/10)
        ramp = np.linspace(-1, 1, self.t)[:, None] * rng.uniform(-1, 1) * cfg.gain_db / 10
        return np.maximum(out + ramp, 0.0)

    def make(self, idx: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
        """[2B, 187, 96]: rows i and i+B are two views of item idx[i]."""
        fn = self._simclr if self.cfg.recipe == "simclr" else self._byola
        views = [fn(int(i), rng) for i in idx] + [fn(int(i), rng) for i in idx]
        return torch.from_numpy(np.stack(views).astype(np.float32))


def make_items(mels: Sequence[np.ndarray], max_s: float = ITEM_MAX_S) -> list[np.ndarray]:
    """Training items: each mel power array whole, or cut into pieces of at most `max_s` seconds."""
    from ..musicnn import HOP_LENGTH, SAMPLE_RATE

    step = max(1, int(round(max_s * SAMPLE_RATE / HOP_LENGTH)))
    out = []
    for m in mels:
        for a in range(0, max(len(m), 1), step):
            piece = m[a:a + step]
            if len(piece) >= 16 or a == 0:
                out.append(piece)
    return out


# ----------------------------------------------------------------------------- training

class Head(nn.Module):
    """SimCLR projection head (for the loss only)."""

    def __init__(self, dim: int, proj_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(inplace=True), nn.Linear(128, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(base: str, data_dir: Path, init: str = "pretrained"):
    """(info, network to train, mel filterbank): a copy of the base model's pretrained network (or the
    same architecture from random weights with init="random")."""
    import copy

    from ..musicnn import build_net

    info, net, mel_fb = base_parts(base, data_dir)
    if init == "pretrained":
        model = copy.deepcopy(net).cpu()
    elif init == "random":
        model = build_net(info["arch"])
    else:
        raise TrainingError(f"unknown init '{init}' (pretrained, random)")
    return info, model, mel_fb.detach().cpu()


def train(mels: Sequence[np.ndarray], folder: Path, model_name: str, base: str, data_dir: Path,
          cfg: FineTuneConfig | None = None, resume: bool = False, progress: Progress | None = None,
          log: Log | None = None, source: dict | None = None) -> TrainResult:
    """Fine-tune (or resume) the base network on mel power arrays (`mel_power`); writes the model folder."""
    t_start = time.perf_counter()
    log = log or common.stderr_log
    if resume:
        meta = common.read_meta(folder)
        known = FineTuneConfig.__dataclass_fields__
        saved = FineTuneConfig(**{k: v for k, v in meta["config"].items() if k in known})
        if cfg is not None:
            saved.epochs, saved.device, saved.max_minutes = cfg.epochs, cfg.device, cfg.max_minutes
        cfg, base = saved, meta["base"]
    cfg = cfg or FineTuneConfig()
    if not mels:
        raise TrainingError("no audio to train on")
    items = make_items(mels)
    if len(items) < 4:
        raise TrainingError(f"self-supervised fine-tuning needs at least 4 clips (got {len(items)})")
    info, net, _ = build_model(base, data_dir, cfg.init)
    if cfg.tune not in ("all", "top"):
        raise TrainingError(f"unknown tune setting '{cfg.tune}' (all, top)")
    if cfg.tune == "top":  # the early (most expensive) layers keep their weights: no backward through them
        for pname, param in net.named_parameters():
            param.requires_grad_(pname.startswith(TOP_LAYERS[info["arch"]]))
    device = common.pick_device(cfg.device)
    rng = common.seed_everything(cfg.seed)
    head = Head(info["dim"], cfg.proj_dim)
    order = rng.permutation(len(items))
    n_val = max(2, int(round(cfg.val_fraction * len(items)))) if len(items) >= 20 else 2
    val_items = [items[i] for i in order[:n_val]]
    train_items = [items[i] for i in order[n_val:]] if len(items) - n_val >= 2 else items
    views, val_views = Views(train_items, cfg), Views(val_items, cfg)

    class Both(nn.Module):  # one module for the epoch loop's checkpoint
        def __init__(self):
            super().__init__()
            self.net, self.head = net, head

    model = Both().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    library = (source or {}).get("library", "?")
    meta = {"kind": KIND, "name": model_name, "state": "training", **info, "config": asdict(cfg),
            "source": source or {}, "n_items": len(items)}
    loop = EpochLoop(folder, model, opt, cfg, log=log)
    if resume:
        loop.restore()
        meta = {**common.read_meta(folder), "config": asdict(cfg), "state": "training"}
    common.write_json_atomic(folder / common.META_FILE, meta)
    n_train = len(train_items)
    bsz = max(2, min(cfg.batch_size, n_train))
    layer = info["layer"]
    steps = {"n": 0}

    def save_best() -> None:
        common.save_tensors(folder / common.MODEL_FILE, {"net": common.cpu_state(net)})

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return nt_xent(model.head(model.net(x.to(device))[layer]), cfg.temperature)

    def step(epoch: int) -> EpochResult:
        erng = np.random.default_rng([cfg.seed, epoch])
        model.train()
        losses = []
        for idx in common.batches(n_train, bsz, erng, drop_last=True):
            if len(idx) < 2:
                continue
            loss = loss_of(views.make(idx, erng))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps["n"] += 1
            if loop.time_up() or stop_requested():  # an epoch can take minutes: the limit and Stop act now
                break
        return EpochResult(float(np.mean(losses)) if losses else float("nan"), val_loss())

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        vrng = np.random.default_rng([cfg.seed, 999])  # the same validation views every epoch
        out = []
        for j, idx in enumerate(common.batches(len(val_items), bsz, vrng, shuffle=False)):
            if len(idx) < 2 or j >= cfg.val_batches:
                continue
            out.append(float(loss_of(val_views.make(idx, vrng))))
        return float(np.mean(out)) if out else float("nan")

    loop.run(step, save_best, items_per_epoch=2 * (n_train // bsz) * bsz, progress=progress)
    start = "random init" if cfg.init == "random" else f"from {info['base']}"
    meta.update({"state": "ready", "epochs": loop.epoch, "best_epoch": loop.best_epoch,
                 "best_val_loss": loop.best_loss, "steps": steps["n"],
                 "description": f"{info['base']} fine-tuned self-supervised ({cfg.recipe}, {start}) on library "
                                f"'{library}' ({len(items)} clips, epoch {loop.best_epoch}), {info['dim']}-d per 3 s"})
    common.write_json_atomic(folder / common.META_FILE, meta)
    return TrainResult(model=model_name, kind=KIND, folder=str(folder), epochs_run=loop.epoch,
                       best_epoch=loop.best_epoch, best_val_loss=loop.best_loss, stopped_early=loop.stopped_early,
                       wall_s=time.perf_counter() - t_start, windows_per_s=loop.items_per_s,
                       history=loop.history, notes=[f"{steps['n']} optimizer steps this run"], metrics={})

