"""The ``console:`` section of agent.yaml (all optional)::

    console:
      listen: 127.0.0.1:8443        # where `agent console` serves; put a TLS proxy in front or set tls_cert/key
      tls_cert: /etc/containment-agent/console.crt
      tls_key: /etc/containment-agent/console.key
      four_eyes: true               # an approver may not decide what they requested (default: true)
      session_idle: 15m             # signed out after this long without a request
      session_lifetime: 8h          # and after this long in any case
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.validate import duration

__all__ = ["ConsoleSettings", "console_settings"]


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = "127.0.0.1"
    port: int = 8443
    four_eyes: bool = True
    session_idle: timedelta = timedelta(minutes=15)
    session_lifetime: timedelta = timedelta(hours=8)
    tls_cert: Path | None = None
    tls_key: Path | None = None


def console_settings(raw: dict[str, Any], listen: str | None = None) -> ConsoleSettings:
    where = "agent.yaml console"
    text = listen or str(raw.get("listen", "127.0.0.1:8443"))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"listen {text!r} is not HOST:PORT", field=f"{where}.listen")
    four_eyes = raw.get("four_eyes", True)
    if not isinstance(four_eyes, bool):
        raise ConfigError(f"four_eyes: expected true or false, got {four_eyes!r}", field=f"{where}.four_eyes")
    cert, key = raw.get("tls_cert"), raw.get("tls_key")
    if bool(cert) != bool(key):
        raise ConfigError("tls_cert and tls_key go together", field=f"{where}.tls_cert")
    for name, value in (("tls_cert", cert), ("tls_key", key)):
        if value and not Path(str(value)).is_file():
            raise ConfigError(f"{value} does not exist", field=f"{where}.{name}")
    try:
        idle = duration(str(raw.get("session_idle", "15m")), field=f"{where}.session_idle")
        life = duration(str(raw.get("session_lifetime", "8h")), field=f"{where}.session_lifetime")
    except Exception as exc:  # noqa: BLE001 (re-raised as the configuration error it is)
        raise ConfigError(str(exc), field=where) from None
    return ConsoleSettings(host=host.strip("[]") or "127.0.0.1", port=int(port), four_eyes=four_eyes,
                           session_idle=idle, session_lifetime=life, tls_cert=Path(str(cert)) if cert else None,
                           tls_key=Path(str(key)) if key else None)
