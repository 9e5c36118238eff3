# The two entry points of the README. Both set everything up first (scripts/setup.sh).
.PHONY: setup train test bench lint wheel

OUT ?= runs/fashion-mnist-dynhp

setup:
	bash scripts/setup.sh

train: setup
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/tfdynhp train --dataset fashion-mnist --mode dynhp --target "31744 params" --export pi,android,mcu --out $(OUT)

test: setup
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q

# Style, and the architecture: the import contracts of pyproject.toml on the installed package.
lint: setup
	.venv/bin/ruff check tfdynhp callbacks converters tests bench scripts setup.py
	bash scripts/lint_imports.sh

# The sdist and wheel as users install them, checked from a fresh virtual environment.
wheel: setup
	bash scripts/check_wheel.sh
