# Two commands for a fresh machine: `make run` (set up and start the app locally) and `make test`.
# Everything is installed into ./.venv and ./node_modules; nothing is installed globally.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP)

# `make run` runs activities in two worker processes, each with its share of the cores (see README).
run: export FUNCTIONS_WORKER_PROCESS_COUNT ?= 2
run: setup
	$(PY) -m durable_host --app-dir .

test: setup node_modules/.installed
	$(PY) -m pytest
