#!/usr/bin/env bash
# Checks the import contracts of pyproject.toml ([tool.importlinter]) on the package as it
# installs: callbacks/ and converters/ become tfdynhp.callbacks / tfdynhp.converters only in
# an install, so the package is installed into a temporary folder and checked there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
rm -rf build  # setuptools would put files of removed modules back into the package
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --target "$site" . >/dev/null
cd "$site" && PYTHONPATH="$site" "$repo/.venv/bin/lint-imports" --config "$repo/pyproject.toml"
