"""Agent-level errors (configuration, guards, runbooks) — distinct from connector failures.

    AgentError
    ├── ConfigError      a config/inventory/runbook file is wrong: carries file, line and field
    ├── InputError       a value given on the command line or in an alert is wrong (host name, address, duration)
    ├── GuardRefused     a guard refused the plan (protected asset, unsupported OS, blast radius); nothing was touched
    └── NotFound         an incident/action/host the user named does not exist
"""

from __future__ import annotations

__all__ = ["AgentError", "ConfigError", "GuardRefused", "InputError", "NotFound"]


class AgentError(Exception):
    """Base of agent errors; ``str()`` is the message shown to the user."""


class ConfigError(AgentError):
    """A configuration or runbook file is invalid. The message names file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{field + ': ' if field else ''}{message}")


class InputError(AgentError):
    """A value supplied by the user or an alert is invalid; names the field and the value."""


class GuardRefused(AgentError):
    """A guard refused the request before any connection was opened."""


class NotFound(AgentError):
    """The named object does not exist."""
