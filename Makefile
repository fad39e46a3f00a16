# The two commands of the quick start: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install up test lint bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## make up: install, migrate and run the hub with the example flows and the demo on this machine
up: install
	$(BIN)/hub up --demo

## make test: install what the tests need, lint, and run the whole suite
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/engine.py

docs: install
	$(BIN)/python -m hub.reference

clean:
	rm -rf $(VENV) .hub .pytest_cache .mypy_cache .ruff_cache
