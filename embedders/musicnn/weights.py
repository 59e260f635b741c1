"""musicnn weights: the original TF checkpoints (installed wheel or one fetched with pip) and
their conversion to cached torch state dicts.

`convert()` reads a checkpoint once (TensorFlow is imported only there) and caches a PyTorch
state dict, with librosa's mel filterbank, as `runtime.weights_dir(data, "musicnn")/<checkpoint>.pt`;
every later load needs only torch.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..base import EmbedderError
from ..runtime import OFFLINE_ENV, offline_requested, weights_dir
from .models import CHECKPOINTS, FAMILY, N_FFT, N_MELS, SAMPLE_RATE

BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default
FORMAT_VERSION = 1
WHEEL = "musicnn==0.1.0"

__all__ = ["BN_EPS", "FORMAT_VERSION", "OFFLINE_ENV", "WHEEL", "ConverterMissing", "WeightsNotFound",
           "can_fetch_wheel", "convert", "convert_all", "converted_path", "fetch_wheel",
           "require_source", "save_converted"]


class WeightsNotFound(EmbedderError):
    """Neither the installed musicnn package nor a downloaded wheel holds the checkpoints."""


class ConverterMissing(EmbedderError):
    """The checkpoints are here but TensorFlow, needed once to convert them, is not."""


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


def can_fetch_wheel() -> bool:
    """Whether the musicnn wheel may be fetched with pip on first use and then converted (a Space
    cannot say --no-deps): downloads allowed, pip and TensorFlow installed."""
    return (not offline_requested() and importlib.util.find_spec("pip") is not None
            and importlib.util.find_spec("tensorflow") is not None)


def fetch_wheel(data_dir: Path) -> Path:
    """`pip download --no-deps musicnn==0.1.0` into the weights folder (its checkpoints are the weights)."""
    import subprocess

    dest = weights_dir(Path(data_dir), FAMILY)
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", str(dest)],
                         capture_output=True, text=True, timeout=900)
    wheel = _wheel_file(data_dir)
    if res.returncode != 0 or wheel is None:
        last = (res.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise EmbedderError(f"could not fetch the musicnn weights with pip ({last}); "
                            f"run `pip install --no-deps {WHEEL}`")
    return wheel


def require_source(data_dir: Path) -> None:
    """Raise WeightsNotFound or ConverterMissing (one line, with the fix) unless a checkpoint
    source and TensorFlow are here to convert from."""
    if _installed_package_dir() is None and _wheel_file(data_dir) is None:
        raise WeightsNotFound(f"musicnn weights not found: run `pip install --no-deps {WHEEL}` "
                              f"(or `pip download --no-deps {WHEEL} -d {weights_dir(Path(data_dir), FAMILY)}`)")
    if importlib.util.find_spec("tensorflow") is None:
        raise ConverterMissing("converting the musicnn weights needs TensorFlow once: run "
                               "`pip install tensorflow-cpu`")


def _tf_to_torch_state(reader, arch: str) -> dict[str, np.ndarray]:
    """Map checkpoint tensors (TF layouts) onto the torch modules of `nets` (torch layouts)."""
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
    try:
        require_source(data_dir)
    except WeightsNotFound:
        if not can_fetch_wheel():
            raise
        fetch_wheel(data_dir)  # first use on a machine without the wheel installed (e.g. a Space)
        require_source(data_dir)
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
