# docker-tls: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# The SAM CLI lives in a virtualenv of its own (it pins its own boto3, click, ...). The version
# is pinned: devkit/sam_host_network.py wraps how it creates Lambda containers.
SAM_CLI_VERSION := 1.170.0
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)

# The CloudFormation engine (MiniStack) in a virtualenv of its own, on Python 3.13: its Lambdas
# run as subprocesses of its interpreter, so that must be the Lambda runtime's version. Pinned:
# devkit/stack_engine.py relies on how this version runs stacks (docs/ENGINE.md).
# aws-sam-translator (AWS's own SAM transform, which MiniStack runs) is pinned to the version
# the engine tests were written against.
MINISTACK_VERSION := 1.5.33
SAM_TRANSLATOR_VERSION := 1.115.0
ENGINE_VENV := .venv-engine
ENGINE_STAMP := $(ENGINE_VENV)/.installed-$(MINISTACK_VERSION)-$(SAM_TRANSLATOR_VERSION)

.PHONY: demo test quick test-py313 pytest-quick lint invoke bench reliability clean build-DockerTlsFunction sam-cli sam-local engine stack-local arm64-check bench-runtime local-ssm local-ssm-stop mutation rehearse

# One line per step, and one every 10 s while pip works (devkit/progress.py, on the system
# Python); pip's own output goes to $(VENV)/install.log, shown only if a step fails. Notes go
# to stderr, so a target's stdout stays its own (make invoke's is the response JSON).
PROGRESS := $(PYTHON) -m devkit.progress
# The wheel, and so the editable install, holds docker_tls_cli alone (handler/ inside it as
# docker_tls_cli._handler, never devkit/): a .pth file puts the checkout's root on the
# virtualenv's path, so the tests, devkit/ and docker-tls --local import the checkout's
# handler and devkit packages from any directory, as before.
$(STAMP): pyproject.toml
	@echo "make: creating $(VENV) ($$($(PYTHON) --version))" >&2
	@$(PYTHON) -m venv $(VENV)
	@echo "make: installing docker-tls and its development tools into $(VENV) (about a minute, once)" >&2
	@: > $(VENV)/install.log
	@$(PROGRESS) --log $(VENV)/install.log "make: upgrading pip in $(VENV)" -- \
	    $(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip \
	  && $(PROGRESS) --log $(VENV)/install.log "make: installing into $(VENV)" -- \
	    $(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' \
	  || { cat $(VENV)/install.log >&2; exit 1; }
	@$(BIN)/python -c 'import sys, sysconfig; open(sysconfig.get_path("purelib") + "/docker_tls_checkout.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	@rm -f $(VENV)/.installed-*
	@touch $@

## Run a whole stack lifecycle locally (SSM endpoint + CloudFormation receiver in-process).
demo: $(STAMP)
	LOG_LEVEL=WARNING $(BIN)/python -m devkit.demo

## Lint, type-check and run every test (the Docker daemon and SAM tests need root and dockerd,
## or a Docker engine).
test: lint $(SAM_STAMP) $(ENGINE_STAMP)
	$(BIN)/python -m pytest -q

## The fast tests, on both cores: no Docker daemon, no SAM, none of the slow matrices (under a
## minute here). make test runs everything.
quick: lint
	$(BIN)/python -m pytest -q -n 2 -m 'not dockerd and not sam and not slow'

## Every test that needs no Docker daemon (the slow ones included) on Python 3.13, the Lambda
## runtime's version, in .venv-3.13
## (the interpreter from PATH or pyenv: scripts/find_python.sh).
test-py313:
	@python=$$(scripts/find_python.sh 3.13) && \
	  $(MAKE) --no-print-directory VENV=.venv-3.13 PYTHON=$$python pytest-quick

## (The arm64 and engine tests are left to make test: their Python 3.13 is the emulated arm64
## one, or the engine's own, whatever runs pytest.)
pytest-quick: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m 'not dockerd and not sam and not arm64 and not engine'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Measure what each request costs (SSM calls, latency, cold start, memory, artifact size);
## prints the tables and rewrites the generated part of docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py

## The function in its runtime container (what sam-local needs): cold first invoke and warm
## round trips through sam local start-lambda, with and without the artifact's bytecode;
## rewrites the runtime section of docs/BENCHMARKS.md.
bench-runtime: $(STAMP) $(SAM_STAMP)
	$(BIN)/python bench/runtime.py $(ARGS)

## Mutation testing of handler/'s core against the fast tests (not in CI: about 15 minutes
## a seed here); draws a fresh seed unless ARGS names some (--seed 7,8,9; --seeds 3 draws three)
## and prints them; rewrites docs/MUTATION.md after a run over every module, and fails on a
## survivor that is not known to be equivalent.
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(ARGS)

## Run the reliability tests (SSM faults, bad input, concurrency, response path, secrets) and
## regenerate docs/RELIABILITY.md from the figures they record.
reliability: $(STAMP)
	$(BIN)/python scripts/reliability_report.py

$(SAM_STAMP):
	@echo "make: installing the AWS SAM CLI $(SAM_CLI_VERSION) into $(SAM_VENV) (about a minute, once)" >&2
	@$(PYTHON) -m venv $(SAM_VENV)
	@: > $(SAM_VENV)/install.log
	@$(PROGRESS) --log $(SAM_VENV)/install.log "make: installing the SAM CLI into $(SAM_VENV)" -- \
	    $(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION) \
	  || { cat $(SAM_VENV)/install.log >&2; exit 1; }
	@rm -f $(SAM_VENV)/.installed-*
	@touch $@

## Install the AWS SAM CLI into .venv-sam (used by sam-local and its test).
sam-cli: $(SAM_STAMP)

$(ENGINE_STAMP):
	@echo "make: installing the CloudFormation engine MiniStack $(MINISTACK_VERSION) into $(ENGINE_VENV) (Python 3.13, about 30 s, once)"
	@python=$$(scripts/find_python.sh 3.13) && $$python -m venv $(ENGINE_VENV)
	@$(ENGINE_VENV)/bin/pip install --quiet --disable-pip-version-check \
	  ministack==$(MINISTACK_VERSION) aws-sam-translator==$(SAM_TRANSLATOR_VERSION) boto3 \
	  > $(ENGINE_VENV)/install.log 2>&1 || { cat $(ENGINE_VENV)/install.log; exit 1; }
	@rm -f $(ENGINE_VENV)/.installed-*
	@touch $@

## Install the CloudFormation engine (MiniStack) into .venv-engine (used by stack-local and
## the engine tests).
engine: $(ENGINE_STAMP)

## The stack as CloudFormation runs it: the template and the built artifact deployed to a local
## CloudFormation engine (MiniStack on 127.0.0.1), driven through create, updates, a failed
## update's rollback, a staged CA rotation, a Rack replacement and delete. See docs/ENGINE.md.
stack-local: $(STAMP) $(ENGINE_STAMP)
	$(BIN)/python -m devkit.stack_local $(ARGS)

## The function as AWS runs it: sam build, then sam local invoke of events/{create,update,
## getter,delete}.json in a Python 3.13 runtime container against a local SSM endpoint.
## Needs a Docker engine (or root + dockerd); ARGS='--image debian' forces the offline image.
sam-local: $(STAMP) $(SAM_STAMP)
	$(BIN)/python -m devkit.sam_local $(ARGS)

## The arm64 artifact (the template's default) under emulation: built as sam build builds it
## (checked), then Create → Update → getter → Delete in Debian trixie's arm64 Python 3.13 under
## qemu-aarch64-static against a local SSM endpoint; one line per step. Needs apt's
## qemu-user-static and debootstrap, and root the first time (the root filesystem is cached in
## ~/.cache/docker-tls/arm64-rootfs). ARGS='--artifact DIR' runs an artifact already built.
arm64-check: $(STAMP)
	$(BIN)/python -m devkit.arm64_lifecycle $(ARGS)

## A local SSM endpoint that lasts (moto, state kept on disk) for every local command:
## eval "$$(make -s local-ssm)" points this shell's docker-tls, make invoke and make demo at it.
local-ssm: $(STAMP)
	@$(BIN)/python -m devkit.local_endpoint start

local-ssm-stop: $(STAMP)
	@$(BIN)/python -m devkit.local_endpoint stop

## Rehearse the staged CA rotation (docs/OPERATIONS.md) on the lasting local endpoint, one
## step at a time: make rehearse STAGE=create|introduce|switch|rollback|retire|cancel|status
## [RACK=rehearsal] [ARGS='--property KeyAlgorithm=ECDSA-P256']. Stdout: the response JSON.
rehearse: $(STAMP)
	@LOG_LEVEL=$${LOG_LEVEL:-WARNING} $(BIN)/python -m devkit.rehearse $(or $(STAGE),status) --rack $(or $(RACK),rehearsal) $(ARGS)

## Run the handler on a CloudFormation event without Docker (embedded SSM, local receiver):
## make invoke EVENT=events/update.json [ARGS='--aws' | ARGS='--no-seed']. Its stdout is the
## response JSON alone (no echo of the command); notes and the handler's logs go to stderr.
invoke: $(STAMP)
	@$(BIN)/python -m devkit.invoke $(or $(EVENT),events/create.json) $(ARGS)

## `sam build` (BuildMethod: makefile) runs this with ARTIFACTS_DIR set: handler/ and its
## run-time dependencies for python3.13 on the function's architecture, bytecode compiled,
## without boto3 (the runtime has it).
build-DockerTlsFunction:
	PYTHON="$(PYTHON)" scripts/build_artifact.sh "$(ARTIFACTS_DIR)"

clean:
	rm -rf $(VENV) $(SAM_VENV) $(ENGINE_VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam build
