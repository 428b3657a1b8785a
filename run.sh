#!/usr/bin/env bash
# The main job in one command: set everything up, then run napari-hitl on the bundled sample scene.
# With a display it opens napari with the sample project and the plugin's widgets; without one it
# runs headless (under Xvfb) and writes its results into the folder it prints (default
# ./hitl-demo-output). Extra arguments go to `napari-hitl demo` (e.g. --out DIR, --mode headless).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/napari-hitl demo "$@"
