# make demo: build .venv if needed, install, run the pipeline on the embedded synthetic demo market.
# make test: install the dev extras, run the whole test suite.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
SYMBOLS ?= VCB,VIC,VHM
export PREFECT_SERVER_ANALYTICS_ENABLED := false

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

demo: $(VENV)/.installed
	$(PYTHON) -m flows.ingest demo --symbols $(SYMBOLS) --days 1500 --seed 7
	$(PYTHON) -m flows.training --symbols $(SYMBOLS) --no-optimize

test: $(VENV)/.installed-dev
	$(PYTHON) -m pytest

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy settings.py schemas.py stores tasks flows models benchmarks

bench: $(VENV)/.installed-dev
	$(PYTHON) -m benchmarks.features
	$(PYTHON) -m benchmarks.training

clean-demo:
	rm -rf data artifacts
