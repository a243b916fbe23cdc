"""The WinRM transport: one shell, TLS and auth, encryption over HTTP, timeouts, errors, long scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from connectors.errors import AuthError, Rejected, Timeout, TLSError, Unreachable
from connectors.types import ConnectorContext, Credentials, Secret, Target
from connectors.winrm_windows import WinRMWindowsConnector
from connectors.winrm_windows.powershell import CMD_LINE_LIMIT, command_line
from tests.doubles.wsman import WindowsHost, WSManDouble


class TestShellLifecycle:
    def test_one_shell_per_session(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                   make_target: Callable[..., Target], creds: Credentials,
                                   ctx: ConnectorContext) -> None:
        """Many scripts run in one shell: one Create, one Delete at close, Signal after each command.

        pywinrm asserts that Signal and Delete responses relate to its MessageID, so this also checks RelatesTo.
        """
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            for i in range(3):
                assert s.run_checked(f"Write-Output 'run {i}'", what="echo").strip() == f"run {i}"
            assert len(double.shells) == 1
        actions = [e.action for e in double.journal]
        assert actions.count("Create") == 1 and actions.count("Delete") == 1
        assert actions.count("Command") == 3 == actions.count("Signal")
        assert not double.shells


class TestTLS:
    def test_untrusted_certificate_refused(self, conn: WinRMWindowsConnector, host: WindowsHost, pki: Any,
                                           make_target: Callable[..., Target], creds: Credentials,
                                           ctx: ConnectorContext) -> None:
        """A certificate from a CA the agent does not trust is a TLSError, and no credentials are sent."""
        with WSManDouble(host, tls=pki.rogue_server) as dbl:
            with pytest.raises(TLSError, match="certificate"):
                conn.open(make_target(dbl), creds, ctx)
            deadline = time.monotonic() + 2
            while dbl.tls_failures == 0 and time.monotonic() < deadline:  # counted in the server's thread
                time.sleep(0.01)
            assert dbl.journal == [] and dbl.tls_failures >= 1

    def test_system_store_does_not_trust_test_ca(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                 make_target: Callable[..., Target], creds: Credentials,
                                                 ctx: ConnectorContext) -> None:
        """Without ca_file the system trust store is used (never REQUESTS_CA_BUNDLE), so the test CA fails."""
        target = make_target(double)
        opts = {k: v for k, v in target.options.items() if k != "ca_file"}
        with pytest.raises(TLSError):
            conn.open(Target(target.name, "host", target.address, target.connector, options=opts), creds, ctx)

    def test_server_name_checked_without_dns(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                             make_target: Callable[..., Target], creds: Credentials,
                                             ctx: ConnectorContext) -> None:
        """server_name validates the certificate for that name while connecting to the pinned address."""
        with conn.open(make_target(double, server_name="winhost.test"), creds, ctx) as s:  # type: ignore[attr-defined]
            assert s.run_checked("Write-Output 'ok'", what="echo").strip() == "ok"
        with pytest.raises(TLSError):
            conn.open(make_target(double, server_name="other.test"), creds, ctx)


class TestAuth:
    @pytest.mark.parametrize("transport", ["ntlm", "basic"])
    def test_wrong_password_is_auth_error(self, transport: str, conn: WinRMWindowsConnector, double: WSManDouble,
                                          make_target: Callable[..., Target], ctx: ConnectorContext) -> None:
        """Rejected credentials become AuthError (permanent) and the message carries no password."""
        with pytest.raises(AuthError) as info:
            conn.open(make_target(double, transport=transport), Credentials("Administrator", Secret("wrong-pw")), ctx)
        assert not info.value.transient and "wrong-pw" not in str(info.value)
        assert double.auth_failures >= 1

    def test_basic_over_https_works(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                    make_target: Callable[..., Target], creds: Credentials,
                                    ctx: ConnectorContext) -> None:
        """Basic auth is accepted over HTTPS."""
        with conn.open(make_target(double, transport="basic"), creds, ctx) as s:  # type: ignore[attr-defined]
            assert s.run_checked("Write-Output 'b'", what="echo").strip() == "b"

    def test_http_only_with_ntlm_message_encryption(self, conn: WinRMWindowsConnector, host: WindowsHost,
                                                    make_target: Callable[..., Target], creds: Credentials,
                                                    ctx: ConnectorContext) -> None:
        """allow_insecure uses HTTP with every WS-Management message sealed by NTLM (the double refuses clear)."""
        with WSManDouble(host, tls=None) as dbl:
            target = make_target(dbl)
            assert target.options["allow_insecure"] is True
            with conn.open(target, creds, ctx) as s:  # type: ignore[attr-defined]
                assert s.endpoint.startswith("http://")
                assert s.run_checked("Write-Output 'sealed'", what="echo").strip() == "sealed"
            assert dbl.journal and all(e.encrypted for e in dbl.journal)


class TestTimeouts:
    def test_receive_hangs_past_read_timeout(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                             make_target: Callable[..., Target], creds: Credentials,
                                             ctx: ConnectorContext) -> None:
        """A Receive that does not answer within the read timeout is a transient Timeout."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            double.inject("Receive", "delay", value=6.0)
            with pytest.raises(Timeout) as info:
                s.run_checked("Write-Output 'slow'", what="echo")
            assert info.value.transient
            double.faults.clear()

    def test_operation_timeouts_until_deadline(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                               make_target: Callable[..., Target], creds: Credentials,
                                               ctx: ConnectorContext) -> None:
        """w:TimedOut faults are retried (pywinrm's normal polling) only until the command deadline."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            double.inject("Receive", "timeout_fault", times=10_000)
            with pytest.raises(Timeout, match="still running"):
                s.run_script("Write-Output 'never'", timeout=0.5)
            double.faults.clear()

    def test_a_few_operation_timeouts_are_normal(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                 make_target: Callable[..., Target], creds: Credentials,
                                                 ctx: ConnectorContext) -> None:
        """Two w:TimedOut answers and then output: the script result arrives."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            double.inject("Receive", "timeout_fault", times=2)
            assert s.run_checked("Write-Output 'late'", what="echo").strip() == "late"


