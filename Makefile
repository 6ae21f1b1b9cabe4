# docker-tls: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test quick lint invoke bench reliability clean build-DockerTlsFunction

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

## Measure what each request costs (SSM calls, latency, cold start, memory, artifact size);
## prints the tables and rewrites the generated part of docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py

## Run the reliability tests (SSM faults, bad input, concurrency, response path, secrets) and
## regenerate docs/RELIABILITY.md from the figures they record.
reliability: $(STAMP)
	$(BIN)/python scripts/reliability_report.py

## Run the handler on a CloudFormation event without Docker (embedded SSM, local receiver):
## make invoke EVENT=events/update.json [ARGS='--aws' | ARGS='--no-seed']
invoke: $(STAMP)
	$(BIN)/python -m devkit.invoke $(or $(EVENT),events/create.json) $(ARGS)

## `sam build` (BuildMethod: makefile) runs this with ARTIFACTS_DIR set: handler/ and its
## run-time dependencies for python3.13 arm64, without boto3 (the runtime has it).
build-DockerTlsFunction:
	PYTHON="$(PYTHON)" scripts/build_artifact.sh "$(ARTIFACTS_DIR)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam build
