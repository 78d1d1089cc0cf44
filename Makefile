# make demo: build .venv if needed, install, run the pipeline on the embedded synthetic demo market.
# make test: install the dev extras, run the whole test suite.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SYMBOLS ?= VCB,VIC,VHM
export PREFECT_SERVER_ANALYTICS_ENABLED := false
SERVING := artifacts/serving
DEMO_TOKEN ?= demo-token-local-only

.PHONY: demo test lint bench clean-demo

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

# torch first, pinned: this exact version is a local CPU wheel; any other would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

# Starts a staging and a production model server on loopback, runs the full pipeline (which deploys the
# champions through staging to production), asks production for a VHM prediction, and stops both servers.
# The model servers and the pipeline share one bearer token; a real deployment sets its own.
demo: export STOCK_AI_DEPLOYMENT__TOKEN ?= $(DEMO_TOKEN)
demo: $(VENV)/.installed
	$(PYTHON) -m flows.ingest demo --symbols $(SYMBOLS) --days 1500 --seed 7
	@mkdir -p $(SERVING)
	@$(PYTHON) -m serving --stage staging --port 8001 --state-dir $(SERVING)/staging >$(SERVING)/staging.log 2>&1 & s=$$!; \
	$(PYTHON) -m serving --stage production --port 8002 --state-dir $(SERVING)/production >$(SERVING)/production.log 2>&1 & p=$$!; \
	trap 'kill $$s $$p 2>/dev/null; wait $$s $$p 2>/dev/null' EXIT; \
	$(PYTHON) -m flows.deployment_pipeline status --wait 60 && \
	$(PYTHON) -m flows.training --symbols $(SYMBOLS) --no-optimize && \
	{ $(PYTHON) -m flows.deployment_pipeline predict --symbol VHM || true; }

test: $(VENV)/.installed-dev
	$(PYTHON) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy settings.py schemas.py stores tasks flows models serving benchmarks

bench: $(VENV)/.installed-dev
	$(PYTHON) -m benchmarks.features
	$(PYTHON) -m benchmarks.training
	$(PYTHON) -m benchmarks.backtest
	$(PYTHON) -m benchmarks.serving
	$(PYTHON) -m benchmarks.fanout

clean-demo:
	rm -rf data artifacts
