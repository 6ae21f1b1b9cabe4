# docker-tls: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test quick lint invoke bench reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

## Run a whole stack lifecycle locally (SSM endpoint + CloudFormation receiver in-process).
demo: $(STAMP)
	LOG_LEVEL=WARNING $(BIN)/python -m devkit.demo

## Lint, type-check and run every test (the Docker daemon tests need root and dockerd).
test: lint
	$(BIN)/python -m pytest -q

## The tests that need no Docker daemon.
quick: lint
	$(BIN)/python -m pytest -q -m 'not dockerd'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam build
