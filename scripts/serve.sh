#!/usr/bin/env bash
# Install (if needed) and serve the app. Extra arguments go to `python app.py`,
# e.g. scripts/serve.sh --library my-sounds --folder ~/samples
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python app.py serve "$@"
