"""A cold ``agent status`` imports only what it needs (issue 21: cold status ≤ 0.25 s; the number lives in
bench/cli_startup.py, these tests guard the cause without timing anything).

Status reads the journal through the one store (agent.store's models, agent.journal_reads — the same reads as
``incidents show``; tests/unit/test_journal_reads.py), so SQLAlchemy's ORM and the four journal models are its
floor. Everything else heavy stays out: Alembic (the schema head is checked with one SELECT through the store),
the daemon's and console's models, the acting machinery, the connector libraries (paramiko, pywinrm, ldap3,
netmiko are each 50-300 ms), pydantic, rich, the daemon's and the report's stacks. (asyncio, importlib.metadata,
ssl and email are imported by SQLAlchemy itself: ``python -c "import sqlalchemy.orm"`` loads them.) Each test
runs the real entry point in a fresh interpreter over a journal written by the ORM, the way a responder's shell
would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.store import Action, ActionItem, Incident, Store, Transition, utcnow

REPO = Path(__file__).resolve().parents[2]

# Modules the status path must not import (each a prefix: its submodules too).
HEAVY = ("alembic", "agent.migrations.runner", "agent.daemon_models", "agent.journal", "agent.batching",
         "agent.items", "agent.containments", "agent.engine", "agent.plan", "agent.lifecycle", "agent.inventory",
         "agent.audit", "agent.intake", "agent.workers.celery_app", "connectors.ssh_linux",
         "connectors.winrm_windows", "connectors.active_directory", "connectors.firewall", "paramiko", "winrm",
         "ldap3", "netmiko", "pydantic", "rich", "celery", "kombu", "psycopg", "fastapi", "starlette", "uvicorn",
         "apscheduler", "jinja2", "weasyprint", "agent.report")
# ... and what it reads through: the one store (a second, hand-written query path is what issue 21 forbids).
ONE_PATH = ("sqlalchemy.orm", "agent.store", "agent.journal_reads")

PROBE = """
import sys
from agent.cli import main
code = main(sys.argv[1:])
with open(MODULES, "w") as fh:
    fh.write("\\n".join(sorted(sys.modules)))
