"""Driving a lab DC's directory as Administrator over LDAPS: users, groups, memberships, raw reads.

Kept apart from :mod:`agent.lab.samba` (which provisions, starts and stops the DC) because tests and
``lab up --with-ad`` use these to set up accounts, while the life-cycle code never needs LDAP.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.lab import netns

__all__ = ["DirectoryAdmin", "SambaError"]


class SambaError(RuntimeError):
    """The DC could not be provisioned, started or driven; the message says which step and why."""


class DirectoryAdmin:
    """Mixin for :class:`agent.lab.samba.SambaDC`: needs its address, namespace, realm, host name and state dir."""

    _admin: Any
    address: str
    namespace: str
    realm: str
    host_name: str
    state_dir: Path

    # -- facts for tests and the lab config (derived from the DC's identity and state directory) -----------
    @property
    def server_name(self) -> str:
        return f"{self.host_name}.{self.realm.lower()}"

    @property
    def base_dn(self) -> str:
        return ",".join(f"DC={part}" for part in self.realm.lower().split("."))

    @property
    def admin_bind_dn(self) -> str:
        return f"CN=Administrator,CN=Users,{self.base_dn}"

    @property
    def admin_password(self) -> str:
        return (self.state_dir / "admin.pass").read_text().strip()

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def admin_connection(self) -> Any:
        """An ldap3 connection bound as Administrator over LDAPS (opened inside the DC namespace, cached)."""
        if self._admin is not None and not self._admin.closed:
            return self._admin
        import ldap3

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file), valid_names=[self.server_name])
        server = ldap3.Server(self.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        with netns.enter(self.namespace):
            conn = ldap3.Connection(server, self.admin_bind_dn, self.admin_password, receive_timeout=30)
            if not conn.bind():
                raise SambaError(f"Administrator bind failed: {conn.result.get('description')}")
        self._admin = conn
        return conn

    def _close_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.unbind()
            self._admin = None

    def _ldap(self, op: str, *args: Any, **kwargs: Any) -> Any:
        conn = self.admin_connection()
        ok = getattr(conn, op)(*args, **kwargs)
        if not ok and op != "search":
            raise SambaError(f"LDAP {op} {args[0]!r} failed: {conn.result.get('description')} "
                             f"{conn.result.get('message', '')}")
        return conn

    def dn_of(self, name: str) -> str:
        """DN of the account or group whose sAMAccountName is ``name``."""
        from ldap3.utils.conv import escape_filter_chars

        conn = self._ldap("search", self.base_dn, f"(sAMAccountName={escape_filter_chars(name)})",
                          attributes=["distinguishedName"])
        if len(conn.entries) != 1:
            raise SambaError(f"{name!r} matched {len(conn.entries)} entries")
        return str(conn.entries[0].entry_dn)

    def create_user(self, name: str, password: str, **attrs: Any) -> str:
        """Add an enabled user ``name`` (CN=name under CN=Users unless ``cn``/``parent`` given); returns its DN.

        Extra keyword arguments are LDAP attributes (``userAccountControl=0x10200``, ``givenName="X"``...).
        """
        cn = attrs.pop("cn", name)
        parent = attrs.pop("parent", f"CN=Users,{self.base_dn}")
        from ldap3.utils.dn import escape_rdn

        dn = f"CN={escape_rdn(cn)},{parent}"
        entry: dict[str, Any] = {"sAMAccountName": name, "userPrincipalName": f"{name}@{self.realm.lower()}",
                                 "unicodePwd": f'"{password}"'.encode("utf-16-le"), "userAccountControl": 0x200}
        entry.update(attrs)
        self._ldap("add", dn, ["top", "person", "organizationalPerson", "user"], entry)
        return dn

    def create_group(self, name: str, **attrs: Any) -> str:
        """Add a global security group ``name`` under CN=Users; returns its DN."""
        from ldap3.utils.dn import escape_rdn

        dn = f"CN={escape_rdn(name)},CN=Users,{self.base_dn}"
        self._ldap("add", dn, ["top", "group"], {"sAMAccountName": name, **attrs})
        return dn

    def add_members(self, group: str, members: list[str]) -> None:
        """Add accounts or groups (sAMAccountNames or DNs) as direct members of ``group`` (name or DN)."""
        import ldap3

        group_dn = group if "=" in group else self.dn_of(group)
        dns = [m if "=" in m else self.dn_of(m) for m in members]
        self._ldap("modify", group_dn, {"member": [(ldap3.MODIFY_ADD, dns)]})

    def read(self, name_or_dn: str, attributes: list[str]) -> Mapping[str, Any]:
        """Raw attributes of one entry (for tests: whenChanged, uSNChanged, userAccountControl...)."""
        import ldap3

        dn = name_or_dn if "=" in name_or_dn else self.dn_of(name_or_dn)
        conn = self._ldap("search", dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=attributes)
        return dict(conn.entries[0].entry_attributes_as_dict) if conn.entries else {}
