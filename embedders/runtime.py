"""What every family shares at run time: the device, the weights folders, local model folders,
network probes and one-line error text.

One policy each, used by every family and by `embedders.training`:

- device: `pick_device()`: the name given, else `$AUDIO_EXPLORER_DEVICE` ("cpu", "cuda", "cuda:1"),
  else "cuda" when torch sees a GPU, else "cpu";
- weights: `weights_dir(data, family)`: `<data>/weights/<family>`, or `$AUDIO_EXPLORER_WEIGHTS/<family>`
  when set (one weights folder shared by several data folders);
- local model folders: `local_model_path()`: the spec's `local_path`, else `$AUDIO_EXPLORER_MODEL_PATHS`
  (`name=/folder;hub-id=/folder`), else `weights_dir(data, family)/<name>` when that folder exists;
- network: `host_reachable(url)` (a 1 s TCP probe, cached per process), `hub_offline()` (the Hugging
  Face Hub), `offline_requested()` (the user asked for no downloads).

Nothing here imports torch at module import; `pick_device()` imports it only when it must ask CUDA.
"""
from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

DEVICE_ENV = "AUDIO_EXPLORER_DEVICE"  # "cpu" / "cuda" / "cuda:1"; default: cuda when available
WEIGHTS_ENV_VAR = "AUDIO_EXPLORER_WEIGHTS"
MODEL_PATHS_ENV = "AUDIO_EXPLORER_MODEL_PATHS"
OFFLINE_ENV = "AUDIO_EXPLORER_OFFLINE"


# --------------------------------------------------------------------------- device


def pick_device(name: str | None = None) -> str:
    """The device to run on: `name`, else $AUDIO_EXPLORER_DEVICE, else "cuda" when available, else "cpu"."""
    wanted = (name or os.environ.get(DEVICE_ENV, "")).strip()
    if wanted:
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- weights and local models


def weights_dir(root: Path, family: str, create: bool = True) -> Path:
    """Folder for one family's converted or downloaded weights: `<data>/weights/<family>`,
    or `$AUDIO_EXPLORER_WEIGHTS/<family>` when set (created unless `create` is False)."""
    base = os.environ.get(WEIGHTS_ENV_VAR)
    path = (Path(base).expanduser() if base else Path(root) / "weights") / family
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def configured_model_paths() -> dict[str, str]:
    """`AUDIO_EXPLORER_MODEL_PATHS` parsed into {name or hub id: folder} (hf, tfhub, crepe)."""
    raw = os.environ.get(MODEL_PATHS_ENV, "")
    out: dict[str, str] = {}
    for entry in re.split(r"[;\n]", raw):
        key, sep, path = entry.partition("=")
        if sep and key.strip() and path.strip():
            out[key.strip()] = path.strip()
    return out


def local_model_path(base: str, hub_id: str, family: str, data_dir: Path | None,
                     extra: dict) -> tuple[Path | None, str]:
    """The local folder configured for a model and where that setting came from, or (None, "")."""
    if extra.get("local_path"):
        return Path(extra["local_path"]).expanduser(), "the model spec"
    paths = configured_model_paths()
    for key in (base, hub_id):
        if key in paths:
            return Path(paths[key]).expanduser(), MODEL_PATHS_ENV
    if data_dir is not None:
        folder = weights_dir(Path(data_dir), family, create=False) / base
        if folder.is_dir():
            return folder, "the weights folder"
    return None, ""


# --------------------------------------------------------------------------- network


def env_flag(name: str) -> bool:
    """Whether environment variable `name` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    """The user asked for no downloads: $AUDIO_EXPLORER_OFFLINE or $HF_HUB_OFFLINE."""
    return env_flag(OFFLINE_ENV) or env_flag("HF_HUB_OFFLINE")


_reachable_cache: dict[str, bool] = {}
_reachable_lock = threading.Lock()


def host_reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout_s` (cached per process)."""
    with _reachable_lock:
        if url in _reachable_cache:
            return _reachable_cache[url]
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:  # DNS lookups ignore socket timeouts: bound the whole probe by a thread
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    ok = bool(result and result[0])
    with _reachable_lock:
        _reachable_cache[url] = ok
    return ok


def hub_offline_flagged() -> bool:
    """HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set."""
    return env_flag("HF_HUB_OFFLINE") or env_flag("TRANSFORMERS_OFFLINE")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, or the hub endpoint unreachable within 1 s."""
    if hub_offline_flagged():
        return True
    return not host_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


# --------------------------------------------------------------------------- messages


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first non-empty line of the message`, at most `limit` characters."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
