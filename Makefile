# pilothouse developer entry points. `make up` runs the embedded fleet; `make test` runs
# everything CI runs. Both create .venv on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp builds from source: skip the multimodal tool, build portable code.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF

.PHONY: setup up test lint typecheck unit e2e clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing pilothouse. The first install builds llama.cpp from source:"
	@echo "about 6 minutes on 2 cores (pip caches the wheel, later installs take seconds)."
	$(BIN)/python -m pip install -v -e '.[embedded,bench,epp,k8s,ray,dev]' 2>&1 \
	  | tee $(VENV)/install.log \
	  | sed -nuE 's/^ *\[([0-9]+)\/([0-9]+)\].*/  building llama.cpp: step \1 of \2/p; /^(Successfully|ERROR)/p' \
	  || { tail -40 $(VENV)/install.log; exit 1; }
	touch $@

up: setup
	$(BIN)/pilothouse up

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

e2e: setup
	$(BIN)/pytest tests/e2e

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
