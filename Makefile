# Everything a fresh machine needs, in order; every target is idempotent.
#   make demo   build and run the smoke suite on the CPU vendor, then print the report (README command 1)
#   make test   lint, unit and integration tests against the real engine (README command 2, CI)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MILABOX := $(BIN)/milabox
DEMO := matmul bert
HOST_TORCH := $(shell sed -n 's/^torch_version = "\(.*\)"/\1/p' vendor_bases/cpu.toml)
RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test venv engine base images lint unit integration clean-containers help disk

help:
	@sed -n '1,4p' Makefile

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@# Torch on the host only for the runtime's torch unit tests and native comparisons: the CPU wheel
	@# from pip's find-links where there is one (never the multi-GB CUDA build from PyPI).
	@$(BIN)/pip install --quiet 'torch==$(HOST_TORCH)' 2>/dev/null \
	  || echo "no $(HOST_TORCH) wheel in pip's find-links: torch-based unit tests will be skipped"
	@touch $@

venv: $(BIN)/activate

# A Docker engine that answers: the running one, or (as root) Debian's docker.io installed and started.
engine:
	@bash scripts/engine.sh

# The CPU vendor's base image: pulled where a registry answers, else made with debootstrap.
base: venv engine
	@command -v debootstrap >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
	@$(MILABOX) base --vendor cpu

images: base
	$(MILABOX) build $(DEMO) --vendor cpu

demo: images
	$(MILABOX) run $(DEMO) --vendor cpu --size smoke --run-dir $(RUN_DIR)

lint: venv
	$(BIN)/ruff check milabox milabox_runtime benchmarks tests

unit: venv
	$(BIN)/pytest -q -m "not engine"

integration: base
	$(BIN)/pytest -q -m engine

test: venv lint base
	$(BIN)/pytest -q

clean-containers: venv
	@$(BIN)/python -c 'from milabox.engine import Engine; e = Engine(); [e.client.containers.get(c).remove(force=True) for c in e.containers()]'

# Unique disk of the CPU suite's images against the goal (at most twice the runtime image).
disk: base
	$(MILABOX) build --suite all --vendor cpu
	$(BIN)/python scripts/disk.py cpu
