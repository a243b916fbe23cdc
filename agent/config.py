"""Agent settings (``agent.yaml``): where the journal, audit log and runbooks live, and engine tunables.

Relative paths are resolved against the config file's directory so the same tree works from any cwd. Paths
left out follow :mod:`agent.paths`: the shipped runbooks and obligations table, the journal and evidence in the
state folder (``/var/lib/containment-agent``), the audit log in ``/var/log/containment-agent`` — or the
``$XDG_STATE_HOME`` equivalents when not root. Never next to the configuration in ``/etc``.
Secrets are never stored here; see :mod:`agent.secrets` for ``env:``/``file:`` references.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agent import paths
from agent.paths import default_config_path
from agent.notify.config import NotifyConfig, parse_notifications
from agent.workers.config import WorkersConfig, parse_workers
from agent.yamlsrc import Node, load_yaml

__all__ = ["Settings", "already_loaded", "default_config_path", "load_settings"]

_TOP = {"inventory", "runbooks", "database", "audit_dir", "evidence_dir", "audit_signing_key", "timezone",
        "ssh", "engine", "daemon", "rules", "obligations", "warm", "organisation", "notifications",
        "console", "workers"}


@dataclass(frozen=True)
class Settings:
    path: Path
    inventory: Path
    runbooks: Path
    database: str
    audit_dir: Path
    evidence_dir: Path
    audit_signing_key: Path | None = None
    timezone: str = "UTC"
    known_hosts: Path | None = None
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    max_parallel: int = 8
    retries: int = 3
    backoff: float = 0.5
    confirm_timeout: int = 300
    confirm_count_above: int = 5  # CLI: acting on more hosts than this asks for the expected count, not just y/N
    warm: str = "off"  # "auto": a cold command starts `agent warm` in the background for the next ones
    rules: Path | None = None
    obligations: Path | None = None
    daemon: dict[str, object] = field(default_factory=dict)
    organisation: dict[str, object] = field(default_factory=dict)  # name + ORGANISATION_FACTS booleans
    notifications: NotifyConfig = field(default_factory=NotifyConfig)
    console: dict[str, object] = field(default_factory=dict)  # agent/console/settings.py reads it
    workers: WorkersConfig | None = None  # per-site workers (agent/workers); None: every action runs here

    def database_url(self) -> str:
        if "://" in self.database:
            return self.database
        return f"sqlite:///{self.database}"


def _path(node: Node, base: Path) -> Path:
    text = node.str_()
    text = text.removeprefix("file:")
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else (base / p).resolve()


# What this process has read, by the path it was asked for: `warm: auto` asks after the command whether to start
# a warm server, and must not parse and validate agent.yaml a second time to find out (memory only, per process).
_LOADED: dict[Path, Settings] = {}


def already_loaded(path: Path | str | None = None) -> Settings | None:
    """The settings :func:`load_settings` last returned for ``path`` in this process, if it was called."""
    return _LOADED.get(Path(path) if path else default_config_path())


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate ``agent.yaml``; every error names file, line and field."""
    cfg_path = Path(path) if path else default_config_path()
    _LOADED[cfg_path] = settings = _read(cfg_path)
    return settings


def _read(cfg_path: Path) -> Settings:
    root = load_yaml(cfg_path).root().mapping(allowed=_TOP, required={"inventory"})
    base = cfg_path.resolve().parent
    ssh = root.child("ssh").mapping(allowed={"known_hosts", "connect_timeout", "command_timeout"})
    eng = root.child("engine").mapping(allowed={"max_parallel", "retries", "backoff", "confirm_timeout",
                                                        "confirm_count_above"})
    db = root.get("database")
    if db is not None and "://" in db.str_():
        database = db.str_()
    else:
        database = str(_path(db, base)) if db is not None else str(paths.state_dir() / "agent.db")

    def opt_path(node: Node | None) -> Path | None:
        return _path(node, base) if node is not None else None

    def num(node: Node | None, default: float) -> float:
        return node.float_() if node is not None else default

    def integer(node: Node | None, default: int, lo: int, hi: int) -> int:
        return node.int_(minimum=lo, maximum=hi) if node is not None else default

    tz = root.get("timezone")
    timezone = tz.str_() if tz else "UTC"
    if tz is not None:
        try:
            from zoneinfo import ZoneInfo
            ZoneInfo(timezone)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError; malformed keys ValueError
            raise tz.error(f"unknown time zone {timezone!r} (example: America/New_York)") from None
    daemon = root.get("daemon")
    warm = "off"
    warm_node = root.get("warm")
    if warm_node is not None:  # YAML 1.1 reads a bare `off` as false: accept it as the word it looks like
        warm = "off" if warm_node.value is False else str(warm_node.value)
        if warm not in ("off", "auto"):
            raise warm_node.error(f"warm: {warm!r} is not one of off, auto")
    return Settings(
        warm=warm,
        notifications=parse_notifications(root.get("notifications")),
        console=dict(root.child("console").mapping(
            allowed={"listen", "four_eyes", "session_idle", "session_lifetime", "tls_cert", "tls_key"}).value)
        if root.get("console") is not None else {},
        path=cfg_path,
        inventory=_path(root.child("inventory"), base),
        runbooks=opt_path(root.get("runbooks")) or paths.shipped_runbooks(),
        database=database,
        audit_dir=opt_path(root.get("audit_dir")) or paths.audit_dir(),
        evidence_dir=opt_path(root.get("evidence_dir")) or paths.state_dir() / "evidence",
        audit_signing_key=opt_path(root.get("audit_signing_key")),
        timezone=timezone,
        known_hosts=opt_path(ssh.get("known_hosts")),
        connect_timeout=num(ssh.get("connect_timeout"), 5.0),
        command_timeout=num(ssh.get("command_timeout"), 30.0),
        max_parallel=integer(eng.get("max_parallel"), 8, 1, 256),
        retries=integer(eng.get("retries"), 3, 1, 20),
        backoff=num(eng.get("backoff"), 0.5),
        confirm_timeout=integer(eng.get("confirm_timeout"), 300, 10, 86400),
        confirm_count_above=integer(eng.get("confirm_count_above"), 5, 1, 100000),
        rules=opt_path(root.get("rules")),
        obligations=opt_path(root.get("obligations")) or paths.shipped_obligations(),
        daemon=dict(daemon.mapping().value) if daemon is not None else {},
        organisation=_organisation(root.get("organisation")),
        workers=_workers(root, database, base),
    )


def _workers(root: Node, database: str, base: Path) -> WorkersConfig | None:
    """``workers:``, checked against ``database``: a process that queues its audit records for the chain's writer
    shares the journal database with it (an embedded SQLite file has no writer draining it)."""
    workers = parse_workers(root.get("workers"), base)
    if workers is not None and workers.audit == "outbox" and "://" not in database:
        raise root.child("workers").child("audit").error(
            "workers.audit: outbox queues this process's audit records in the shared PostgreSQL journal for the "
            f"deployment's chain writer; this configuration's database is a local file ({database})")
    return workers


def _organisation(node: Node | None) -> dict[str, object]:
    """``organisation:``: the name on the counsel report and the facts that decide which federal rules apply."""
    if node is None:
        return {}
    from agent.report.vocabulary import ORGANISATION_FACTS

    node.mapping(allowed={"name", *ORGANISATION_FACTS})
    out: dict[str, object] = {}
    for key, child in node.items():
        out[key] = child.str_() if key == "name" else child.bool_()
    return out
