# Flywheel's one task vocabulary, shared by people, CI and the README.
# Every target installs what it needs; `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
SERVING_VENV := .venv-serving
MLSERVER_VENV := .venv-mlserver
# The peers of `make bench-monitor`, each in .venv-<name> from requirements/tools/<name>.txt.
MONITOR_PEERS := evidently nannyml
MONITOR_PEER_VENVS := $(MONITOR_PEERS:%=.venv-%)
BIN := $(VENV)/bin
FLYWHEEL := $(BIN)/flywheel
# Test workers: most tests wait on servers or on one core, so two share a 2-vCPU VM well.
# --dist loadfile keeps each module (and its servers) on one worker; --no-loadscope-reorder
# hands modules out in collection order, which conftest.py makes slowest first (harness/schedule.py).
PYTEST_WORKERS ?= 2
# One OpenMP thread per worker: scikit-learn's default of a thread per core, in two
# workers on two cores, oversubscribes them, and OpenMP's spinning threads then slowed
# a small HistGradientBoosting fit from 0.13 s to 15-66 s on a busy 2-vCPU VM.
PYTEST := OMP_NUM_THREADS=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder
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
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

$(SERVING_VENV)/.ready: requirements/serving.txt pyproject.toml $(VENV)/.ready
	@echo ">> building $(SERVING_VENV) from requirements/serving.txt (seldon-core needs protobuf<4)"
	$(PYTHON) -m venv $(SERVING_VENV)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(SERVING_VENV)/bin/python --require-hashes -r requirements/serving.txt
	$(BIN)/uv pip install --quiet --python $(SERVING_VENV)/bin/python --no-deps -e .
	@touch $@

# MLServer, a peer of `make bench-serving` only: its own virtualenv, as it needs newer pins than seldon-core.
$(MLSERVER_VENV)/.ready: requirements/tools/mlserver.txt $(VENV)/.ready
	@echo ">> building $(MLSERVER_VENV) from requirements/tools/mlserver.txt (MLServer 1.7.1 and its sklearn runtime)"
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(BIN)/uv pip install --quiet --python $(MLSERVER_VENV)/bin/python --require-hashes -r requirements/tools/mlserver.txt
	@touch $@

# Evidently and NannyML, peers of `make bench-monitor` only: each in its own virtualenv, as
# each pins its own pandas.
$(MONITOR_PEER_VENVS:%=%/.ready): .venv-%/.ready: requirements/tools/%.txt $(VENV)/.ready
	@echo ">> building .venv-$* from requirements/tools/$*.txt"
	$(PYTHON) -m venv .venv-$*
	$(BIN)/uv pip install --quiet --python .venv-$*/bin/python --require-hashes -r $<
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
	$(BIN)/python -c 'from tools.catalog import MONITORING_PEERS, PYTHON_TOOLS, SERVING_PEERS; [print(t.name, t.requirement, *t.pins) for t in (*PYTHON_TOOLS.values(), *SERVING_PEERS.values(), *MONITORING_PEERS.values())]' | \
	while read -r name requirement; do \
	  tr ' ' '\n' <<<"$$requirement" | $(BIN)/uv pip compile - --python-version 3.11 --generate-hashes \
	    --no-header --quiet -o requirements/tools/$$name.txt; \
	done

# --- the loop ---------------------------------------------------------------

.PHONY: run
run: $(VENV)/.ready $(SERVING_VENV)/.ready bytecode ## A new week of data, the training pipeline, then a canary rollout, all local
	$(FLYWHEEL) data generate --next 7
	$(FLYWHEEL) run --deploy

# Flywheel's own modules compiled to bytecode once, as an installed package has them: where
# PYTHONDONTWRITEBYTECODE is set (some VMs and CI images), a fresh clone otherwise compiles
# every module again in each process it starts, 0.35 s a `flywheel` command.
.PHONY: bytecode
bytecode: $(VENV)/.ready
	$(BIN)/python -m compileall -q src components pipelines benchmarks tools tests > /dev/null

.PHONY: compile
compile: $(VENV)/.ready ## Compile the pipelines to pipelines/compiled/*.yaml (resources from flywheel.yaml)
	$(FLYWHEEL) --config flywheel.yaml compile --out pipelines/compiled

.PHONY: chart-docs
chart-docs: $(VENV)/.ready ## Regenerate helm/flywheel/README.md from values.yaml
	$(BIN)/python -m tools.chart_readme

.PHONY: dashboard
dashboard: $(VENV)/.ready ## Regenerate the chart's Grafana dashboard, helm/flywheel/dashboards/flywheel.json
	$(BIN)/python -m tools.dashboard

.PHONY: docs-generate
docs-generate: $(VENV)/.ready ## Regenerate the docs site's reference pages (configuration keys, layers)
	$(BIN)/python -m tools.docs

