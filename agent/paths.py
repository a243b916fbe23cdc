"""Where things live: the files shipped inside the package, and the default config/state/log folders.

Why package data (where :mod:`importlib.resources` finds it, see :func:`shipped`): ``pip install
containment-agent`` must give a working tool — the runbooks, the annotated example configuration and the
obligations table travel inside the wheel, next to the code that reads them, instead of being looked up in a
repository checkout that an installed tool does not have. Why FHS/XDG defaults: a daemon run by root keeps
configuration in ``/etc/containment-agent``, its journal in ``/var/lib/containment-agent`` and the audit log in
``/var/log/containment-agent``; the same tool run by a person keeps them under ``$XDG_CONFIG_HOME`` and
``$XDG_STATE_HOME``. Nothing is ever written next to the config file unless ``agent.yaml`` says so.

Standard library only: the thin warm client imports this.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APP", "audit_dir", "config_dir", "default_config_path", "shipped", "shipped_obligations",
           "shipped_runbooks", "state_dir"]

APP = "containment-agent"


def shipped(*parts: str) -> Path:
    """A file or folder shipped in the package (``agent/data/...``), as a real path.

    The wheel installs unzipped, so the resource is a file on disk: the package's own folder, which is what
    ``importlib.resources.files("agent")`` returns for it — without importing importlib.resources, ≈ 10 ms of
    every command that reads agent.yaml (its defaults name the shipped runbooks and obligations table). A zipped
    import (which this tool does not support) is refused with a clear message instead of a confusing "not found"
    later.
    """
    path = Path(__file__).resolve().parent.joinpath("data", *parts)
    if not path.exists():
        raise FileNotFoundError(f"shipped file {'/'.join(parts)} is missing from the installed package ({path}); "
                                "reinstall containment-agent")
    return path


def shipped_runbooks() -> Path:
    return shipped("runbooks")


def shipped_obligations() -> Path:
    return shipped("obligations.yaml")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable, "")
    base = Path(value) if value and os.path.isabs(value) else Path.home() / fallback  # XDG: relative values ignored
    return base / APP


def config_dir() -> Path:
    """``/etc/containment-agent`` for root, else ``$XDG_CONFIG_HOME/containment-agent`` (``~/.config/...``)."""
    return Path("/etc") / APP if _is_root() else _xdg("XDG_CONFIG_HOME", ".config")


def _override() -> Path | None:
    """``$AGENT_STATE_DIR`` (absolute): every default journal, evidence and audit path under it, for root too.

    Why: a second instance on one machine (a rehearsal beside the real agent, a test session run as root) must
    not share — or migrate — the real agent's journal in ``/var/lib`` and write into its audit log."""
    value = os.environ.get("AGENT_STATE_DIR", "")
    return Path(value) if value and os.path.isabs(value) else None


def state_dir() -> Path:
    """Journal, evidence, known hosts: ``$AGENT_STATE_DIR``, else ``/var/lib/containment-agent`` for root, else
    ``$XDG_STATE_HOME/...``."""
    override = _override()
    if override is not None:
        return override
    return Path("/var/lib") / APP if _is_root() else _xdg("XDG_STATE_HOME", ".local/state")


def audit_dir() -> Path:
    """The audit log: ``$AGENT_STATE_DIR/audit``, else ``/var/log/containment-agent/audit`` for root, else
    ``<state dir>/audit``."""
    if _override() is None and _is_root():
        return Path("/var/log") / APP / "audit"
    return state_dir() / "audit"


def default_config_path() -> Path:
    """``$AGENT_CONFIG``, else ``./config/agent.yaml`` when present (a working copy), else
    ``<config dir>/agent.yaml``."""
    env = os.environ.get("AGENT_CONFIG")
    if env:
        return Path(env)
    local = Path("config/agent.yaml")
    if local.exists():
        return local
    return config_dir() / "agent.yaml"
