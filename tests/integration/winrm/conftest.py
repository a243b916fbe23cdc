"""Fixtures for the winrm_windows connector against the WS-Management double (real TCP on 127.0.0.1).

``pki``        session: a trusted test CA with a server certificate (SAN 127.0.0.1 + winhost.test) and an
               untrusted CA with a look-alike certificate.
``ntlm_users`` session: NTLM_USER_FILE for pyspnego's acceptor (restored afterwards).
``host``       a fresh simulated Windows host, once as Windows PowerShell 5.1 and once as PowerShell 7.4.
``double``     the HTTPS double serving ``host`` (Basic + NTLM).
``make_target(double, **options)`` / ``ctx`` / ``creds`` / ``conn``: what the engine would pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.types import ConnectorContext, Credentials, Secret, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import ServerCert, TestCA, WindowsHost, WSManDouble, write_ntlm_user_file

USER, PASSWORD = "Administrator", "S3cret!"
DOMAIN_USER, DOMAIN_PASSWORD = "CORP\\ir-agent", "D0main-S3cret!"


@dataclass(frozen=True)
class PKI:
    """Trusted and untrusted material for the TLS tests."""

    ca_file: Path
    server: ServerCert
    rogue_server: ServerCert


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("winrm-pki")
    trusted = TestCA(d, "IR Test CA")
    rogue = TestCA(d, "Rogue CA")
    return PKI(trusted.ca_file, trusted.issue("winhost"), rogue.issue("rogue-winhost"))


@pytest.fixture(scope="session", autouse=True)
def ntlm_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = write_ntlm_user_file(tmp_path_factory.mktemp("winrm-ntlm") / "ntlm_users", {USER: PASSWORD}, "WINHOST",
                                {DOMAIN_USER: DOMAIN_PASSWORD})
    old = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NTLM_USER_FILE", None)
    else:
        os.environ["NTLM_USER_FILE"] = old


@pytest.fixture(params=["5.1", "7.4"])
def host(request: pytest.FixtureRequest) -> WindowsHost:
    """A fresh host; every test runs against Windows PowerShell 5.1 (what WinRM starts) and PowerShell 7."""
    return WindowsHost(ps_version=request.param)


@pytest.fixture
def double(host: WindowsHost, pki: PKI) -> Iterator[WSManDouble]:
    with WSManDouble(host, tls=pki.server, users={USER: PASSWORD}) as dbl:
        yield dbl


@pytest.fixture
def make_target(pki: PKI) -> Callable[..., Target]:
    def make(dbl: WSManDouble, **options: Any) -> Target:
        opts: dict[str, Any] = {"port": dbl.port}
        if dbl.scheme == "https":
            opts["ca_file"] = str(pki.ca_file)
        else:
            opts["allow_insecure"] = True
        opts.update(options)
        return Target("win01", "host", "127.0.0.1", "winrm_windows", os="windows", options=opts)
    return make


@pytest.fixture
def ctx() -> ConnectorContext:
    return ConnectorContext(management_addresses=("127.0.0.1",), connect_timeout=1.0, command_timeout=2.0)


@pytest.fixture
def creds() -> Credentials:
    return Credentials(USER, Secret(PASSWORD))


@pytest.fixture
def conn() -> WinRMWindowsConnector:
    return WinRMWindowsConnector()
