"""Proof from outside (issue 14): after verify, a second vantage point tries the host's listening ports.

Why: verify reads the rules from the host itself, and a compromised host's answers are what is in question. A
probe from elsewhere observes the network: the host option ``probe_from`` names a peer (a second management host
or a site worker, reached over SSH with the target's credentials and pinned host keys, the same way as the
target). From there each TCP port the host listens on (``ss -Htln``, the SSH port left out, at most
:data:`MAX_PORTS`) must *time out*: a refusal means packets reached the host's stack, a connection means it is
open. The management path is proven by the verify session itself. The outcome goes into the verification's
``observed`` (journaled with it, shown by status and the counsel report); an open port fails the verification.

The probe runs ``timeout`` + bash's ``/dev/tcp`` on the vantage host; address and ports are parsed values.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError, InvalidInput

__all__ = ["LISTEN_SCRIPT", "MAX_PORTS", "parse_probe_from", "probe"]

MAX_PORTS = 4
LISTEN_SCRIPT = "ss -Htln 2>/dev/null"
_TIMEOUT = 2


def parse_probe_from(options: Mapping[str, Any]) -> str | None:
    """``options.probe_from``: an IP address (the vantage host), or absent."""
    raw = options.get("probe_from")
    if raw is None:
        return None
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise InvalidInput(f"options.probe_from: {raw!r} is not an IP address (the host that probes from outside)",
                           connector="ssh_linux", detail={"field": "options.probe_from"}) from None


def listening_ports(ss_out: str, ssh_port: int) -> list[int]:
    ports: list[int] = []
    for line in ss_out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        m = re.search(r":(\d+)$", cols[3])
        if not m:
            continue
        port = int(m.group(1))
        local = cols[3].rsplit(":", 1)[0].strip("[]")
        if port != ssh_port and not local.startswith(("127.", "::1")) and port not in ports:
            ports.append(port)
    return sorted(ports)[:MAX_PORTS]


def _command(address: str, ports: list[int]) -> str:
    parts = [f"timeout {_TIMEOUT} bash -c 'exec 3<>/dev/tcp/{address}/{p}' 2>/dev/null; echo \"PROBE {p} $?\""
             for p in ports]
    return "; ".join(parts) or "true"


def probe(session: Any, ssh_port: int) -> dict[str, Any] | None:
    """Run the outside probe for ``session``'s target (None when the host has no ``probe_from``)."""
    from connectors.ssh_linux.session import open_session

    vantage = parse_probe_from(session.target.options)
    if vantage is None:
        return None
    _, out, _ = session.run(LISTEN_SCRIPT, timeout=10, what="list listening ports")
    ports = listening_ports(out, ssh_port)
    at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record: dict[str, Any] = {"from": vantage, "at": at, "ports": {}, "management_path": "ok (this session)"}
    if not ports:
        record["note"] = "the host listens on no port besides SSH: nothing to try"
        return record
    target = dataclasses.replace(session.target, address=vantage, name=f"{session.target.name}-probe",
                                 options={}, jump=())
    try:
        peer = open_session(target, dataclasses.replace(session.creds, hops=()), session.ctx)
    except ConnectorError as exc:
        record["error"] = f"cannot reach the vantage host {vantage}: {exc.message}"
        return record
    try:
        address = str(ipaddress.ip_address(session.target.address))
        _, out, _ = peer.run(_command(address, ports), timeout=_TIMEOUT * len(ports) + 10, what="outside probe")
    finally:
        peer.close()
    for line in out.splitlines():
        bits = line.split()
        if len(bits) == 3 and bits[0] == "PROBE":
            code = int(bits[2]) if bits[2].isdigit() else -1
            record["ports"][bits[1]] = {0: "open", 124: "blocked"}.get(code, "refused" if code == 1 else f"exit {code}")
    return record
