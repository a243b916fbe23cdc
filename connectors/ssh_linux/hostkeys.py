"""Host-key pinning: accept a server only if its key matches the inventory pin or the agent's known_hosts.

Why our own check instead of paramiko's policies: the decision must happen *before* any credential is offered,
must tell "unknown" (first contact: the operator may choose to trust it) from "changed" (never trusted
automatically: a replaced host or someone in the middle), and the error must show the offered key's SHA256
fingerprint next to what was expected so a human can compare it out of band.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from connectors.errors import HostKeyError

__all__ = ["Decision", "Pin", "decide", "fingerprint", "known_host_name", "pins_for", "record_trusted"]


def fingerprint(blob: bytes) -> str:
    """OpenSSH ``SHA256:...`` fingerprint of a public key blob (as ``ssh-keygen -lf`` prints it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class Pin:
    """One expected key: its type, blob and where the pin came from (for the error message)."""

    kind: str
    blob: bytes
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def known_host_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``10.0.0.5`` on port 22, ``[10.0.0.5]:2222`` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def _parse_key(text: str, source: str) -> Pin:
    parts = text.split()
    if len(parts) < 2:
        raise HostKeyError(f"{source}: pinned host key {text[:40]!r} is not '<type> <base64>'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyError(f"{source}: pinned host key is not valid base64") from None
    return Pin(parts[0], blob, source)


def pins_for(address: str, port: int, host_key: str | None, known_hosts: str | None) -> list[Pin]:
    """Every key the host may present: the inventory pin plus matching known_hosts entries (hashed too)."""
    pins: list[Pin] = []
    if host_key:
        pins.append(_parse_key(host_key, "inventory host_key"))
    if known_hosts and os.path.exists(known_hosts):
        for kind, blob in _known(known_hosts, known_host_name(address, port)):
            pins.append(Pin(kind, blob, f"known_hosts {known_hosts}"))
    return pins


# known_hosts parsed once per version of the file, and each name looked up once: parsing the whole file for each
# connection made pinning O(hosts) per host — 13 ms of CPU per host with 30 lab hosts (bench/fanout_vs_ssh.py).
# The file's (inode, size, mtime) is the version: record_trusted's append changes it, so a new pin is seen at once.
_KNOWN: dict[str, tuple[tuple[int, int, int], object, dict[str, list[tuple[str, bytes]]]]] = {}
_KNOWN_LOCK = threading.Lock()


def _known(path: str, name: str) -> list[tuple[str, bytes]]:
    import paramiko

    try:
        st = os.stat(path)
        version = (st.st_ino, st.st_size, st.st_mtime_ns)
        with _KNOWN_LOCK:
            cached = _KNOWN.get(path)
            if cached is None or cached[0] != version:
                cached = (version, paramiko.HostKeys(path), {})
                _KNOWN[path] = cached
            _, table, names = cached
            if name not in names:
                entry = table.lookup(name)  # type: ignore[attr-defined]
                names[name] = [(entry[k].get_name(), entry[k].asbytes()) for k in (entry or {})]
            return list(names[name])
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise HostKeyError(f"known_hosts {path} cannot be read: {exc}") from None


Decision = str  # "accept" | "trust-new"


def decide(address: str, port: int, offered_kind: str, offered_blob: bytes, pins: list[Pin],
           trust_unknown: bool) -> Decision:
    """``accept`` a pinned key, ``trust-new`` a first-contact key the operator trusts; refuse otherwise.

    A key that differs from an existing pin is *changed* and refused even when ``trust_unknown`` is set.
    """
    name = known_host_name(address, port)
    offered = f"{offered_kind} {fingerprint(offered_blob)}"
    if any(p.blob == offered_blob for p in pins):
        return "accept"
    if pins:
        expected = "; ".join(f"{p.kind} {p.fingerprint} ({p.source})" for p in pins)
        raise HostKeyError(f"host key of {name} CHANGED: offered {offered}, expected {expected}. Refused: the host "
                           "was replaced or someone is in the middle; check out of band and update the pin",
                           detail={"offered": fingerprint(offered_blob), "expected": [p.fingerprint for p in pins]})
    if trust_unknown:
        return "trust-new"
    raise HostKeyError(f"host key of {name} is unknown: offered {offered}, expected a key pinned in known_hosts "
                       "or the inventory (host_key), none found. Refused; verify the fingerprint and pin it, or "
                       "trust it explicitly", detail={"offered": fingerprint(offered_blob), "expected": []})


def record_trusted(known_hosts: str | None, address: str, port: int, kind: str, blob: bytes) -> None:
    """Append a newly trusted key to known_hosts so the next connection is pinned."""
    if not known_hosts:
        return
    path = Path(known_hosts)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{known_host_name(address, port)} {kind} {base64.b64encode(blob).decode()}\n"
    with open(path, "a", encoding="ascii") as fh:
        fh.write(line)
