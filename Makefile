# Candela: every target installs what it needs into .venv from pyproject.toml.
#
# First, always: `check-python` checks $(PYTHON) against requires-python in pyproject.toml (and
# creates nothing if it does not fit), and removes a .venv made by another interpreter. Then the
# target installs its part of pyproject.toml through a sub-make, so the stamps are looked at only
# after the check (a stamp inside a removed .venv is gone by then):
#   demo: the runtime alone; test, lint, install: the dev extras (notebooks, oracles, validation,
#   distributed, portfolio, test tools); lab: notebooks; bench: oracles and validation. install and
#   demo then compile the Numba kernels once, with a progress line per step (candela warmup), so
#   that the first backtest does not wait for them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SUM := $(shell cksum < pyproject.toml | cut -d' ' -f1)
STAMP = $(VENV)/.installed-$(SUM)-$(1)

.PHONY: check-python install demo test lint lab bench clean-db

check-python:
	@test -n "$(PYTHON)" && command -v "$(PYTHON)" >/dev/null 2>&1 || { echo "error: no Python interpreter '$(PYTHON)' found: install one that fits requires-python in pyproject.toml and run 'make PYTHON=/path/to/python3.x ...'" >&2; exit 1; }
	@"$(PYTHON)" tools/check_python.py pyproject.toml $(VENV)

# $* is the extra to install ("runtime": none). The dev extras include every other one.
$(VENV)/.installed-$(SUM)-%: pyproject.toml
	@test -x $(PY) || "$(PYTHON)" -m venv $(VENV)
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '.installed-$(SUM)-*' -delete
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".$(if $(filter runtime,$*),,[$*])"
	@touch $@ $(if $(filter dev,$*),$(foreach extra,runtime notebooks oracles validation distributed bench portfolio,$(call STAMP,$(extra))))

## Install everything (dev extras), then compile the kernels once (candela warmup).
install: check-python
	@$(MAKE) --no-print-directory $(call STAMP,dev)
	$(VENV)/bin/candela warmup

## Run the main job on the embedded defaults (SQLite under data/, in-process bus).
demo: check-python
	@$(MAKE) --no-print-directory $(call STAMP,runtime)
	$(VENV)/bin/candela warmup
	$(VENV)/bin/candela demo

## Run the whole test suite: ruff (lint and format check), the import-linter contracts, pytest.
test: check-python
	@$(MAKE) --no-print-directory $(call STAMP,dev)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

lint: check-python
	@$(MAKE) --no-print-directory $(call STAMP,dev)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

## Open JupyterLab on notebooks/.
lab: check-python
	@$(MAKE) --no-print-directory $(call STAMP,notebooks)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

## Benchmarks against vectorbt and backtesting.py, and of the validation tools (not tests).
bench: check-python
	@$(MAKE) --no-print-directory $(call STAMP,bench)
	$(PY) -m bench

clean-db:
	rm -f data/candela.db data/candela.db-* data/candela.core.db data/candela.core.db-*
