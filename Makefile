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
# UNIT_WORKERS processes (pytest-xdist). The integration tests mostly wait (sshd, timers, leases, servers: about a
# third of a core busy in one process), so they run on INTEGRATION_WORKERS processes too, a whole file per worker
# (--dist loadfile: a file's module-scoped labs and servers stay in one process), files with slow tests handed out
# first (tests/integration/conftest.py). Each worker builds its own session lab and Samba DC under a prefix it
# claims machine-wide (tests/slots.py) and keeps its own AGENT_STATE_DIR (tests/conftest.py).
UNIT_WORKERS ?= 2
INTEGRATION_WORKERS ?= 2

test: deps lint typecheck
	@$(BIN)/python -m pytest -q -n $(UNIT_WORKERS) tests/unit $(PYTEST_ARGS)
	@$(BIN)/python -m pytest -q -n $(INTEGRATION_WORKERS) --dist loadfile --no-loadscope-reorder \
		--ignore=tests/unit $(PYTEST_ARGS)

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