sys.exit(code)
"""


def _config(tmp: Path, extra: str = "") -> Path:
    (tmp / "inventory.yaml").write_text(
        "management: {addresses: [192.0.2.10]}\n"
        "defaults:\n  ssh_linux:\n    credentials: {username: root, private_key: file:/nonexistent/key}\n"
        "hosts:\n  web01: {address: 127.0.1.21, os: linux}\n")
    (tmp / "agent.yaml").write_text(f"inventory: inventory.yaml\ndatabase: agent.db\naudit_dir: audit\n"
                                    f"evidence_dir: evidence\n{extra}")
    return tmp / "agent.yaml"


def _journal(db: Path) -> None:
    """One isolated host (verified, dead-man timer confirmed, TTL), one blocked address batch (two items, one
    undone), a disabled account with its (irreversible) password reset, an unblock (it lifts a block: never
    contained itself), one action in doubt and one interrupted — every section of the status table, and
    the words of every connector."""
    store = Store(f"sqlite:///{db}")
    now = utcnow()
    with store.session() as s:
        s.add(Incident(id="INC-1", title="t", requested_by="tester"))
        s.flush()
        iso = Action(incident_id="INC-1", seq=1, runbook="isolate-host", step="isolate", target="web01",
                     subject="web01", address="127.0.1.21", connector="ssh_linux", action="isolate", state="done",
                     changed=1, expires_at=now + timedelta(hours=2),
                     result={"details": {"deadman": {"reverts_at": (now + timedelta(minutes=5)).isoformat(),
                                                     "cancelled": True, "token": "secret-token"}}})
        block = Action(incident_id="INC-1", seq=2, runbook="block-ip", step="block", target="edge1",
                       subject="203.0.113.7", target_kind="device", address="192.0.2.1", connector="firewall",
                       action="block_ip", state="done", changed=1)
        doubt = Action(incident_id="INC-1", seq=3, runbook="isolate-host", step="isolate", target="web02",
                       subject="web02", address="127.0.1.22", connector="ssh_linux", action="isolate",
                       state="in_doubt", error="connection lost after the load")
        stuck = Action(incident_id="INC-1", seq=4, runbook="isolate-host", step="isolate", target="web03",
                       subject="web03", address="127.0.1.23", connector="ssh_linux", action="isolate",
                       state="applying", owner="host:1")
        disable = Action(incident_id="INC-1", seq=5, runbook="disable-account", step="disable", target="lab.test",
                         subject="jdoe", target_kind="account", connector="active_directory",
                         action="disable_account", state="done", changed=1)
        reset = Action(incident_id="INC-1", seq=6, runbook="disable-account", step="reset", target="lab.test",
                       subject="jdoe", target_kind="account", connector="active_directory", action="reset_password",
                       state="done", changed=1, reversible=0)
        lifted = Action(incident_id="INC-1", seq=7, runbook="unblock-ip", step="unblock", target="edge2",
                        subject="198.51.100.4", target_kind="device", connector="firewall", action="unblock_ip",
                        state="done", changed=1)  # lifts block_ip: never "contained" itself
        s.add_all([iso, block, doubt, stuck, disable, reset, lifted])
        s.flush()
        s.add(ActionItem(action_id=iso.id, canonical="host:web01", requested="web01", state="done", changed=1))
        s.add(ActionItem(action_id=block.id, position=0, kind="address", canonical="net:203.0.113.7/32",
                         requested="203.0.113.7", state="done", changed=1))
        s.add(ActionItem(action_id=block.id, position=1, kind="address", canonical="net:203.0.113.8/32",
                         requested="203.0.113.8", state="done", changed=1, undone_at=now))
        s.add(Transition(action_id=iso.id, from_state="verifying", to_state="done", detail="isolated"))
        s.add(Transition(action_id=block.id, from_state="verifying", to_state="done", detail="blocked"))
    store.close()


def _run(config: Path, tmp: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    modules = tmp / "modules.txt"
    env = {**os.environ, "AGENT_CONFIG": str(config), "AGENT_NO_WARM": "1", "NO_COLOR": "1", "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-c", f"MODULES = {str(modules)!r}\n" + PROBE, *argv], env=env, check=False,
                          capture_output=True, text=True, timeout=60, cwd=tmp)
    return proc, set(modules.read_text().split()) if modules.exists() else set()


@pytest.mark.parametrize("argv", [("status",), ("status", "--json")])
def test_status_with_containments_imports_nothing_heavy(tmp_path: Path, argv: tuple[str, ...]) -> None:
    from agent.registry import advertised_words
    assert advertised_words("ssh_linux") is not None, (
        "no agent.capabilities entry points installed: pip install -e '.[dev]' (pyproject.toml gained them)")
    config = _config(tmp_path)
    _journal(tmp_path / "agent.db")
    proc, modules = _run(config, tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    if "--json" in argv:
        doc = json.loads(proc.stdout)
        assert [a["target"] for a in doc["active"]] == ["web01", "edge1", "lab.test"]
        assert [a["action"] for a in doc["irreversible"]] == ["reset_password"]
        assert [i["requested"] for i in doc["active"][1]["items"]] == ["203.0.113.7"]
        assert [a["target"] for a in doc["in_doubt"]] == ["web02"]
        assert [a["target"] for a in doc["unfinished"]] == ["web03"]
        assert doc["active"][0]["timer"]["state"] == "cancelled"
    else:
        assert "isolated" in proc.stdout and "blocked 203.0.113.7" in proc.stdout, proc.stdout
        assert "disabled jdoe" in proc.stdout and "permanent: cannot be undone (cannot" in proc.stdout
        assert "edge2" not in proc.stdout
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == [], f"agent {' '.join(argv)} imported {sorted({m.split('.')[0] for m in loaded})}: {loaded}"
    assert set(ONE_PATH) <= modules


def test_empty_status_loads_no_connector(tmp_path: Path) -> None:
    """Nothing contained: not even the connector registry's scan of installed distributions is needed."""
    config = _config(tmp_path)
    Store(f"sqlite:///{tmp_path / 'agent.db'}").close()
    proc, modules = _run(config, tmp_path, "status")
    assert proc.returncode == 0 and "Nothing is contained." in proc.stdout, proc.stderr
    connectors = {"connectors.ssh_linux", "connectors.winrm_windows", "connectors.active_directory",
                  "connectors.firewall", "agent.registry", "connectors.base", *HEAVY}
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in connectors))
    assert loaded == []


