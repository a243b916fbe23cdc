"""Optional dependencies: which extra of ``containment-agent`` brings which library, and the error when missing.

Why extras: a site that only isolates Linux hosts should not have to install WeasyPrint's graphics stack, netmiko
or the WinRM/Kerberos libraries. Each is an extra (``pip install 'containment-agent[windows,ad]'``); when a
command needs one that is not installed, the error names the extra to install instead of a ModuleNotFoundError
from deep inside a connector.
"""

from __future__ import annotations

import importlib.util

from agent.errors import ConfigError

__all__ = ["EXTRAS", "MissingExtra", "missing_extra", "require"]

#: top-level module → (extra, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "winrm": ("windows", "Windows hosts over WinRM (pywinrm)"),
    "requests_ntlm": ("windows", "Windows hosts over WinRM (NTLM)"),
    "spnego": ("windows", "Windows hosts over WinRM (message encryption)"),
    "ldap3": ("ad", "Active Directory accounts (ldap3)"),
    "netmiko": ("firewall", "firewalls and routers (netmiko)"),
    "weasyprint": ("report", "PDF counsel reports (WeasyPrint)"),
    "gssapi": ("kerberos", "Kerberos authentication (python-gssapi)"),
    "argon2": ("console", "the web console's operator passwords (argon2-cffi)"),
    "multipart": ("console", "the web console's forms (python-multipart)"),
    "python_multipart": ("console", "the web console's forms (python-multipart)"),
    "psycopg": ("postgres", "a PostgreSQL journal (psycopg)"),
    "celery": ("workers", "per-site workers (Celery on RabbitMQ)"),
    "kombu": ("workers", "per-site workers (Celery on RabbitMQ)"),
}


class MissingExtra(ConfigError):
    """A feature was asked for whose optional dependency is not installed."""


def missing_extra(module: str | None, needed_by: str) -> MissingExtra:
    """The error for a ``ModuleNotFoundError`` of ``module`` met while loading ``needed_by``."""
    top = (module or "").split(".")[0]
    if top in EXTRAS:
        extra, what = EXTRAS[top]
        return MissingExtra(f"{needed_by} needs the optional dependency {top!r} for {what}: "
                            f"pip install 'containment-agent[{extra}]'")
    return MissingExtra(f"{needed_by} needs the Python module {top or module!r}, which is not installed")


def require(module: str, needed_by: str) -> None:
    """Raise :class:`MissingExtra` unless ``module`` can be imported (found without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, needed_by)
