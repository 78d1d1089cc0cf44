# make demo: build .venv if needed, install, run the pipeline on the embedded synthetic demo market.
# make test: install the dev extras, run the whole test suite.
# Data, models and reports go under the folder make runs in (`make -C DIR -f path/to/Makefile demo` works too).
SHELL := /bin/bash
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT).venv
PYTHON := $(VENV)/bin/python
SYMBOLS ?= VCB,VIC,VHM
UNIVERSE ?= VN30
DAYS ?= 1000
EDGE ?= reversion
STAGING_PORT ?= 8001
PRODUCTION_PORT ?= 8002
export PREFECT_SERVER_ANALYTICS_ENABLED := false
SERVING ?= artifacts/serving
DEMO_TOKEN ?= demo-token-local-only

.PHONY: demo test lint bench clean-demo clean-cache

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

# torch first, pinned: this exact version is a local CPU wheel; any other would pull a multi-GB CUDA build.
$(VENV)/.installed: $(ROOT)pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e $(ROOT)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed $(ROOT)pyproject.toml
	$(PYTHON) -m pip install --quiet -e '$(ROOT)[dev]'
	touch $@

# Writes the synthetic market of the watch list and its universe (VN30), starts a staging and a production model
# server on loopback, runs the full pipeline (which deploys the champions through staging to production), asks
# production for a VHM prediction, and stops both servers.
# The model servers and the pipeline share one bearer token; a real deployment sets its own.
demo: export STOCK_AI_DEPLOYMENT__TOKEN ?= $(DEMO_TOKEN)
demo: export STOCK_AI_DEPLOYMENT__STAGING_ENDPOINT = http://127.0.0.1:$(STAGING_PORT)
demo: export STOCK_AI_DEPLOYMENT__PRODUCTION_ENDPOINT = http://127.0.0.1:$(PRODUCTION_PORT)
demo: $(VENV)/.installed
	$(PYTHON) -m flows.ingest demo --symbols $(SYMBOLS) --universe $(UNIVERSE) --days $(DAYS) --seed 7 --edge $(EDGE)
	@mkdir -p $(SERVING)
	@$(PYTHON) -m serving --stage staging --port $(STAGING_PORT) --state-dir $(SERVING)/staging >$(SERVING)/staging.log 2>&1 & s=$$!; \
	$(PYTHON) -m serving --stage production --port $(PRODUCTION_PORT) --state-dir $(SERVING)/production >$(SERVING)/production.log 2>&1 & p=$$!; \
	trap 'kill $$s $$p 2>/dev/null; wait $$s $$p 2>/dev/null' EXIT; \
	$(PYTHON) -m flows.deployment_pipeline status --wait 60 && \
	$(PYTHON) -m flows.training --symbols $(SYMBOLS) --universe $(UNIVERSE) --no-optimize && \
	{ $(PYTHON) -m flows.deployment_pipeline predict --symbol VHM || true; }

# Worker processes (pytest-xdist), one per core of the CI box; each has its own Prefect test server and folders.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev
	cd $(ROOT) && $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

lint: $(VENV)/.installed-dev
	cd $(ROOT) && $(VENV)/bin/ruff check .
	cd $(ROOT) && $(VENV)/bin/mypy settings.py settings_loader.py schemas.py stores tasks flows models serving benchmarks

bench: $(VENV)/.installed-dev
	$(PYTHON) -m benchmarks.features
	$(PYTHON) -m benchmarks.training
	$(PYTHON) -m benchmarks.backtest
	$(PYTHON) -m benchmarks.portfolio
	$(PYTHON) -m benchmarks.serving
	$(PYTHON) -m benchmarks.fanout
	$(PYTHON) -m benchmarks.sanity
	$(PYTHON) -m benchmarks.select
	$(PYTHON) -m benchmarks.evaluation
	$(PYTHON) -m benchmarks.scale
	$(PYTHON) -m benchmarks.scale --with-models
	$(PYTHON) -m benchmarks.promotion
	$(PYTHON) -m benchmarks.monitoring

clean-demo:
	rm -rf data artifacts reports

# Cached task results only (artifacts/cache): the next run recomputes what it needs.
clean-cache:
	rm -rf artifacts/cache
