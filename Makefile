# Two commands for a fresh machine: `make run` (set up and start the app locally) and `make test`.
# `make lint` (ruff + mypy --strict) and `make test-fast` (the in-process unit tests) are the quick loop.
# Everything is installed into ./.venv and ./node_modules; nothing is installed globally.

# Python 3.13, as on Azure (Python 3.13 function apps run Microsoft's azure-functions-runtime worker).
# `python3.13` from PATH, else a pyenv install; PYTHON=/path/to/python3.13 overrides both.
PYTHON ?= $(shell for p in python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 2>/dev/null); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint checkov

$(STAMP): requirements.txt requirements-local.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found: install it (python.org, pyenv install 3.13, or apt) or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version' || { echo "$(PYTHON) is not Python 3.13" >&2; exit 1; }
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then echo "$(VENV) is not Python 3.13: recreating it"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP)

# checkov and hadolint (the Bicep and Dockerfile linters tests/deploy runs) live in their own virtualenv: checkov's
# dependency pins are not the app's.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

checkov: $(CHECKOV_STAMP)

# `make run` runs activities in one worker process with all the cores, as Azure does (see README).
run: export FUNCTIONS_WORKER_PROCESS_COUNT ?= 1
# one thread per activity host.json runs at once, so activities waiting in the batcher block nothing else
run: export PYTHON_THREADPOOL_THREAD_COUNT ?= 16
run: setup
	$(PY) -m durable_host --app-dir .

test: export CHECKOV ?= $(CURDIR)/$(CHECKOV_VENV)/bin/checkov
test: setup node_modules/.installed checkov browser odbc
	$(PY) -m pytest

# The unit tests only (marker `unit`: in-process, no host subprocess, no Azurite, no browser): well under 30 s.
test-fast: setup
	$(PY) -m pytest -m unit -q

# The long load, crash and fuzz soak (benchmarks/soak.py; its short form runs in `make test`): 200 tasks,
# 5 random SIGKILLs of the host, 2,000 hostile requests. Exits 1 naming every problem; the report is in docs/.
.PHONY: soak
soak: setup
	$(PY) benchmarks/soak.py --tasks 200 --kills 5 --fuzz 2000 --json docs/soak_report.json

# ruff (lint and format) on the whole tree, mypy --strict on every package (configured in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy --strict

# tests/browser: Debian's Chromium and its WebDriver (Playwright's own browser download cannot work here).
# Installed only when missing; needs root or sudo.
.PHONY: browser
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
			|| echo 'could not install chromium: the browser tests will be skipped' >&2; \
	fi

# pyodbc (Azure SQL) loads unixODBC's libodbc.so.2 when imported; tests/storage/test_sql_access_token.py
# needs it (not Microsoft's SQL Server driver). Installed only when missing; needs root or sudo.
.PHONY: odbc
odbc: setup
	@if ! $(PY) -c 'import pyodbc' 2>/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq unixodbc \
			|| echo 'could not install unixodbc: the Azure SQL access-token tests will be skipped' >&2; \
	fi
