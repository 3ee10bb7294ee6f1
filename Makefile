# gridplace — the two commands that matter: `make demo` and `make test`.
# Both do all the setup they need on a fresh machine (Python env via uv, local cluster binaries).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: help setup lint test test-unit demo

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: ## create the Python environment (installs uv from PyPI when missing)
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen

lint: setup ## ruff, mypy and the import contract
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

test-unit: setup ## tests that need no cluster
	$(RUN) pytest -m "not cluster"

test: lint ## everything: lint, unit tests and the tests against the local cluster
	$(RUN) pytest

demo: setup ## the local demo on the embedded default cluster
	@echo "demo: nothing to show yet"
