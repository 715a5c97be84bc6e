# Two entry points: `make run` (the main job) and `make test` (install everything, pass the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test lint typecheck bench clean services

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

test: $(STAMP) services
	$(BIN)/ruff check catalytic bench tests
	$(BIN)/ruff format --check catalytic bench tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup --cov=catalytic --cov-branch --cov-report=term --timeout=300 $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check catalytic bench tests && $(BIN)/ruff format --check catalytic bench tests

typecheck:
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench $(SUITE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
