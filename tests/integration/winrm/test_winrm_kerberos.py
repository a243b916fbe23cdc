"""WinRM over Kerberos end to end against the lab's real Samba AD DC (a real KDC).

The DC gets a service account with the SPN ``HTTP/winhost.lab.test`` and exports its keytab; the WS-Management
double accepts Kerberos with that keytab (no DC involved in checking a ticket, as on Windows). The connector gets its
tickets from the configured password or keytab — no ``kinit``, a private krb5.conf naming only the lab KDC, a memory
credential cache — connects to the pinned address, names the service by the inventory FQDN, and encrypts every
message (HTTP, so the double can see the sealing). Everything runs inside the lab's client namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import netns
from connectors.errors import AuthError
from connectors.types import ConnectorContext, Credentials, Secret, Target
from connectors.winrm_windows import WinRMWindowsConnector
from tests.doubles.wsman import WindowsHost, WSManDouble
from tests.integration.ad.conftest import DCEnv, samba_dc, samba_env  # noqa: F401 - session fixtures
from tests.integration.ad.helpers import AGENT_PASSWORD

pytest.importorskip("gssapi")
pytest.importorskip("krb5")

pytestmark = pytest.mark.samba

FQDN = "winhost.lab.test"
SERVICE = "winhost-http"


@pytest.fixture(scope="module")
def service_keytab(samba_env: DCEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A service account owning HTTP/winhost.lab.test, and its keytab exported from the DC."""
    dc = samba_env.dc
    path = tmp_path_factory.mktemp("winrm-krb") / "winhost.keytab"
    try:
        dc.samba_tool("user", "create", SERVICE, "Svc-Http-Pass-9z!")
    except Exception as exc:
        if "already exists" not in str(exc):
            raise
    try:
        dc.samba_tool("spn", "add", f"HTTP/{FQDN}", SERVICE)
    except Exception as exc:
        if "already" not in str(exc):
            raise
    dc.samba_tool("domain", "exportkeytab", str(path), f"--principal=HTTP/{FQDN}")
    return path


