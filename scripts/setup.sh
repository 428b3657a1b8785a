#!/usr/bin/env bash
# Set up everything napari-hitl needs on a fresh Debian machine (run as root, or with sudo rights
# for the apt step): Xvfb + the xcb libraries Qt needs, a virtual environment in .venv, and the
# package with its GUI and test extras. Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${NAPARI_HITL_EXTRAS:-test}
APT_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-shape0 libgl1 libegl1 \
libfontconfig1 libdbus-1-3"

missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
# Qt needs GLib (Debian 13 renamed the package libglib2.0-0t64).
if ! ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0'; then
  if apt-cache show libglib2.0-0t64 >/dev/null 2>&1; then missing="$missing libglib2.0-0t64"
  else missing="$missing libglib2.0-0"; fi
fi
# A Python with venv support (a bare Debian image may have neither).
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing="$missing python3 python3-venv python3-dev"
  PYTHON=python3
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.napari-hitl-installed
want="$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] pip install -e .[$EXTRAS] -c scripts/constraints.txt (torch: the CPU build 2.13.0)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]" -c scripts/constraints.txt
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import napari_hitl, torch, napari; print("napari-hitl", napari_hitl.__version__, "| torch", torch.__version__, "| napari", napari.__version__)')"
