#!/usr/bin/env bash
# Rebuild app/static/plotly-map.min.js: plotly.js with only the traces the map draws
# (scattergl, scatter3d). 2.0 MB instead of the full bundle's 4.8 MB, and ~0.3 s to evaluate in
# Chromium instead of ~0.8 s (benchmarks/ui_map_load.py). Needs node + npm (registry access);
# the app does not: it serves the committed file, or the plotly Python package's full bundle
# when the file is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${PLOTLY_JS_VERSION:-4.1.1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/entry.js" "$here/build.js" "$work/"
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "plotly.js@$version" esbuild@^0.28.1 esbuild-plugin-environment@^0.5.0 \
  esbuild-plugin-glsl@^1.4.2 esbuild-plugin-inline-css@^0.0.1 buffer@^6.0.3 stream-browserify@^3.0.0
node build.js "$here/../../app/static/plotly-map.min.js"
ls -l "$here/../../app/static/plotly-map.min.js"
