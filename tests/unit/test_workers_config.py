"""The ``workers:`` section of agent.yaml: clear errors naming the field and value; the broker password only by
reference, never in the URL, never in an error."""

from __future__ import annotations

import os

from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import ConfigError


def settings(tmp: Path, workers: str):
    (tmp / "inventory.yaml").write_text("hosts: {}\n")
    path = tmp / "agent.yaml"
    path.write_text(f"inventory: inventory.yaml\ndatabase: agent.db\nworkers:\n{workers}")
    return load_settings(path)


def test_absent_means_everything_runs_here(tmp_path: Path):
    (tmp_path / "inventory.yaml").write_text("hosts: {}\n")
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\n")
    assert load_settings(tmp_path / "agent.yaml").workers is None


def test_parsed_and_password_read_from_its_reference(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MQ_PW", "p@ss/w:rd")
    cfg = settings(tmp_path, "  broker: amqp://agent@mq.example.org:5672/containment\n"
                             "  broker_password: env:MQ_PW\n  sites: [boston, lyon]\n  lease: 5\n  wait: 60\n").workers
    assert cfg is not None and cfg.sites == ("boston", "lyon") and cfg.lease == 5 and cfg.wait == 60
    assert cfg.no_worker_after == 30  # the default
    assert cfg.routes("boston") and not cfg.routes("paris") and not cfg.routes(None)
    assert cfg.broker_url() == "amqp://agent:p%40ss%2Fw%3Ard@mq.example.org:5672/containment"
    assert "p@ss" not in repr(cfg)


@pytest.mark.parametrize("body,message", [
    ("  broker: amqp://agent:hunter2@mq:5672//\n", "must not be written in the URL"),
    ("  broker: redis://mq:6379/0\n", "'redis' is not an AMQP URL"),
    ("  sites: [boston]\n", "missing required field 'broker'"),
    ("  broker: amqp://agent@mq//\n  broker_password: hunter2\n", "write env:NAME or file:PATH"),
    ("  broker: amqp://agent@mq//\n  sites: ['bad site!']\n", "site name"),
    ("  broker: amqp://agent@mq//\n  lease: 0\n", "lease"),
    ("  broker: amqp://agent@mq//\n  queue: x\n", "unknown field"),
    ("  broker: amqp://agent@mq//\n  no_worker_after: 0\n", "no_worker_after"),
    ("  broker: amqp://agent@mq//\n  audit: per-site\n", "workers.audit: 'per-site' is not one of writer, outbox"),
])
def test_errors_name_the_field(tmp_path: Path, body: str, message: str):
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, body)
    assert message in str(info.value)
    assert "workers" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_daemon_leaves_routed_targets_without_credentials_to_the_workers():
    """The central daemon re-verifies (drift, in doubt) only what it can read: a routed action whose target it has
    no credentials for is the site workers' (their sweep); with credentials, or not routed, it reads it itself."""
    from agent.workers.config import WorkersConfig, left_to_workers
    cfg = WorkersConfig(broker="amqp://agent@mq//", sites=("boston",))
    assert left_to_workers(cfg, "boston", None)
    assert not left_to_workers(cfg, "boston", object())  # this daemon holds the credentials too
    assert not left_to_workers(cfg, "lyon", None)  # not routed: run (and read) here
    assert not left_to_workers(None, "boston", None)


def test_worker_guards_come_from_its_inventory_not_the_message(tmp_path: Path):
    """A block on a device keeps the addresses it must never cover (management, protected CIDRs, the device
    itself) as the worker's own inventory says: a message can only add to them, never lift one (the broker is
    not trusted with guards). Fails before: the task's arguments replaced the journaled ones wholesale."""
    from agent.app import App
    from agent.store import Action
    from agent.workers.worker import SiteWorker
    repo = Path(__file__).resolve().parents[2]
    app = App(config_path=repo / "agent" / "data" / "config" / "agent.yaml")
    worker = SiteWorker.__new__(SiteWorker)  # the parts _planned uses (no broker, no PostgreSQL needed here)
    worker.app, worker.site, worker.planner = app, "hq", app.planner()
    entry = app.inventory.device("fw-edge")
    row = Action(id="a1", incident_id="INC-1", runbook="block-ip", step="block", target="fw-edge",
                 target_kind="device", connector="firewall", action="block_ip", kind="apply",
                 address="192.0.2.254", args={"addresses": ["203.0.113.7/32"]})
    forged = {"protected": [], "addresses": ["192.0.2.10/32"]}  # drop every guard, block the management host
    pa = worker._planned(row, entry, forged)
    assert pa.args["addresses"] == ["203.0.113.7/32"]  # the journal's, not the message's
    assert {"192.0.2.10/32", "192.0.2.0/28", "192.0.2.254"} <= set(pa.args["protected"])
    extra = worker._planned(row, entry, {"protected": ["198.51.100.0/24"]})
    assert "198.51.100.0/24" in extra.args["protected"]  # more protection from the planner is kept


def test_audit_role_writer_by_default_outbox_when_asked(tmp_path: Path):
    """Who writes the deployment's one audit chain (docs/workers.md): the central by default; a process set to
    ``outbox`` queues its records for it through the shared PostgreSQL journal — refused on a local SQLite file,
    which no writer drains."""
    from agent.app import App
    cfg = settings(tmp_path, "  broker: amqp://agent@mq//\n")
    assert cfg.workers is not None and cfg.workers.audit is None
    assert not App(config_path=tmp_path / "agent.yaml").audit_outbox
    with pytest.raises(ConfigError, match="workers.audit: outbox .* local file"):
        settings(tmp_path, "  broker: amqp://agent@mq//\n  audit: outbox\n")
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\ndatabase: postgresql+psycopg://a@127.0.0.1/a\n"
                                         "workers: {broker: 'amqp://agent@mq//', audit: outbox}\n")
    assert App(config_path=tmp_path / "agent.yaml").audit_outbox


@pytest.mark.skipif(os.geteuid() != 0, reason="Celery warns only as root (or in sudo/wheel)")
def test_worker_start_up_as_root_is_one_plain_line_not_celerys_alarm(capsys):
    """Celery's root warning (a dozen lines, "absolutely not recommended!") is about unpickling as root; the
    worker accepts JSON only, so it says instead, once, that root is not needed."""
    import warnings

    from celery.exceptions import SecurityWarning
    from celery.platforms import check_privileges

    from agent.workers.worker import quiet_root_warning
    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("default")
        check_privileges({"json"})
    assert any(issubclass(w.category, SecurityWarning) for w in before)  # what a root worker printed
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("default")
        quiet_root_warning()
        check_privileges({"json"})
    assert not any(issubclass(w.category, SecurityWarning) for w in after)
    assert "the worker needs no root" in capsys.readouterr().err
