"""Supervised-contrastive projection head on a frozen embedder's clip vectors.

An MLP maps the base model's (L2-normalised) clip vectors to 128-d unit vectors, trained
with the SupCon loss (Khosla et al. 2020; temperature 0.07 by default): clips with the same
label are pulled together, the rest pushed apart. Files are split into training and
validation sets (stratified by label, never splitting a file's segments); training stops
early on the validation loss. The CSV log has epoch, train_loss, val_loss and
val_knn_agreement: for each held-out clip, the fraction of its k nearest neighbours among
all other clips (of other files) that share its label. The same number for the base
vectors is the baseline the head must beat. The neighbours are found here
(`heldout_neighbours`); the score is the project's one kNN agreement, handed in by the caller
(`index.training` passes `projections.quality.knn_agreement`; this room may not import it).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import l2_normalise
from . import common
from .common import EpochLoop, EpochResult, Log, Progress, TrainConfig, TrainResult, TrainingError

KIND = "supcon"
INFIX = "+supcon-"

# (neighbour indices [m, k] (-1: none), labels [n], query rows [m]) -> agreement, NaN when undefined
Agreement = Callable[[np.ndarray, Sequence[str], np.ndarray], float]


@dataclass
class SupConConfig(TrainConfig):
    """Options of the projection-head trainer."""

    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 256
    patience: int = 20
    weight_decay: float = 1e-4
    hidden: int = 512
    out_dim: int = 128
    temperature: float = 0.07
    input_dropout: float = 0.1
    val_fraction: float = 0.2
    k: int = 5  # neighbours for the kNN agreement


class ProjectionHead(nn.Module):
    """[B, d_in] -> [B, out_dim] unit vectors."""

    def __init__(self, d_in: int, hidden: int, out_dim: int, input_dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(input_dropout)
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(self.drop(x)), dim=1)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (L_out) over a batch of unit vectors z [B, d] with integer labels [B]."""
    n = z.shape[0]
    sim = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_log_prob = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(1) / n_pos.clamp_min(1)
    return -mean_log_prob[has].mean()


def split_by_file(labels: Sequence[str], files: Sequence[str], val_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): files are held out per label; a label with one file stays in training."""
    rng = np.random.default_rng(seed)
    labels, files = np.asarray(labels), np.asarray(files)
    by_label: dict[str, list[str]] = {}
    for lab, f in dict.fromkeys(zip(labels.tolist(), files.tolist())):
        by_label.setdefault(lab, []).append(f)
    val_files: set[str] = set()
    for lab in sorted(by_label):
        fs = sorted(set(by_label[lab]))
        if len(fs) < 2:
            continue
        n_val = min(len(fs) - 1, max(1, int(round(val_fraction * len(fs)))))
        val_files.update(rng.permutation(fs)[:n_val].tolist())
    is_val = np.array([f in val_files for f in files.tolist()])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def heldout_neighbours(vectors: np.ndarray, files: Sequence[str], val_rows: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices [len(val_rows), k] of each held-out point's k nearest neighbours by cosine among the
    points of other files (never its own file's segments), best first; -1 where there are fewer."""
    x = l2_normalise(vectors).astype(np.float64)
    files = np.asarray(files)
    kk = max(1, min(k, len(x) - 1))
    if len(val_rows) == 0:
        return np.zeros((0, kk), np.int64)
    sim = x[val_rows] @ x.T
    sim[files[val_rows][:, None] == files[None, :]] = -np.inf
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
    return np.where(np.isfinite(np.take_along_axis(sim, idx, axis=1)), idx, -1)


def config_from_meta(meta: dict) -> SupConConfig:
    """The config saved in a model's meta.json."""
    known = SupConConfig.__dataclass_fields__
    return SupConConfig(**{k: v for k, v in meta["config"].items() if k in known})


