#!/usr/bin/env bash
# Create the venv (if missing) and install the project editable with its dev extras.
# "compat" editable mode: a plain path in a .pth file instead of setuptools' import hook, which costs ≈ 20 ms at
# every start of the `agent` command (bench/contain_vs_ssh.py counts whole processes). pip's output is kept in
# .venv/install.log and shown only when the installation fails (setuptools warns that this mode is transitional;
# pyproject.toml pins the build backend below the version that would drop it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3.11}"
test -x .venv/bin/python || "$PY" -m venv .venv
# constraints.txt: the versions CI tests (pyproject.toml keeps the accepted ranges)
if ! .venv/bin/pip install --disable-pip-version-check -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat \
    >.venv/install.log 2>&1; then
  tail -n 40 .venv/install.log >&2
  echo "install-venv: pip failed; full log in .venv/install.log" >&2
  exit 1
fi
