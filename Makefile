# gridplace — the two commands that matter: `make demo` and `make test`.
# Both do all the setup they need on a fresh machine: the Python environment (uv, from PyPI) and
# the local cluster's binaries (built once from Go modules and Debian packages, then cached).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
CLUSTER := $(RUN) gridplace-cluster

.PHONY: help setup lint test test-unit demo cluster-build cluster-up cluster-down cluster-status

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

cluster-build: setup ## build the local cluster's binaries that are not cached yet (minutes, once)
	$(CLUSTER) build

test: lint cluster-build ## everything: lint, unit tests and the tests against the local cluster
	$(RUN) pytest

demo: cluster-up ## the local demo: operator, example models placed, a carbon spike moves them
	@echo
	@echo "GPU inventory, as the API server reports it:"
	@$(CLUSTER) inventory
	$(RUN) gridplace-demo

cluster-up: setup ## start the local cluster (default topology); idempotent
	$(CLUSTER) up

cluster-down: setup ## stop the local cluster; no process stays behind
	$(CLUSTER) down

cluster-status: setup ## what runs, the kubeconfig path and the Prometheus URL
	$(CLUSTER) status