.PHONY: docs
docs: $(VENV)/.ready ## Check the generated docs pages, then build the site into build/site (mkdocs --strict)
	$(BIN)/python -m tools.docs --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

.PHONY: manifests
manifests: $(VENV)/.ready ## Render the chart into manifests/base (the Kustomize base)
	$(BIN)/python -m tools.manifests

.PHONY: monitoring-picture
monitoring-picture: $(VENV)/.ready ## Redraw docs/monitoring-report.png: the monitoring report's plots on a simulated covariate drift
	$(BIN)/python -m tools.monitoring_picture

.PHONY: simulation-picture
simulation-picture: $(VENV)/.ready ## Redraw docs/simulation-report.png: flywheel simulate's plots on 40 days of concept drift
	$(BIN)/python -m tools.simulation_picture

.PHONY: ui-screenshots
ui-screenshots: $(VENV)/.ready browser ## Retake docs/ui/*.png: the UI's main pages in chromium, on the browser tests' simulated store
	$(BIN)/python -m tools.ui_screenshots

# --- checks -----------------------------------------------------------------

.PHONY: tools
tools: $(VENV)/.ready browser ## Build the pinned Go tools and fetch the test assets (cached in $(TOOLS_DIR))
	$(BIN)/python -m tools build

# The browser the UI's tests drive through Playwright: Debian's chromium (Playwright's own
# browser download is not used). CHROMIUM=/path names another one, which the tests launch.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM

.PHONY: browser
browser: ## Install Debian's chromium for the browser tests (apt-get, with sudo when not root), if missing
	@[ -x "$(CHROMIUM)" ] && exit 0; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo ">> installing chromium with $${sudo:+sudo }apt-get (for the browser tests)"; \
	apt=($$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium); \
	mkdir -p build; \
	{ "$${apt[@]}" || { $$sudo apt-get update -qq && "$${apt[@]}"; }; } >build/browser.log 2>&1 && [ -x "$(CHROMIUM)" ] \
	  || { echo "make browser: could not install chromium at $(CHROMIUM) (tried $${sudo:+sudo }apt-get install chromium: see build/browser.log): install it, or set CHROMIUM=/path/to/chromium" >&2; exit 1; }

# mypy and import-linter look for packages on disk, not through the editable install's
# package-dir mapping: they read flywheel laid out as installed, components and pipelines in it.
INSTALLED := build/installed

.PHONY: lint
lint: $(VENV)/.ready ## ruff, ruff format --check, mypy --strict and the import layers on src/, components/ and pipelines/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tools.layout $(INSTALLED)
	$(BIN)/mypy
	PYTHONPATH=$(INSTALLED) $(BIN)/lint-imports --no-cache

.PHONY: format
format: $(VENV)/.ready ## Format and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The unit tier builds .venv-serving too: tests/unit/serving/test_metrics.py runs seldon-core's
# own metrics code there, beside the patch (no server, so not an integration test).
.PHONY: test-unit
test-unit: $(VENV)/.ready $(SERVING_VENV)/.ready bytecode ## Unit tests and components under kfp.local
	$(PYTEST) -m "not integration and not e2e"

.PHONY: test-integration
test-integration: $(VENV)/.ready $(SERVING_VENV)/.ready tools bytecode ## Tests against real servers on loopback (not the chart)
	$(PYTEST) -m integration --ignore=tests/integration/test_chart.py

.PHONY: test-chart
test-chart: $(VENV)/.ready tools bytecode ## The chart and overlays: static checks and a real control plane
	$(BIN)/pytest -m integration tests/integration/test_chart.py

.PHONY: test-e2e
test-e2e: $(VENV)/.ready $(SERVING_VENV)/.ready tools bytecode ## `make run` end to end in a scratch copy
	$(BIN)/pytest -m e2e

.PHONY: test
test: lint docs tools $(SERVING_VENV)/.ready bytecode ## Every check and every test
	$(PYTEST)

.PHONY: check-generated
check-generated: compile chart-docs manifests docs dashboard ## Fail if a generated file (pipeline, chart README, base, docs pages, dashboard) is stale
	git diff --exit-code -- pipelines/compiled helm/flywheel/README.md manifests/base helm/flywheel/dashboards

.PHONY: check-images
check-images: $(VENV)/.ready ## Every Dockerfile is built by images.yml, and each is well formed
	$(BIN)/pytest -q tests/repo/test_dockerfiles.py tests/repo/test_workflows.py -k "dockerfile or matrix"

.PHONY: ci
ci: lint tools test-unit test-integration test-chart test-e2e check-generated ## Rehearse ci.yml here, step by step

# --- delivery (called by .github/workflows/cd.yml and prod-canary.yml) -------------

