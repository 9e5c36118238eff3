#!/usr/bin/env bash
# Idempotent set-up: Debian's Fashion-MNIST and the firmware toolchain (when root), a virtual
# environment in .venv with the pinned requirements, and tfdynhp installed in editable mode.
# Re-installs only when requirements.txt or pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, each only if missing: Fashion-MNIST's IDX files; for building and running
# the mcu bundle's firmware (converters.verify_mcu, tests/test_firmware.py) a C++ compiler and
# make (host), the Arm bare-metal toolchain with newlib and its C++ library, and QEMU (Cortex-M3/M4 boards);
# espeak-ng for the synthetic keyword-spotting data.
apt_pkgs=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || apt_pkgs+=" dataset-fashion-mnist"
command -v g++ >/dev/null || apt_pkgs+=" g++"
command -v make >/dev/null || apt_pkgs+=" make"
command -v arm-none-eabi-g++ >/dev/null || apt_pkgs+=" gcc-arm-none-eabi"
if ! command -v arm-none-eabi-gcc >/dev/null \
    || [ "$(arm-none-eabi-gcc -print-file-name=nano.specs)" = nano.specs ]; then
  apt_pkgs+=" libnewlib-arm-none-eabi"
fi
# TFLite Micro is C++: the Arm toolchain's C++ standard library for newlib (<cstdio>, ...).
if ! command -v arm-none-eabi-g++ >/dev/null \
    || [ "$(arm-none-eabi-g++ -print-file-name=libstdc++_nano.a)" = libstdc++_nano.a ]; then
  apt_pkgs+=" libstdc++-arm-none-eabi-newlib"
fi
command -v qemu-system-arm >/dev/null || apt_pkgs+=" qemu-system-arm"
# espeak-ng: the speech synthesizer of the synthetic-kws data set (tfdynhp.datasets.kws).
command -v espeak-ng >/dev/null || apt_pkgs+=" espeak-ng"
if [ -n "$apt_pkgs" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages:$apt_pkgs"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_pkgs >/dev/null
  else
    echo "setup: Debian packages missing:$apt_pkgs; run 'sudo apt-get install$apt_pkgs'" \
      "(without them the Fashion-MNIST, firmware and keyword-spotting tests skip)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.tfdynhp-installed
want=$(cat requirements.txt pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q setuptools wheel && .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
