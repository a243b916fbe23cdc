"""Open one netmiko session to a device, with pinned host keys, and wrap it with its dialect.

Why lazy: ``import netmiko`` costs a large part of a second (it imports paramiko, textfsm, every vendor module);
validation, dry runs and ``--help`` must not pay it, so it is imported only here, inside :func:`open_session`.

Host keys: ``ssh_strict=True`` (unknown keys refused), ``system_host_keys=False`` (the machine's own
``~/.ssh/known_hosts`` is not trusted implicitly) and ``alt_host_keys=True, alt_key_file=<agent known_hosts>``.
A key pinned in the inventory (``Target.host_key``) is written to a private temporary known_hosts file instead.
Only ``options.ssh_strict: false`` on the device (or the operator's explicit ``trust_unknown_host_key``) turns
pinning off.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Self

from connectors.errors import ConnectorError, HostKeyError
from connectors.firewall.dialect import Dialect
from connectors.firewall.errors import map_exception
from connectors.types import ConnectorContext, Credentials, Target

__all__ = ["DeviceSession", "connect_params", "open_session"]


class DeviceSession:
    """An open device connection plus its dialect; ``close`` always leaves the device cleanly."""

    def __init__(self, conn: Any, dialect: Dialect, target: Target, tmp_known_hosts: str | None = None) -> None:
        self.conn = conn
        self.dialect = dialect
        self.target = target
        self._tmp = tmp_known_hosts

    def close(self) -> None:
        try:
            self.dialect.disconnect()
        except Exception:  # noqa: BLE001, S110 - closing a dead session must not raise over the real error
            pass
        finally:
            if self._tmp:
                try:
                    os.unlink(self._tmp)
                except OSError:
                    pass
                self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pinned_file(target: Target) -> str:
    port = target.port or 22
    host = target.address if port == 22 else f"[{target.address}]:{port}"
    fd, path = tempfile.mkstemp(prefix="fw-known-hosts-")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{host} {target.host_key}\n")
    return path


def connect_params(target: Target, creds: Credentials, ctx: ConnectorContext) -> tuple[dict[str, Any], str | None]:
    """netmiko ``ConnectHandler`` keyword arguments (secrets revealed only here) and a temp file to delete."""
    strict = target.options.get("ssh_strict", True) is not False and not ctx.trust_unknown_host_key
    tmp: str | None = None
    key_file = ctx.known_hosts
    if strict and target.host_key:
        tmp = key_file = _pinned_file(target)
    if strict and not (key_file and os.path.isfile(key_file)):
        raise HostKeyError(f"no known_hosts file to pin {target.name}'s host key (set ssh.known_hosts, a host_key "
                           "in the inventory, or options.ssh_strict: false)", target=target.name)
    params: dict[str, Any] = {
        "device_type": target.options["device_type"], "host": target.address, "port": target.port or 22,
        "username": creds.username, "conn_timeout": ctx.connect_timeout, "auth_timeout": ctx.connect_timeout,
        "banner_timeout": ctx.connect_timeout, "read_timeout_override": None,
        "ssh_strict": strict, "system_host_keys": False, "alt_host_keys": strict,
        "alt_key_file": key_file or "", "allow_agent": False, "fast_cli": True,
    }
    if creds.password:
        params["password"] = creds.password.reveal()
    if creds.private_key_path:
        params.update(use_keys=True, key_file=creds.private_key_path)
        if creds.private_key_passphrase:
            params["passphrase"] = creds.private_key_passphrase.reveal()
    else:
        params["use_keys"] = False
    secret = creds.extra.get("secret")
    if secret:
        params["secret"] = secret.reveal()
    params = {k: v for k, v in params.items() if v is not None}
    return params, tmp


def open_session(dialect_cls: type[Dialect], target: Target, creds: Credentials,
                 ctx: ConnectorContext) -> DeviceSession:
    """Connect (host key checked here), prepare the session and return it with its dialect."""
    params, tmp = connect_params(target, creds, ctx)
    try:
        from netmiko import ConnectHandler

        conn = ConnectHandler(**params)
    except ConnectorError:
        raise
    except Exception as exc:
        if tmp:
            os.unlink(tmp)
        raise map_exception(exc, target=target.name) from exc
    timeout = float(target.options.get("command_timeout") or ctx.command_timeout)
    dialect = dialect_cls(conn, target.options, target=target.name, timeout=timeout)
    return DeviceSession(conn, dialect, target, tmp)
