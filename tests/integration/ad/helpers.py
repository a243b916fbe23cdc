"""Helpers shared by the AD integration tests (importable, unlike conftest)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3

from agent.lab import netns
from agent.lab.samba import SambaDC
from connectors.active_directory import ActiveDirectoryConnector
from connectors.types import ConnectorContext, Credentials, Target

AGENT_PASSWORD = "Agent-Bind-Pass-7x!"
CTX = ConnectorContext(connect_timeout=3.0, command_timeout=10.0)
REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("AGENT_TEST_CACHE", REPO / "var" / "test-cache")) / "samba"


@dataclass
class DCEnv:
    """The running DC plus the names tests need."""

    dc: SambaDC
    client_ns: str
    client_address: str


@contextmanager
def private_dc(prefix: str, subnet: str, *, password: str = AGENT_PASSWORD, nosync: bool = False
               ) -> Iterator[DCEnv]:
    """A Samba AD DC of its own for the ``with`` block: namespace ``PREFIX-dc`` at ``SUBNET.50``, reached from a
    client namespace ``PREFIX-cl`` (``SUBNET.10``) through a veth pair, with the agent's bind account ``ir-agent``
    (``password``, a Domain Admin, as a real deployment's delegated account); template-copy provisioning under
    :data:`CACHE` (≈ 3 s after the first run). What a previous run left (namespaces, state) is removed first; the
    DC, its namespaces and its state when the block ends. Used by the AD tests' session fixture and the AD benches,
    which all need exactly this directory and nothing more."""
    for stale in netns.list_names(prefix + "-"):
        netns.delete(stale)
    dc = SambaDC(f"{prefix}-dc", f"{subnet}.50", CACHE / f"{prefix}-state", nosync=nosync)
    try:
        if dc.state_dir.exists():
            dc.teardown(remove_state=True)
        dc.provision()
        dc.attach(f"{prefix}-cl", f"{subnet}.10")
        dc.start()
        dc.create_user("ir-agent", password)
        dc.add_members("Domain Admins", ["ir-agent"])
        yield DCEnv(dc, f"{prefix}-cl", f"{subnet}.10")
    finally:
        dc.teardown(remove_state=True)


def target_for(dc: SambaDC, **options: Any) -> Target:
    opts = {"base_dn": dc.base_dn, "server_name": dc.server_name, "ca_file": str(dc.ca_file), "port": 636}
    opts.update(options)
    opts = {k: v for k, v in opts.items() if v is not None}
    return Target(name="lab-ad", kind="account", address=dc.address, connector="active_directory", options=opts)


def user_bind(dc: SambaDC, user: str, password: str) -> tuple[bool, str]:
    """Bind as ``user`` over LDAPS from the current thread's namespace: (ok, diagnostic message)."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.server_name])
    server = ldap3.Server(dc.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=3)
    conn = ldap3.Connection(server, user, password, raise_exceptions=False)
    try:
        ok = conn.bind()
        return ok, str(conn.result.get("message", ""))
    finally:
        conn.unbind()


def run_apply(connector: ActiveDirectoryConnector, target: Target, creds: Credentials, action: str,
              args: dict[str, Any]) -> tuple[Any, Any, Any]:
    """What the engine does for one action: validate, open, snapshot, apply, verify → (snapshot, result, check)."""
    connector.validate(target, action, args)
    with connector.open(target, creds, CTX) as session:
        snap = connector.snapshot(session, action, args)
        result = connector.apply(session, action, args, snap)
        check = connector.verify(session, action, args)
    return snap, result, check


def run_undo(connector: ActiveDirectoryConnector, target: Target, creds: Credentials, action: str,
             args: dict[str, Any], snap: Any) -> tuple[Any, Any]:
    with connector.open(target, creds, CTX) as session:
        result = connector.undo(session, action, args, snap)
        check = connector.verify(session, action, args)
    return result, check


def uac(dc: SambaDC, name_or_dn: str) -> int:
    """userAccountControl as the DC stores it (read as Administrator)."""
    return int(dc.read(name_or_dn, ["userAccountControl"])["userAccountControl"][0])


def set_uac(dc: SambaDC, name_or_dn: str, value: int) -> None:
    """Change userAccountControl as Administrator: someone else acting on the account behind the agent's back."""
    dn = name_or_dn if "=" in name_or_dn else dc.dn_of(name_or_dn)
    dc._ldap("modify", dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(value)])]})


def usn_changed(dc: SambaDC, name_or_dn: str) -> int:
    """The entry's uSNChanged: it moves with every write to that entry, and only then."""
    return int(dc.read(name_or_dn, ["uSNChanged"])["uSNChanged"][0])


def highest_usn(dc: SambaDC) -> int:
    """highestCommittedUSN: grows with every write anywhere in the directory."""
    conn = dc.admin_connection()
    conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["highestCommittedUSN"])
    return int(conn.entries[0].highestCommittedUSN.value)
