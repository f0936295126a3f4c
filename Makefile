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
	chromium perf stability readme native-deps gpu-check debian-deps build-speed

help:
	@sed -n '1,4p' Makefile

# The host venv, installed with uv (seconds; bootstrapped into the venv with pip where the host has none), else
# with pip. uv reads none of pip's settings, so pip's configuration (index, find-links, cert, constraint) is handed
# to it as uv's environment variables.
UV_ENV = $(shell PYTHONPATH=. $(PYTHON) -c 'from milabox.images.sources import uv_environment as u; print(u())' 2>/dev/null)
CORE := $(VENV)/.milabox-core
$(CORE): pyproject.toml
	@[ ! -f $(PHASES) ] || date +%s.%N > .milabox/venv-start
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@uv=$$(command -v uv || echo $(BIN)/uv); { [ -x "$$uv" ] || $(BIN)/pip install --quiet uv; } \
	  && $(UV_ENV) $$uv pip install --quiet --python $(BIN)/python -e '.[test]' && echo "venv: installed with uv" \
	  || { $(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e '.[test]'; }
	@[ ! -f $(PHASES) ] || echo "venv $$(cat .milabox/venv-start) $$(date +%s.%N)" >> $(PHASES)
	@touch $@

# The CLI (above) is all the demo needs; the base image can be made while torch installs here (make -j).
$(BIN)/activate: $(CORE)
	@# Torch on the host only for the runtime's torch unit tests and native comparisons: the CPU wheel
	@# from pip's find-links where there is one (never the multi-GB CUDA build from PyPI).
	@{ [ -x $(BIN)/uv ] && $(UV_ENV) $(BIN)/uv pip install --quiet --python $(BIN)/python 'torch==$(HOST_TORCH)' 2>/dev/null; } \
	  || $(BIN)/pip install --quiet 'torch==$(HOST_TORCH)' 2>/dev/null \
	  || echo "no $(HOST_TORCH) wheel in pip's find-links: torch-based unit tests will be skipped"
	@touch $@

venv: $(BIN)/activate

# The Debian packages the set-up needs that are missing, in ONE apt transaction (root only; a no-op when all are
# there): command:package pairs. The demo needs dockerd and debootstrap; the test targets add their tools below.
DEBS := dockerd:docker.io debootstrap:debootstrap
TEST_DEBS := docker-registry:docker-registry slurmctld:slurmctld slurmd:slurmd srun:slurm-client munged:munge \
	chromium:chromium
test unit integration: DEBS += $(TEST_DEBS)
registry-tools: DEBS += docker-registry:docker-registry
slurm-tools: DEBS += slurmctld:slurmctld slurmd:slurmd srun:slurm-client munged:munge
chromium: DEBS += chromium:chromium
debian-deps:
	@missing=$$(for d in $(DEBS); do PATH=$$PATH:/usr/sbin:/sbin command -v $${d%%:*} >/dev/null || echo $${d#*:}; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then echo "apt: installing" $$missing; \
	  apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing >/dev/null; fi

# Demo phases (name start end, epoch seconds) go to $(PHASES); `make demo` prints them as a table at the end.
PHASES := .milabox/demo-phases.txt
phase = set -o pipefail; s=$$(date +%s.%N); $(2); rc=$$?; [ ! -f $(PHASES) ] || echo "$(1) $$s $$(date +%s.%N)" >> $(PHASES); \
	exit $$rc

# A Docker engine that answers: the running one, or (as root) Debian's docker.io installed and started.
engine: debian-deps
	@$(call phase,engine,bash scripts/engine.sh)

# Debian's docker-registry, which the registry tests start on 127.0.0.1 (push/pull by digest).
registry-tools: debian-deps
	@command -v docker-registry >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker-registry >/dev/null; }
	@command -v docker-registry >/dev/null || echo "docker-registry is missing (needs root to install): registry tests will fail"

# Slurm's daemons and clients and munge (Debian's), which the Slurm tests start as a one-node cluster.
slurm-tools: debian-deps
	@command -v slurmctld >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq slurmctld slurmd slurm-client \
	  munge >/dev/null; }
	@command -v slurmctld >/dev/null || echo "slurmctld is missing (needs root to install): Slurm tests will fail"

# Debian's Chromium, in which the HTML report test renders the report headless and checks the screenshot.
chromium: debian-deps
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null || echo "chromium is missing (needs root to install): the HTML report test will fail"

# The CPU vendor's base image: pulled where a registry answers, else made with debootstrap.
base: $(CORE) engine
	@$(call phase,base,$(MILABOX) base --vendor cpu)

# The build's own "built <tag> ... in <s>s" lines split its phase into the runtime image and the benchmark images.
images: base
	@$(call phase,build,$(MILABOX) build $(DEMO) --vendor cpu 2>&1 | tee .milabox/build.log)

# The engine and the host venv are made at once (make -j2); then the base, the images, the run, the timing table.
demo:
	@mkdir -p .milabox && : > $(PHASES)
	@$(MAKE) --no-print-directory -j2 engine $(CORE)
	@$(MAKE) --no-print-directory images
	@$(call phase,run,$(MILABOX) run $(DEMO) --vendor cpu --size smoke --run-dir $(RUN_DIR))
	@$(PYTHON) scripts/demo_timing.py $(PHASES) .milabox/build.log

lint: venv
	$(BIN)/ruff check milabox milabox_runtime tests scripts

unit: venv native-deps chromium  # tests/unit/ (no engine mark)
	$(BIN)/pytest -q -m "not engine"

integration: base registry-tools slurm-tools  # tests/engine/ (marked engine)
	$(BIN)/pytest -q -m engine

test: venv native-deps lint base registry-tools slurm-tools chromium
	$(BIN)/pytest -q

clean-containers: venv
	@$(BIN)/python -c 'from milabox.engine import Engine; e = Engine(); [e.client.containers.get(c).remove(force=True) for c in e.containers()]'

# The CPU runtime image built twice with --no-cache from the same lock, with uv and with pip: both times, `ratio X`.
build-speed: base
	$(BIN)/python scripts/build_speed.py cpu

# Unique disk of the CPU suite's images against the goal (at most 1.05 x the runtime image).
disk: base
	$(MILABOX) build --suite all --vendor cpu
	$(BIN)/python scripts/disk.py cpu

# Measure milabox itself (figures with their goals, not a test): container vs --runtime native rate (`ratio X`,
# >= 5 interleaved rounds of >= 10 s a side), orchestration overhead per attempt, report time over 100 runs x 20
# benchmarks. Natively, bert needs its transformers.
BERT_TRANSFORMERS := $(shell sed -n 's/.*"\(transformers==[^"]*\)".*/\1/p' milabox/suite/bert/benchmark.toml)
perf: images
	@$(BIN)/pip install --quiet '$(BERT_TRANSFORMERS)'
	$(BIN)/python scripts/perf.py

# The same matmul run twice (`difference: X %`) and how often a planted slow phase is flagged (scripts/stability.py).
stability: images
	$(BIN)/python scripts/stability.py

# Every fault for real on the engine, one row each: kill -9, engine restart + --resume, SIGINT, OOM, hang, corrupt
# result line, bad benchmark.toml, unknown vendor, flipped bundle byte, cut results pack (scripts/faults.py).
# The engine restart stops every container on the engine: FAULTS_ARGS=--skip-engine-restart on a shared machine.
.PHONY: faults
faults: base
	$(BIN)/python scripts/faults.py $(FAULTS_ARGS)

# The README's benchmark table, regenerated from the definitions (a test checks it is current).
readme: venv
	$(BIN)/python scripts/readme_table.py

# --runtime native in the project venv: every benchmark's requirements from the CPU lock, hash-checked, except
# torch, which the venv target installs (the CPU wheel from pip's find-links; a GPU machine keeps its own torch).
# The tests need them too: the meta-device parameter counts build every full-size model with the lock's libraries.
NATIVE_LOCK := $(VENV)/native-requirements.txt
native-deps: venv
	@awk '/^[A-Za-z0-9]/ { skip = ($$0 ~ /^torch==/) } !skip' milabox/vendors/locks/cpu.txt > $(NATIVE_LOCK)
	$(BIN)/pip install --quiet --require-hashes -r $(NATIVE_LOCK)

# On a machine with an NVIDIA GPU and torch (no Docker): every benchmark natively at smoke size, one full-size
# step each, matmul-bf16 sustained against the GPU's dense bf16 peak; one table (scripts/gpu_check.py).
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) scripts/gpu_check.py
