# ObservAI Hub: the single entry point. Every target sets itself up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# Python 3.12 (the Lambda runtime): PYTHON overrides; else pyenv's 3.12.x, else python3.12 on PATH.
PYTHON ?= $(shell for p in "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.12*/bin/python3.12 "$$(command -v python3.12)"; do [ -x "$$p" ] && { echo "$$p"; break; }; done)
STAMP := $(VENV)/.installed
# The compiled row builders (setup.py: the OTLP fast path, records to COPY rows), rebuilt in place when their sources change.
WIRE := $(VENV)/.built-wire

.PHONY: help install dev test test-unit test-integration test-e2e lint format build migrate invoke drain bootstrap openapi bench coldstart fuzz fuzz-tools clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'
	@echo "  (make dev: PORT=3001 for another port; OBSERVAI_STATE_DIR for another .observai)"

$(STAMP): pyproject.toml layers/common/requirements.txt
	@[ -n "$(PYTHON)" ] || { echo "Python 3.12 not found: install it (pyenv install 3.12.1) or set PYTHON=/path/to/python3.12"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(WIRE): $(STAMP) setup.py $(wildcard layers/common/observai/metrics/*.c layers/common/observai/telemetry/*.c layers/common/observai/telemetry/*.h layers/common/observai/telemetry/otlp/*.c layers/common/observai/telemetry/otlp/*.h)
	$(PY) setup.py -q build_ext --inplace
	@touch $(WIRE)

install: $(WIRE) ## Create the virtual environment and install everything (the C extension built in place)

dev: $(WIRE) ## Run the local stack (embedded Postgres, every HttpApi route on :3000 or $PORT, schedules)
	$(PY) -m observai_local serve

test: $(WIRE) ## Run the whole suite (unit, integration, end-to-end)
	$(PY) -m pytest -n 2 tests

test-unit: $(WIRE) ## Unit tests only
	$(PY) -m pytest tests/unit

test-integration: $(WIRE) ## Integration tests only (real Postgres)
	$(PY) -m pytest tests/integration

test-e2e: $(WIRE) ## End-to-end tests only (HTTP against the local runner)
	$(PY) -m pytest tests/e2e

lint: $(STAMP) ## ruff, mypy, sam validate --lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/sam validate --lint --region us-east-1

format: $(STAMP) ## Fix what ruff can fix and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

build: $(WIRE) ## sam build (no Docker)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/sam build

migrate: $(STAMP) ## Apply migrations (DATABASE_URL, else the embedded Postgres)
	$(PY) -m observai_local migrate

invoke: $(STAMP) ## Invoke one function: make invoke FN=HealthFunction EVENT=events/health_live.json
	$(PY) -m observai_local invoke $(FN) -e $(EVENT)

drain: $(STAMP) ## Drain a function's SQS queue until empty: make drain [FN=ExportWorkerFunction] (default the ingest spool)
	$(PY) -m observai_local drain --function $(or $(FN),IngestDrainFunction)

bootstrap: $(STAMP) ## The first organization and its owner (DATABASE_URL, else embedded): make bootstrap ORG="Acme" EMAIL=owner@acme.test
	@[ -n "$(ORG)" ] && [ -n "$(EMAIL)" ] || { echo 'usage: make bootstrap ORG="Acme" EMAIL=owner@acme.test'; exit 2; }
	$(PY) -m observai_local bootstrap --org-name "$(ORG)" --owner-email "$(EMAIL)"

openapi: $(STAMP) ## Regenerate docs/openapi.json from the resolvers
	$(PY) -m observai_local openapi --write

bench: $(WIRE) ## Benchmarks (ratios against a ceiling measured in the same run)
	$(PY) -m observai_local bench

coldstart: $(WIRE) ## Cold-start import time of each function
	@# As deployed: the layer ships the package's bytecode (layers/common/Makefile). Timestamp-checked here, so an
	@# edited module is compiled again rather than read stale.
	$(PY) -m compileall -q layers/common/observai
	$(PY) -m observai_local coldstart

# Fuzzing (docs/fuzzing.md): the C extensions built again with ASan, UBSan and libFuzzer's coverage, into their own
# folder (build/fuzz; the in-place .so files are not touched), and atheris' harnesses run on them (tests/fuzz).
FUZZ_SECONDS ?= 600
FUZZ_HARNESSES ?= otlp otlp_json otlp_messages rows
FUZZ_TOOLS := $(VENV)/.fuzz-tools
FUZZ_BUILD := build/fuzz
FUZZ_BUILT := $(FUZZ_BUILD)/.built
FUZZ_CFLAGS := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g

$(FUZZ_TOOLS): $(STAMP)
	@command -v clang >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev; }
	$(PY) -m pip install -q atheris
	@touch $(FUZZ_TOOLS)

fuzz-tools: $(FUZZ_TOOLS) ## Install what make fuzz needs (clang with its sanitizer runtimes, atheris)

$(FUZZ_BUILT): $(FUZZ_TOOLS) setup.py $(wildcard layers/common/observai/telemetry/*.c layers/common/observai/telemetry/*.h layers/common/observai/telemetry/otlp/*.c layers/common/observai/telemetry/otlp/*.h)
	CC=clang LDSHARED="clang -shared" CFLAGS="$(FUZZ_CFLAGS)" LDFLAGS="$(FUZZ_CFLAGS)" \
		$(PY) setup.py -q build_ext --force --build-lib $(FUZZ_BUILD)/lib --build-temp $(FUZZ_BUILD)/tmp
	@touch $(FUZZ_BUILT)

fuzz: $(WIRE) $(FUZZ_BUILT) ## Fuzz the C extensions under ASan/UBSan against the Python path (docs/fuzzing.md): make fuzz FUZZ_SECONDS=600 FUZZ_HARNESSES=otlp
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

clean: ## Remove build outputs, caches and the compiled extensions (keeps .venv and .observai)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache build $(WIRE)
	find layers/common -name '*.so' -delete