# With ENV, a run is the one ENV's own trigger engine would start: on the configuration ENV's
# cluster runs with (the chart's, with ENV's registry prefix and rollout policy from its
# overlay), never this checkout's flywheel.yaml. FLYWHEEL_* variables still apply over it.
ENV_CONFIG = build/environments/$(ENV)/flywheel.yaml

.PHONY: promote
promote: $(VENV)/.ready ## Write COMPONENTS_DIGEST and SERVING_DIGEST into manifests/overlays/$(ENV)
	$(BIN)/python -m tools.promote set "$(ENV)"

.PHONY: submit
submit: $(VENV)/.ready ## Start a pipeline run of IMAGE (default: the components image ENV's overlay records) on KFP_HOST, as ENV runs it; RUN_ID names it
	image="$(IMAGE)"; config=(); \
	if [ -n "$(ENV)" ]; then \
	  $(BIN)/python -m tools.promote config "$(ENV)" "$(ENV_CONFIG)"; config=(--config "$(ENV_CONFIG)"); \
	  [ -n "$$image" ] || image="$$($(BIN)/python -m tools.promote image "$(ENV)" components)"; \
	fi; \
	$(FLYWHEEL) "$${config[@]}" --set rollout.driver=kubernetes submit --image "$$image" \
	  --service-account flywheel-pipeline-runner $(if $(RUN_ID),--run-id "$(RUN_ID)")

# TIMEOUT (seconds) defaults to what fits in prod-canary.yml's 120-minute job.
.PHONY: wait-rollout
wait-rollout: $(VENV)/.ready ## Wait for the rollout of the version pipeline run RUN_ID registers in ENV's registry (exit 0 only if promoted)
	$(BIN)/python -m tools.promote config "$(ENV)" "$(ENV_CONFIG)"
	$(FLYWHEEL) --config "$(ENV_CONFIG)" rollout wait --run "$(RUN_ID)" --timeout "$(or $(TIMEOUT),6600)"

.PHONY: verify-prod
verify-prod: $(VENV)/.ready ## Check that prod serves the digest recorded in the prod overlay
	$(BIN)/python -m tools.promote verify prod

# --- benchmarks -------------------------------------------------------------

.PHONY: bench
bench: bench-pipeline bench-serving bench-rollout bench-loop bench-stats bench-monitor bench-ui ## All benchmarks

.PHONY: bench-pipeline
bench-pipeline: $(VENV)/.ready ## Pipeline overhead, caching and scaling, side by side
	$(BIN)/python -m benchmarks.pipeline $(ARGS)

.PHONY: bench-serving
bench-serving: $(VENV)/.ready $(SERVING_VENV)/.ready $(MLSERVER_VENV)/.ready ## Serving peers side by side for a binary, a multiclass and a regression model: constant seldon, seldon+sklearn, MLServer, Flywheel, gateway
	$(BIN)/python -m benchmarks.serving $(ARGS)

.PHONY: bench-monitor
bench-monitor: $(VENV)/.ready $(MONITOR_PEER_VENVS:%=%/.ready) ## One day-window of logged predictions (100k, 1M, 10M rows) monitored: flywheel monitor on 2 cores and 1 CPU, its re-look, Evidently, NannyML
	$(BIN)/python -m benchmarks.monitor $(ARGS)

.PHONY: soak
soak: $(VENV)/.ready $(SERVING_VENV)/.ready ## 200 req/s for 10 minutes through the gateway: no errors, flat memory, a complete prediction log
	$(BIN)/python -m benchmarks.soak $(ARGS)

.PHONY: bench-rollout
bench-rollout: $(VENV)/.ready ## Canary analysis, simulated: false rollbacks, detection per fault, time to rollback
	$(BIN)/python -m benchmarks.rollout $(ARGS)

.PHONY: bench-loop
bench-loop: $(VENV)/.ready ## The whole loop simulated on every scenario under five policies (30 days; ARGS="--days 60"), never and daily cached in ~/.cache/flywheel/bench-loop
	$(BIN)/python -m benchmarks.loop $(ARGS)

.PHONY: bench-stats
bench-stats: $(VENV)/.ready ## Every alarm against its nominal error, simulated: false alarms, interval coverage and power from 20 to 1,000,000 rows
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks.stats $(ARGS)

.PHONY: bench-ui
bench-ui: $(VENV)/.ready ## The web UI's render time per page over 1,000 versions, 1,000 rollouts and 10,000 window records, local and on S3 (SeaweedFS), cold and warm; the store cached in ~/.cache/flywheel/bench-ui
	$(BIN)/python -m benchmarks.ui $(ARGS)

.PHONY: clean
clean: ## Remove virtualenvs, local runs and caches (not the Go tool cache)
	rm -rf $(VENV) $(SERVING_VENV) $(MLSERVER_VENV) $(MONITOR_PEER_VENVS) .flywheel data .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