def test_status_on_a_new_journal_creates_it_at_head(tmp_path: Path) -> None:
    """No journal yet: status creates and migrates it as before (through the store), then reports."""
    config = _config(tmp_path)
    proc, _modules = _run(config, tmp_path, "status")
    assert proc.returncode == 0 and "Nothing is contained." in proc.stdout, proc.stderr
    from agent.migrations import HEAD, current_revision
    store = Store(f"sqlite:///{tmp_path / 'agent.db'}")
    try:
        assert current_revision(store.engine) == HEAD
    finally:
        store.close()


def test_warm_auto_reads_agent_yaml_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`warm: auto`: after a cold command the CLI starts a warm server with the settings the command already
    read — agent.yaml is parsed and validated once per command, not again to find `warm: auto`."""
    import agent.config
    import agent.warm
    import agent.warm_client
    from agent import cli

    config = _config(tmp_path, "warm: auto\n")
    Store(f"sqlite:///{tmp_path / 'agent.db'}").close()
    monkeypatch.setenv("AGENT_CONFIG", str(config))
    monkeypatch.setenv("AGENT_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("AGENT_NO_WARM", raising=False)
    monkeypatch.setattr(agent.config, "_LOADED", {})
    monkeypatch.setattr(agent.warm_client, "try_forward", lambda argv: None)  # no server listens yet
    monkeypatch.setattr("sys.argv", ["agent", "status"])
    parsed: list[Path] = []
    real_load_yaml = agent.config.load_yaml
    monkeypatch.setattr(agent.config, "load_yaml", lambda path: parsed.append(Path(path)) or real_load_yaml(path))
    started: list[list[str]] = []
    monkeypatch.setattr("subprocess.Popen", lambda argv, **_kw: started.append(argv))

    assert cli.main() == 0
    assert parsed == [config]  # once, by the command
    assert len(started) == 1 and started[0][-2:] == ["agent.cli", "warm"]  # the warm server is still started


LEAVE_PROBE = """
import atexit, gc, os, sys
from agent.cli import main

class Canary:  # deleted when the interpreter tears its modules down (builtins may be gone by then)
    def __del__(self, mkdir=os.mkdir, path=TORN):
        mkdir(path)

sys.modules["agent.cli"].canary = Canary()
atexit.register(lambda: open(GC, "w").write(str(gc.isenabled())))  # atexit handlers still run
sys.argv = ["agent", *ARGV]
sys.exit(main())
"""


@pytest.mark.parametrize(("argv", "gc_on", "torn_down"), [
    (("status",), False, False), (("status", "--json"), False, False), (("incidents", "show", "INC-1"), False, False),
    (("contain", "--host", "web01", "--dry-run"), True, False),  # read-only too, but it may read many targets
    (("check-config",), True, True)])
def test_read_only_commands_leave_without_teardown(tmp_path: Path, argv: tuple[str, ...], gc_on: bool,
                                                   torn_down: bool) -> None:
    """`status`, `incidents list|show`, plans and dry runs end without the interpreter's teardown (≈ 90 M
    instructions of a cold status: agent/cli.py _leave says why), status and incidents with the cyclic GC off
    too; their output is complete and their atexit handlers run. Other commands exit as before."""
    config = _config(tmp_path)
    _journal(tmp_path / "agent.db")
    torn, gc_file = tmp_path / "torn", tmp_path / "gc.txt"
    env = {**os.environ, "AGENT_CONFIG": str(config), "AGENT_NO_WARM": "1", "NO_COLOR": "1", "COLUMNS": "160"}
    code = f"TORN = {str(torn)!r}\nGC = {str(gc_file)!r}\nARGV = {list(argv)!r}\n" + LEAVE_PROBE
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert gc_file.read_text() == str(gc_on), proc.stderr
    assert torn.exists() == torn_down, proc.stderr
    if argv[0] != "check-config":
        assert proc.returncode == 0, proc.stderr
        assert "web01" in proc.stdout
    if argv[0] == "contain":
        assert "--commands shows the exact text" in proc.stdout  # the plan's last line was flushed
    if "--json" in argv:
        assert json.loads(proc.stdout)["unfinished"][0]["target"] == "web03"  # the whole document was flushed
