# The two entry points of the README. Both set everything up first (scripts/setup.sh).
.PHONY: setup train test bench lint

OUT ?= runs/fashion-mnist-dynhp

setup:
	bash scripts/setup.sh

train: setup
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/tfdynhp train --dataset fashion-mnist --mode dynhp --target "31744 params" --export pi,android,mcu --out $(OUT)

test: setup
	TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check tfdynhp callbacks converters tests bench
