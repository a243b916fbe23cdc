"""Builds a throwaway agent configuration (settings, inventory, runbooks) in a temp dir for engine tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.app import App
from agent.registry import Registry
from tests.unit.fake_connector import FakeConnector, FakeWorld

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """\
management:
  addresses: [10.9.0.10]
protected:
  hosts: [dc1]
  cidrs: [10.9.9.0/24]
  accounts: [Administrator]
defaults:
  ssh_linux:
    credentials: {username: root, private_key: file:/nonexistent/key}
hosts:
  web1: {address: 10.9.0.21, os: linux, tags: [web], data: [ssn], residents: {MA: null}}
  web2: {address: 10.9.0.22, os: linux}
  web3: {address: 10.9.0.23, os: linux}
  dc1: {address: 10.9.0.5, os: linux}
  vault: {address: 10.9.9.7, os: linux}
  win1: {address: 10.9.0.40, os: windows}
"""


def make_env(tmp: Path, *, retries: int = 3) -> tuple[App, FakeWorld]:
    (tmp / "runbooks").mkdir()
    for name in ("isolate-host.yaml", "release-host.yaml"):
        shutil.copy(REPO / "agent" / "data" / "runbooks" / name, tmp / "runbooks" / name)
    (tmp / "runbooks" / "two-steps.yaml").write_text(
        "name: two-steps\ntarget: host\nsteps:\n  - {id: isolate, action: isolate}\n"
        "  - {id: broken, action: fail_step}\nrollback: reverse\n")
    (tmp / "inventory.yaml").write_text(INVENTORY)
    (tmp / "agent.yaml").write_text(
        "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        f"evidence_dir: var/evidence\nengine: {{retries: {retries}, backoff: 0.01}}\n")
    world = FakeWorld()
    FakeConnector.world = world
    app = App(config_path=tmp / "agent.yaml", actor="tester@lab")
    app.__dict__["registry"] = Registry(extra={"ssh_linux": FakeConnector})
    return app, world
