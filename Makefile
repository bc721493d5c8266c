# Two commands do all the set-up: `make demo` and `make test`.
# Both create/refresh .venv and node_modules only when their inputs changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.ogkit-installed
NODE_STAMP := node_modules/.ogkit-installed
export OGKIT_HOME ?= $(CURDIR)/.ogkit

.PHONY: setup demo test lint format gpu contracts clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# onnxruntime and onnxruntime-gpu share one module: keep a GPU install GPU-only.
	@if $(BIN)/python -m pip show --quiet onnxruntime-gpu 2>/dev/null; then \
		$(BIN)/python -m pip uninstall --quiet -y onnxruntime onnxruntime-gpu && \
		$(BIN)/python -m pip install --quiet 'onnxruntime-gpu>=1.18'; fi
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@# `npm install` (not `npm ci`): npm 11 leaves other platforms' optional anvil
	@# binaries out of the lock file, which `npm ci` then refuses.
	npm install --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/ogkit demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# Swap the CPU onnxruntime for onnxruntime-gpu (never both installed at once).
gpu: setup
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet 'onnxruntime-gpu>=1.18'

# Recompile the Solidity contracts with the pinned solc-js into ogkit/chain/artifacts.
contracts: $(NODE_STAMP)
	node ogkit/chain/compile.mjs

clean:
	rm -rf $(VENV) node_modules .ogkit .pytest_cache
