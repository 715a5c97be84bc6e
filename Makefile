# Two entry points: `make run` (the main job) and `make test` (install everything, pass the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080

CHECKOV := $(VENV)/checkov/bin/checkov
CHECKOV_PIN := checkov==3.3.30

.PHONY: run test lint typecheck bench clean services deploy-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install the python3-venv package"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/catalytic serve --host $(HOST) --port $(PORT)

services:
	@tools/ensure-services

# checkov pins versions that clash with the project's (networkx<2.7, ...): it lives in a virtualenv of its own.
$(CHECKOV): | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q '$(CHECKOV_PIN)' || { rm -f $(CHECKOV); echo "checkov not installed: its test skips"; }

# Linters of the deployment files that come as Debian packages (shellcheck; promtool from prometheus).
deploy-tools: $(CHECKOV)
	@tools/ensure-deploy-tools

# Three workers on two cores: much of the suite waits on servers, subprocesses and timers, and a third worker
# runs while the others wait (on the 2-core reference machine a fresh clone's suite took 7.8-9.4 min with three,
# 11-12.7 min with two).
test: $(STAMP) services deploy-tools
	$(BIN)/ruff check catalytic bench tests
	$(BIN)/ruff format --check catalytic bench tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 3 --dist loadgroup --cov=catalytic --cov-branch --cov-report=term --timeout=300 $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check catalytic bench tests && $(BIN)/ruff format --check catalytic bench tests

typecheck:
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench $(SUITE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