class TestServerErrors:
    @pytest.mark.parametrize(("kind", "value", "error"), [
        ("status", 500, Rejected), ("status", 503, Unreachable), ("drop", 0, Unreachable)])
    def test_transport_failures_are_mapped(self, kind: str, value: float, error: type[Exception],
                                           conn: WinRMWindowsConnector, double: WSManDouble,
                                           make_target: Callable[..., Target], creds: Credentials,
                                           ctx: ConnectorContext) -> None:
        """HTTP 500 without a fault → Rejected; 503 and a dropped connection → Unreachable (transient)."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            double.inject("Command", kind, value=value)
            with pytest.raises(error):
                s.run_checked("Write-Output 'x'", what="echo")

    def test_powershell_error_is_rejected_with_message(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                                       make_target: Callable[..., Target], creds: Credentials,
                                                       ctx: ConnectorContext) -> None:
        """A failing cmdlet's CLIXML error becomes a readable Rejected message."""
        with conn.open(make_target(double), creds, ctx) as s, \
                pytest.raises(Rejected) as info:  # type: ignore[attr-defined]
            s.run_checked("$ErrorActionPreference = 'Stop'\nRemove-NetFirewallRule -Group 'NoSuchGroup'",
                          what="remove group")
        msg = str(info.value)
        assert "No MSFT_NetFirewallRule objects found with property 'Group' equal to 'NoSuchGroup'" in msg
        assert "CLIXML" not in msg and "_x000D_" not in msg and "<S S=" not in msg
        assert "Preparing modules" not in msg

    def test_unknown_command_is_rejected(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                         make_target: Callable[..., Target], creds: Credentials,
                                         ctx: ConnectorContext) -> None:
        """An unknown cmdlet fails like PowerShell: 'is not recognized', exit code 1."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            res = s.run_script("Invoke-Mimikatz 'x'")
        assert res.exit_code == 1 and "'Invoke-Mimikatz' is not recognized" in res.stderr


class TestLongScripts:
    def test_script_beyond_command_line_limit_runs_in_chunks(self, conn: WinRMWindowsConnector,
                                                             double: WSManDouble, make_target: Callable[..., Target],
                                                             creds: Credentials, ctx: ConnectorContext) -> None:
        """A script whose command line is ~5x the cmd.exe limit runs completely and leaves no temp file."""
        lines = [f"Write-Output 'line {i:04d} {'x' * 40}'" for i in range(400)]
        script = "\n".join(lines)
        assert len(command_line(script)) > 4 * CMD_LINE_LIMIT
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            out = s.run_checked(script, what="long script").splitlines()
        assert len(out) == 400 and out[0].startswith("line 0000") and out[-1].startswith("line 0399")
        cmds = double.commands()
        assert len(cmds) > 5 and max(len(c) for c in cmds) <= CMD_LINE_LIMIT
        assert script in double.scripts
        assert not [f for f in double.host.files if f.endswith(".b64")]

    def test_double_enforces_the_limit(self, conn: WinRMWindowsConnector, double: WSManDouble,
                                       make_target: Callable[..., Target], creds: Credentials,
                                       ctx: ConnectorContext) -> None:
        """The double refuses an over-long command line like cmd.exe (so the chunking test can fail)."""
        with conn.open(make_target(double), creds, ctx) as s:  # type: ignore[attr-defined]
            res = s._run_command(command_line("Write-Output '" + "y" * 4000 + "'"), None)
        assert res.exit_code == 1 and "The command line is too long." in res.stderr
