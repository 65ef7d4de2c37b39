#!/usr/bin/env bash
# The main job on the embedded default: splade-tiny BERT adapted to Ukrainian (no Hub access).
# Installs only what that job needs (scripts/setup.sh main); scripts/test.sh adds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh main
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
hf-vocabswap quickstart "$@"
