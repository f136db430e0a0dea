# lakeloop: every target bootstraps what it needs from a fresh clone.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lakeloop-installed
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: setup browser postgres demo test test-fast bench up down lint lock clean

# Bytecode is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set every
# process (each flow run's, each test's server) would compile mlflow, whylogs, prefect... again: 23 s -> 7 s.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install -q "uv>=0.5,<1"
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)  ## app venv (.venv) with the `lakeloop` command; Label Studio's own venv (.venv-ls)
	$(BIN)/lakeloop setup

demo: setup  ## bring the local stack up and run the whole loop on synthetic churn
	$(BIN)/lakeloop demo

browser:  ## headless Chromium for the browser test: Debian's package (Playwright cannot download browsers here)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

postgres:  ## PostgreSQL server binaries for the shared-state tests: Debian's package (fixtures start a throwaway cluster)
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql; }

test: setup browser postgres  ## unit + integration tests against real servers started by fixtures
	$(BIN)/pytest -q -m "not slow" --timeout 900 --durations=30

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/pytest -q -m "not integration and not slow"

bench: setup
	$(BIN)/python -m bench.run_all

up: setup
	$(BIN)/lakeloop up

down:
	@test -x $(BIN)/lakeloop && $(BIN)/lakeloop down || true

lint: $(STAMP)  ## ruff, mypy and the import-direction contracts
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

lock:  ## re-resolve pins after editing pyproject.toml
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean: down
	rm -rf $(VENV) .venv-ls .lakeloop
