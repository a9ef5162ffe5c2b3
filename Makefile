# Flywheel's one task vocabulary, shared by people, CI and the README.
# Every target installs what it needs; `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
SERVING_VENV := .venv-serving
BIN := $(VENV)/bin
FLYWHEEL := $(BIN)/flywheel
# Built tools live outside the repo so that clean clones reuse them.
TOOLS_DIR ?= $(HOME)/.cache/flywheel/tools
export FLYWHEEL_TOOLS_DIR := $(TOOLS_DIR)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- environments -----------------------------------------------------------

$(VENV)/.ready: requirements/dev.txt pyproject.toml
	@echo ">> building $(VENV) from requirements/dev.txt"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

$(SERVING_VENV)/.ready: requirements/serving.txt pyproject.toml $(VENV)/.ready
	@echo ">> building $(SERVING_VENV) from requirements/serving.txt (seldon-core needs protobuf<4)"
	$(PYTHON) -m venv $(SERVING_VENV)
	$(BIN)/uv pip install --quiet --python $(SERVING_VENV)/bin/python --require-hashes -r requirements/serving.txt
	$(BIN)/uv pip install --quiet --python $(SERVING_VENV)/bin/python --no-deps -e .
	@touch $@

.PHONY: setup
setup: $(VENV)/.ready $(SERVING_VENV)/.ready ## Build the virtualenvs (.venv for pipelines and tests, .venv-serving for seldon-core)

.PHONY: lock
lock: $(VENV)/.ready ## Re-resolve requirements/*.txt from pyproject.toml
	for spec in dev:pipelines,dev pipelines:pipelines serving:serving; do \
	  name=$${spec%%:*}; extras=""; for e in $$(tr , ' ' <<<"$${spec#*:}"); do extras="$$extras --extra $$e"; done; \
	  $(BIN)/uv pip compile pyproject.toml $$extras --python-version 3.11 --generate-hashes \
	    --no-header --quiet -o requirements/$$name.txt; \
	done

# --- the loop ---------------------------------------------------------------

.PHONY: run
run: $(VENV)/.ready $(SERVING_VENV)/.ready ## A new week of data, the training pipeline, then a canary rollout, all local
	$(FLYWHEEL) data generate --next 7
	$(FLYWHEEL) run --deploy

.PHONY: compile
compile: $(VENV)/.ready ## Compile the pipelines to pipelines/compiled/*.yaml
	$(FLYWHEEL) compile --out pipelines/compiled

# --- checks -----------------------------------------------------------------

.PHONY: tools
tools: $(VENV)/.ready ## Build the pinned Go tools (cached in $(TOOLS_DIR))
	$(BIN)/python -m tools build

.PHONY: lint
lint: $(VENV)/.ready ## ruff, ruff format --check and mypy --strict on src/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: $(VENV)/.ready ## Format and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test-unit
test-unit: $(VENV)/.ready ## Unit tests and components under kfp.local
	$(BIN)/pytest -m "not integration and not e2e"

.PHONY: test-integration
test-integration: $(VENV)/.ready tools ## Tests against real servers on loopback
	$(BIN)/pytest -m integration

.PHONY: test-e2e
test-e2e: $(VENV)/.ready tools ## `make run` end to end in a scratch copy
	$(BIN)/pytest -m e2e

.PHONY: test
test: lint tools $(SERVING_VENV)/.ready ## Every check and every test
	$(BIN)/pytest

# --- benchmarks -------------------------------------------------------------

.PHONY: bench
bench: bench-pipeline ## All benchmarks

.PHONY: bench-pipeline
bench-pipeline: $(VENV)/.ready ## Pipeline overhead, caching and scaling, side by side
	$(BIN)/python -m benchmarks.pipeline

.PHONY: clean
clean: ## Remove virtualenvs, local runs and caches (not the Go tool cache)
	rm -rf $(VENV) $(SERVING_VENV) .flywheel data .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
