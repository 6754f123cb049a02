# Candela: every target installs what it needs into .venv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint lab bench clean-db install

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' 2>/dev/null || { echo "error: Candela needs Python 3.11; install it or run 'make PYTHON=/path/to/python3.11 ...'" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

## Run the main job on the embedded defaults (SQLite under data/, in-process bus).
demo: $(STAMP)
	$(VENV)/bin/candela demo

## Run the whole test suite, including the import-linter contracts.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

## Open JupyterLab on notebooks/.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

## Benchmarks against vectorbt and backtesting.py (not tests; prints ratios).
bench: $(STAMP)
	$(PY) -m bench

clean-db:
	rm -f data/candela.core.db data/candela.core.db-*
