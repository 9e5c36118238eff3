#!/usr/bin/env bash
# Idempotent set-up: Debian's Fashion-MNIST (when root), a virtual environment in .venv with the
# pinned requirements, and tfdynhp installed in editable mode. Re-installs only when
# requirements.txt or pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian package dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: Fashion-MNIST IDX files missing; run 'sudo apt-get install dataset-fashion-mnist'" >&2
  fi
fi

# espeak-ng: the speech synthesizer of the synthetic-kws data set (tfdynhp.kws).
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian package espeak-ng"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup: espeak-ng missing (synthetic-kws data set); run 'sudo apt-get install espeak-ng'" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.tfdynhp-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q setuptools wheel && .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
