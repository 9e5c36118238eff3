#!/usr/bin/env bash
# The package as users install it. Builds the sdist, then the wheel from the sdist (so both are
# complete), checks that the wheel holds every package of the source tree, installs the wheel
# (not editable) into a fresh virtual environment outside the tree, and from there runs
# `tfdynhp --help` and the README's Keras example on a small subset.
# The fresh environment takes its dependencies (TensorFlow, ...) from the project's .venv
# through a path entry, so nothing is downloaded twice; the project's own editable install is
# not visible there (its .pth hook only runs in .venv itself).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=.venv/bin/python

rm -rf build  # setuptools would put files of removed modules back into the package
"$py" -c "from setuptools import build_meta as b; print(b.build_sdist('$work/dist'))" >/dev/null
sdist=$(ls "$work"/dist/*.tar.gz)
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$sdist" >/dev/null 2>&1
wheel=$(ls "$work"/dist/*.whl)
echo "check_wheel: built $(basename "$sdist") and $(basename "$wheel")"

"$py" - "$wheel" <<'PY'
import pathlib, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
in_wheel = {str(pathlib.PurePath(n).parent) for n in names if n.endswith("/__init__.py")}
expected = set()
for folder, package in (("tfdynhp", "tfdynhp"), ("callbacks", "tfdynhp/callbacks"),
                        ("converters", "tfdynhp/converters")):
    for init in pathlib.Path(folder).rglob("__init__.py"):
        expected.add(str(pathlib.PurePath(package) / init.parent.relative_to(folder)))
missing = sorted(expected - in_wheel)
if missing:
    sys.exit(f"check_wheel: packages missing from the wheel: {missing}")
templates = [n for n in names if n.startswith("tfdynhp/converters/templates/")]
if not templates:
    sys.exit("check_wheel: the converters' templates are missing from the wheel")
print(f"check_wheel: the wheel holds all {len(expected)} packages and {len(templates)} templates")
PY

python3 -m venv "$work/venv"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
"$py" -c "import sysconfig; print(sysconfig.get_path('purelib'))" > "$site/_tfdynhp_dependencies.pth"
"$work/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"
cd "$work"
TF_CPP_MIN_LOG_LEVEL=2 "$work/venv/bin/python" -c "
import sys, tfdynhp, tfdynhp.callbacks, tfdynhp.converters
where = tfdynhp.__file__
assert where.startswith('$work/venv'), f'tfdynhp imported from {where}, not from the wheel'
tree = [p for p in sys.path if p == '$repo' or (p.startswith('$repo/') and '/.venv/' not in p)]
assert not tree, f'the source tree is on sys.path: {tree}'
print('check_wheel: imports from', where.rsplit('/tfdynhp/', 1)[0])
"
TF_CPP_MIN_LOG_LEVEL=2 "$work/venv/bin/tfdynhp" --help >/dev/null 2>&1
echo "check_wheel: tfdynhp --help runs"
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    || [ -n "${TFDYNHP_FASHION_MNIST_DIR:-}" ]; then
  TF_CPP_MIN_LOG_LEVEL=2 "$work/venv/bin/python" "$repo/scripts/readme_example.py" \
    "$repo/README.md" --examples 1000 --epochs 3 > "$work/example.log" 2>&1 \
    || { cat "$work/example.log"; exit 1; }
  echo "check_wheel: the README's Keras example ran from the installed wheel (1,000 examples)"
else
  echo "check_wheel: Fashion-MNIST not installed, the README example was not run" >&2
fi
