"""Proof from outside (issue 14): after verify, a second vantage point tries the host's listening ports.

Why: verify reads the rules from the host itself, and a compromised host's answers are what is in question. A
probe from elsewhere observes the network: the host option ``probe_from`` names a peer (a second management host
or a site worker, reached over SSH with the target's credentials and pinned host keys, the same way as the
target). From there each TCP port the host listens on (``ss -Htln``, at most :data:`MAX_PORTS`, loopback
left out) and the SSH port (only management addresses may reach it; skipped when the vantage point is one) must
*time out*: a refusal means packets reached the host's stack, a connection means it is open. The management path
is proven by the verify session itself. The outcome goes into the verification's
``observed`` (journaled with it, shown by status and the counsel report); an open port fails the verification.

The probe runs ``timeout`` + bash's ``/dev/tcp`` on the vantage host; address and ports are parsed values.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import ConnectorError, InvalidInput
from connectors.ssh_linux.validation import Network

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
    """All ports at once (each attempt in the background), so the probe takes one timeout, not one per port."""
    parts = [f"(timeout {_TIMEOUT} bash -c 'exec 3<>/dev/tcp/{address}/{p}' 2>/dev/null; echo \"PROBE {p} $?\") &"
             for p in ports]
    return " ".join(parts) + " wait"


def _verdict(code: int) -> str:
    # timeout(1): "If the command times out ... exit with status 124"; bash: 1 when connect() failed (refused,
    # unreachable), 126/127 when the command could not run at all.
    return {0: "open", 124: "blocked", 1: "refused"}.get(code, f"no result (exit {code})")


def probe(session: Any, address: str, ssh_port: int, management: Sequence[Network] = ()) -> dict[str, Any] | None:
    """Run the outside probe for ``session``'s target at ``address`` (the IP sshd answered on, from
    ``SSH_CONNECTION``); None when the host has no ``probe_from``. The vantage host is reached the same way as the
    target (its jump chain, the target's credentials, pinned keys). ``error``: the probe could not run (that says
    nothing about the host); ``ports``: port -> open | refused | blocked."""
    from connectors.ssh_linux.session import open_session

    vantage = parse_probe_from(session.target.options)
    if vantage is None:
        return None
    at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record: dict[str, Any] = {"from": vantage, "at": at, "ports": {}, "management_path": "ok (this session)"}
    try:
        target_ip = str(ipaddress.ip_address(address))
    except ValueError:
        record["error"] = f"the host's own address is unknown ({address!r}): nothing probed"
        return record
    _, out, _ = session.run(LISTEN_SCRIPT, timeout=10, what="list listening ports")
    ports = listening_ports(out, ssh_port)
    here = ipaddress.ip_address(vantage)
    if not any(here.version == n.version and here in n for n in management):
        ports.append(ssh_port)  # only the management addresses may reach sshd: from here it must time out too
    if not ports:
        record["note"] = "the vantage point is a management address and the host listens on nothing else"
        return record
    target = dataclasses.replace(session.target, address=vantage, name=f"{session.target.name}-probe", options={})
    try:
        peer = open_session(target, session.creds, session.ctx)
    except ConnectorError as exc:
        record["error"] = f"cannot reach the vantage host {vantage}: {exc.message}"
        return record
    try:
        _, out, _ = peer.run(_command(target_ip, ports), timeout=_TIMEOUT + 10, what="outside probe")
    except ConnectorError as exc:
        record["error"] = f"the probe from {vantage} did not finish: {exc.message}"
        return record
    finally:
        peer.close()
    got = {}
    for line in out.splitlines():  # the attempts ran in parallel: lines come in any order
        bits = line.split()
        if len(bits) == 3 and bits[0] == "PROBE" and bits[2].isdigit():
            got[bits[1]] = _verdict(int(bits[2]))
    record["ports"] = {str(p): got[str(p)] for p in ports if str(p) in got}
    failed = sorted(p for p, v in record["ports"].items() if v.startswith("no result"))
    if failed or len(record["ports"]) != len(ports):
        record["error"] = (f"the probe could not run on {vantage} for port(s) {', '.join(failed) or 'some'} "
                           "(it needs timeout and bash there)")
    return record
