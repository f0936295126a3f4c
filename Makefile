# Everything a fresh machine needs, in order; every target is idempotent.
#   make demo   build and run the whole smoke suite on the CPU vendor, then print the report (README command 1)
#   make test   lint, unit and integration tests against the real engine (README command 2, CI)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MILABOX := $(BIN)/milabox
DEMO := --suite all
HOST_TORCH := $(shell sed -n 's/^torch_version = "\(.*\)"/\1/p' milabox/vendors/cpu.toml)
RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: demo test venv engine base images lint unit integration clean-containers help disk registry-tools slurm-tools \
	chromium perf readme

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

# Debian's docker-registry, which the registry tests start on 127.0.0.1 (push/pull by digest).
registry-tools:
	@command -v docker-registry >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker-registry >/dev/null; }
	@command -v docker-registry >/dev/null || echo "docker-registry is missing (needs root to install): registry tests will fail"

# Slurm's daemons and clients and munge (Debian's), which the Slurm tests start as a one-node cluster.
slurm-tools:
	@command -v slurmctld >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq slurmctld slurmd slurm-client \
	  munge >/dev/null; }
	@command -v slurmctld >/dev/null || echo "slurmctld is missing (needs root to install): Slurm tests will fail"

# Debian's Chromium, in which the HTML report test renders the report headless and checks the screenshot.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null || echo "chromium is missing (needs root to install): the HTML report test will fail"

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
	$(BIN)/ruff check milabox milabox_runtime tests scripts

unit: venv chromium  # tests/unit/ (no engine mark)
	$(BIN)/pytest -q -m "not engine"

integration: base registry-tools slurm-tools  # tests/engine/ (marked engine)
	$(BIN)/pytest -q -m engine

test: venv lint base registry-tools slurm-tools chromium
	$(BIN)/pytest -q

clean-containers: venv
	@$(BIN)/python -c 'from milabox.engine import Engine; e = Engine(); [e.client.containers.get(c).remove(force=True) for c in e.containers()]'

# Unique disk of the CPU suite's images against the goal (at most twice the runtime image).
disk: base
	$(MILABOX) build --suite all --vendor cpu
	$(BIN)/python scripts/disk.py cpu

# Measure milabox itself (figures with their goals, not a test): container vs native rate, orchestration
# overhead per attempt, report time over 100 runs x 20 benchmarks. Natively, bert needs its transformers.
BERT_TRANSFORMERS := $(shell sed -n 's/.*"\(transformers==[^"]*\)".*/\1/p' milabox/suite/bert/benchmark.toml)
perf: images
	@$(BIN)/pip install --quiet '$(BERT_TRANSFORMERS)'
	$(BIN)/python scripts/perf.py

# The README's benchmark table, regenerated from the definitions (a test checks it is current).
readme: venv
	$(BIN)/python scripts/readme_table.py