def train(vectors: np.ndarray, labels: Sequence[str], files: Sequence[str], folder: Path, model_name: str,
          base: dict, cfg: SupConConfig | None = None, resume: bool = False, progress: Progress | None = None,
          log: Log | None = None, source: dict | None = None, *, agreement: Agreement) -> TrainResult:
    """Train (or resume) a SupCon head on base clip vectors [n, d] with labels and file ids.

    `base` describes the frozen embedder: {"name", "dim", "sample_rate", "frame_hop_s", "window_s"}.
    `agreement` scores held-out neighbours (`projections.quality.knn_agreement`).
    """
    t_start = time.perf_counter()
    log = log or common.stderr_log
    if resume:
        saved = config_from_meta(common.read_meta(folder))
        if cfg is not None:
            saved.epochs, saved.device = cfg.epochs, cfg.device
        cfg = saved
    cfg = cfg or SupConConfig()
    x = l2_normalise(vectors)
    labels = [str(lb) for lb in labels]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise TrainingError(f"contrastive training needs at least 2 labels (found {len(classes)})")
    train_rows, val_rows = split_by_file(labels, files, cfg.val_fraction, cfg.seed)
    if len(val_rows) < 1 or len(train_rows) < 2:
        raise TrainingError("too few labelled files for a validation split: need at least 2 files of some label")
    device = common.pick_device(cfg.device)
    common.seed_everything(cfg.seed)
    y = torch.tensor([classes.index(lb) for lb in labels], device=device)
    xt = torch.from_numpy(x).to(device)
    head = ProjectionHead(x.shape[1], cfg.hidden, cfg.out_dim, cfg.input_dropout).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def heldout_agreement(vecs: np.ndarray) -> float:
        return agreement(heldout_neighbours(vecs, files, val_rows, cfg.k), labels, val_rows)

    base_agree = heldout_agreement(x)
    meta = {"kind": KIND, "name": model_name, "state": "training", "dim": cfg.out_dim, "base": base["name"],
            "base_dim": int(x.shape[1]), "sample_rate": base.get("sample_rate"),
            "frame_hop_s": base.get("frame_hop_s"), "window_s": base.get("window_s"),
            "classes": classes, "config": asdict(cfg), "source": source or {},
            "n_train": int(len(train_rows)), "n_val": int(len(val_rows)),
            "base_val_knn_agreement": base_agree}
    loop = EpochLoop(folder, head, opt, cfg, log=log, log_columns=["val_knn_agreement"])
    if resume:
        loop.restore()
        meta = {**common.read_meta(folder), "config": asdict(cfg), "state": "training"}
    common.write_json_atomic(folder / common.META_FILE, meta)
    tr = torch.from_numpy(train_rows).to(device)
    vr = torch.from_numpy(val_rows).to(device)
    bsz = max(2, min(cfg.batch_size, len(train_rows)))

    def save_best() -> None:
        common.save_tensors(folder / common.MODEL_FILE, {"head": common.cpu_state(head)})

    @torch.no_grad()
    def embed_all() -> np.ndarray:
        head.eval()
        return head(xt).cpu().numpy()

    def step(epoch: int) -> EpochResult:
        erng = np.random.default_rng([cfg.seed, epoch])
        head.train()
        tot, n = 0.0, 0
        for b in common.batches(len(train_rows), bsz, erng, drop_last=True):
            rows = tr[torch.from_numpy(b).to(device)]
            loss = supcon_loss(head(xt[rows]), y[rows], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
            n += len(b)
        z = embed_all()
        with torch.no_grad():
            vl = float(supcon_loss(torch.from_numpy(z).to(device)[vr], y[vr], cfg.temperature))
        agree = heldout_agreement(z)
        return EpochResult(tot / max(n, 1), vl, {"val_knn_agreement": agree})

    log(f"base '{base['name']}': held-out kNN agreement@{cfg.k} {base_agree:.3f} "
        f"({len(train_rows)} training / {len(val_rows)} held-out clips, {len(classes)} labels)")
    loop.run(step, save_best, items_per_epoch=(len(train_rows) // bsz) * bsz, progress=progress)

    head.load_state_dict(common.load_tensors(folder / common.MODEL_FILE)["head"])
    head_agree = heldout_agreement(embed_all())
    notes = [f"held-out kNN agreement@{cfg.k} ({len(val_rows)} clips of held-out files): "
             f"base {base['name']} {base_agree:.3f} -> head {head_agree:.3f} (best epoch {loop.best_epoch})"]
    if not head_agree > base_agree:
        notes.append("WARNING: the head does not improve on its base on held-out files "
                     "(too few labelled clips, or labels the base already separates)")
    meta.update({"state": "ready", "epochs": loop.epoch, "best_epoch": loop.best_epoch,
                 "best_val_loss": loop.best_loss, "val_knn_agreement": head_agree,
                 "description": f"SupCon projection head on {base['name']}, trained here on library "
                                f"'{(source or {}).get('library', '?')}' ({len(classes)} labels; held-out kNN "
                                f"agreement {base_agree:.2f} -> {head_agree:.2f})"})
    common.write_json_atomic(folder / common.META_FILE, meta)
    return TrainResult(model=model_name, kind=KIND, folder=str(folder), epochs_run=loop.epoch,
                       best_epoch=loop.best_epoch, best_val_loss=loop.best_loss, stopped_early=loop.stopped_early,
                       wall_s=time.perf_counter() - t_start, windows_per_s=loop.items_per_s, history=loop.history,
                       notes=notes, metrics={"base_val_knn_agreement": base_agree, "val_knn_agreement": head_agree})


class SupConHead:
    """A trained head ready to map base vectors."""

    def __init__(self, folder: Path, device: str | None = None):
        self.meta = common.read_meta(folder)
        self.cfg = config_from_meta(self.meta)
        self.device = common.pick_device(device)
        self.head = ProjectionHead(self.meta["base_dim"], self.cfg.hidden, self.cfg.out_dim)
        self.head.load_state_dict(common.load_tensors(folder / common.MODEL_FILE)["head"])
        self.head.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """[n, out_dim] unit vectors of base vectors [n, base_dim] (L2-normalised first)."""
        x = l2_normalise(np.asarray(vectors, np.float32).reshape(-1, self.meta["base_dim"]))
        return self.head(torch.from_numpy(x).to(self.device)).cpu().numpy().astype(np.float32)
