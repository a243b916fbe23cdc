# Two commands matter: `make demo` and `make test`. Both install what they need (apt packages + a venv).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

.PHONY: deps system venv demo demo-alert test unit bench lint typecheck clean

deps: system venv

system:
	@bash scripts/install-system.sh

$(BIN)/agent: pyproject.toml constraints.txt
	@PY=$(PY) bash scripts/install-venv.sh
	@touch $(BIN)/agent

venv: $(BIN)/agent

demo: deps
	@bash scripts/demo.sh

demo-alert: deps
	@bash scripts/demo-alert.sh

# The CI gate (.ci/run calls it): lint, typecheck, then the tests. Unit tests are independent and run on
# UNIT_WORKERS processes (pytest-xdist); everything else shares session-scoped labs and runs in one process.
UNIT_WORKERS ?= 2

test: deps lint typecheck
	@$(BIN)/python -m pytest -q -n $(UNIT_WORKERS) tests/unit $(PYTEST_ARGS)
	@$(BIN)/python -m pytest -q --ignore=tests/unit $(PYTEST_ARGS)

unit: venv
	@$(BIN)/python -m pytest -q -n $(UNIT_WORKERS) tests/unit $(PYTEST_ARGS)

bench: deps
	@bash bench/run.sh

lint: venv
	@$(BIN)/ruff check agent connectors tests bench

typecheck: venv
	@$(BIN)/mypy

clean:
	-@$(BIN)/agent lab down >/dev/null 2>&1 || true
	rm -rf $(VENV) var .pytest_cache
