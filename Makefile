# Bootstraps .venv on a fresh machine; `make test` and `make serve` are the two entry points.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test serve lint typecheck bench bench-serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,service]'
	touch $@

$(VENV)/.service-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[service]'
	touch $@

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench_fsck.py

bench-serve: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench_serve.py

serve: $(VENV)/.service-installed
	$(BIN)/pyostree serve --host 127.0.0.1 --port 8080 --data-dir ./data

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