@pytest.fixture
def kerberos_double(samba_env: DCEnv, service_keytab: Path,  # noqa: F811
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[WSManDouble]:
    monkeypatch.setenv("KRB5_KTNAME", f"FILE:{service_keytab}")
    with netns.enter(samba_env.client_ns), \
            WSManDouble(WindowsHost(), auth=("kerberos",), allow_unencrypted=False) as dbl:
        yield dbl


def _target(dbl: WSManDouble, env: DCEnv, **options: object) -> Target:
    opts: dict[str, object] = {"port": dbl.port, "allow_insecure": True, "transport": "kerberos",
                               "server_name": FQDN, "realm": env.dc.realm, "kdc": [env.dc.address]}
    opts.update(options)
    return Target("win01", "host", "127.0.0.1", "winrm_windows", os="windows", options=opts)


CTX = ConnectorContext(management_addresses=("127.0.0.1",), connect_timeout=3.0, command_timeout=10.0)


class TestKerberosEndToEnd:
    def test_password_isolate_and_release_encrypted(self, kerberos_double: WSManDouble,
                                                    samba_env: DCEnv) -> None:  # noqa: F811
        """A domain account over Kerberos isolates (the fresh connection after isolating authenticates without
        the host asking a DC), undoes, isolates and undoes again, and runs
        kill_sessions; every message is sealed; the process environment is left as it was."""
        dbl, conn = kerberos_double, WinRMWindowsConnector()
        before_cc = os.environ.get("KRB5CCNAME")
        with netns.enter(samba_env.client_ns), \
                conn.open(_target(dbl, samba_env), Credentials("ir-agent", Secret(AGENT_PASSWORD)),
                          CTX) as s:  # type: ignore[attr-defined]
            snap = conn.snapshot(s, "isolate", {})
            assert conn.apply(s, "isolate", {}, snap).changed
            assert conn.verify(s, "isolate", {}).in_effect
            assert conn.undo(s, "isolate", {}, snap).changed
            again = conn.snapshot(s, "isolate", {})
            assert conn.apply(s, "isolate", {}, again).changed
            assert conn.undo(s, "isolate", {}, again).changed
            assert not conn.verify(s, "isolate", {}).in_effect
            assert not conn.apply(s, "kill_sessions", {"user": "LAB\\mallory"},
                                  conn.snapshot(s, "kill_sessions", {})).changed
        assert dbl.kerberos_logons >= 2  # the first connection and the fresh one after isolating
        work = [e for e in dbl.journal if e.action in ("Create", "Command", "Receive")]
        assert work and all(e.encrypted for e in work)
        assert os.environ.get("KRB5CCNAME") == before_cc

    def test_keytab_instead_of_password(self, kerberos_double: WSManDouble, samba_env: DCEnv,  # noqa: F811
                                        tmp_path: Path) -> None:
        """With options.keytab the agent's own key comes from a keytab (exported from the DC), no password."""
        keytab = tmp_path / "ir-agent.keytab"
        samba_env.dc.samba_tool("domain", "exportkeytab", str(keytab), f"--principal=ir-agent@{samba_env.dc.realm}")
        conn = WinRMWindowsConnector()
        with netns.enter(samba_env.client_ns), \
                conn.open(_target(kerberos_double, samba_env, keytab=str(keytab)), Credentials("ir-agent"),
                          CTX) as s:  # type: ignore[attr-defined]
            assert conn.verify(s, "isolate", {}).in_effect is False

    def test_https_and_a_new_tcp_connection_authenticates_again(
            self, samba_env: DCEnv, service_keytab: Path, tmp_path: Path,  # noqa: F811
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Over HTTPS (certificate for the FQDN), when the service closes the connection between two commands,
        the next request authenticates again on the new connection instead of failing."""
        from tests.doubles.wsman import TestCA

        ca = TestCA(tmp_path, "Lab CA")
        cert = ca.issue("winhost-krb", dns_names=(FQDN,))
        monkeypatch.setenv("KRB5_KTNAME", f"FILE:{service_keytab}")
        conn = WinRMWindowsConnector()
        with netns.enter(samba_env.client_ns), WSManDouble(WindowsHost(), auth=("kerberos",), tls=cert) as dbl:
            target = _target(dbl, samba_env, allow_insecure=False, ca_file=str(ca.ca_file))
            with conn.open(target, Credentials("ir-agent", Secret(AGENT_PASSWORD)), CTX) as s:  # type: ignore[attr-defined]
                assert s.run_script("Write-Output 'one'").stdout.strip() == "one"
                dbl.inject("Command", "close_after")
                assert s.run_script("Write-Output 'two'").stdout.strip() == "two"
                assert s.run_script("Write-Output 'three'").stdout.strip() == "three"
        assert dbl.kerberos_logons == 2

    def test_unknown_spn_is_a_permanent_auth_error(self, kerberos_double: WSManDouble,
                                                   samba_env: DCEnv) -> None:  # noqa: F811
        """A name the KDC has no SPN for (here: what connecting by IP would ask for) fails as AuthError, which the
        engine does not retry."""
        conn = WinRMWindowsConnector()
        with netns.enter(samba_env.client_ns), pytest.raises(AuthError) as err:
            conn.open(_target(kerberos_double, samba_env, server_name="nosuch.lab.test"),
                      Credentials("ir-agent", Secret(AGENT_PASSWORD)), CTX)
        assert not err.value.transient and AGENT_PASSWORD not in str(err.value)

    def test_wrong_password_is_auth_error(self, kerberos_double: WSManDouble, samba_env: DCEnv) -> None:  # noqa: F811
        """The KDC refusing the password is AuthError; the password is not in the message."""
        conn = WinRMWindowsConnector()
        with netns.enter(samba_env.client_ns), pytest.raises(AuthError) as err:
            conn.open(_target(kerberos_double, samba_env), Credentials("ir-agent", Secret("Wrong-Pass-1!")), CTX)
        assert "Wrong-Pass-1!" not in str(err.value)
