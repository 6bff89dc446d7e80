# The README's commands. Everything a fresh Debian machine (as root) needs is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: dev test bench chart-test install system-deps lint clean help kube-control-plane sso

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { bash scripts/install-system-deps.sh && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the platform with its dev tools

system-deps: ## Debian packages the tests need (PostgreSQL server, Chromium); idempotent
	@bash scripts/install-system-deps.sh

dev: install ## Run the whole platform locally (embedded services + dagster dev); Ctrl-C stops it
	$(BIN)/orchestration-platform dev up

test: install system-deps kube-control-plane sso ## Install everything, check the defs YAML (`dg check defs`), run the test suite
	$(BIN)/dg check defs
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install system-deps ## Run the benchmarks; results go to BENCHMARKS.md
	$(BIN)/python -m benchmarks

# kube-apiserver + kube-controller-manager for the `kubernetes` tests, built once (~15 min) into a cache
# outside the repo; the script runs only when the pinned binaries are missing.
KUBE_BIN := $(HOME)/.cache/orchestration-platform/kubernetes/v1.36.3/bin
kube-control-plane:
	@test -x $(KUBE_BIN)/kube-apiserver -a -x $(KUBE_BIN)/kube-controller-manager || bash scripts/install-kube-control-plane.sh

# oauth2-proxy for the real sign-in test, built once from its Go module (~5-15 min) into a cache outside the repo.
SSO_BIN := $(HOME)/.cache/orchestration-platform/sso/oauth2-proxy-v7.15.6/oauth2-proxy
sso:
	@test -x $(SSO_BIN) || bash scripts/install-sso.sh

chart-test: install kube-control-plane ## The Helm chart: offline checks, then on a real Kubernetes API server
	bash scripts/install-helm.sh
	$(BIN)/pytest orchestration_platform_tests/chart $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check .

clean: ## Remove the local state (.local) but keep .venv
	rm -rf .local
