"""One WinRM shell per session, scripts run as ``powershell -EncodedCommand``, long scripts sent in chunks.

pywinrm's ``Session.run_ps`` opens and deletes a shell for every call; here the session opens one shell
(``Protocol.open_shell``), runs every script as a command in it (``run_command`` + ``get_command_output_raw``)
and deletes it on close. Output is polled with an overall deadline, because pywinrm's own
``get_command_output`` retries operation timeouts forever.

cmd.exe refuses command lines over 8191 characters, and UTF-16LE base64 makes a script ~2.7x longer. Longer
scripts are written as base64 chunks to a temp file by ``(echo CHUNK)>>file`` commands, then a small stub
decodes and runs the file (and deletes it).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from connectors.errors import ConnectorError, Rejected, Timeout
from connectors.types import ConnectorContext, Credentials, Target
from connectors.winrm_windows.errors import decode_clixml, map_exception
from connectors.winrm_windows.powershell import CMD_LINE_LIMIT, command_line
from connectors.winrm_windows.options import WinRMSettings

__all__ = ["ScriptResult", "WinRMSession", "chunk_commands"]

_CHUNK = 7600  # base64 characters per echo command, well under the cmd.exe limit with the redirection


@dataclass
class ScriptResult:
    """What one script produced on the host (stderr already decoded from CLIXML)."""

    stdout: str
    stderr: str
    exit_code: int


def chunk_commands(script: str, token: str) -> list[str]:
    """cmd.exe commands that run ``script`` when it is too long for one command line (each under the limit)."""
    path = f'"%TEMP%\\ir-{token}.b64"'
    payload = base64.b64encode(script.encode("utf-8")).decode("ascii")
    cmds = [f"type nul > {path}"]
    cmds += [f"(echo {payload[i:i + _CHUNK]})>> {path}" for i in range(0, len(payload), _CHUNK)]
    stub = (f"$p = Join-Path $env:TEMP 'ir-{token}.b64'; "
            "$s = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([IO.File]::ReadAllText($p))); "
            "Remove-Item -LiteralPath $p -Force; & ([ScriptBlock]::Create($s))")
    cmds.append(command_line(stub))
    return cmds


class WinRMSession:
    """An authenticated WinRM connection with one open cmd shell. Use :meth:`run_script` / :meth:`run_json`."""

    def __init__(self, target: Target, creds: Credentials, ctx: ConnectorContext, settings: WinRMSettings) -> None:
        self.target = target
        self.ctx = ctx
        self.settings = settings
        self.endpoint = f"{settings.scheme}://{_url_host(target.address)}:{settings.port}/wsman"
        self.commands_sent = 0
        self._creds = creds
        self._protocol: Any = None
        self._shell_id: str | None = None
        self.dialect: str | None = None  # firewall tooling, detected once (see firewall.detect_dialect)

    @property
    def username(self) -> str:
        """The account the agent logs on with (never the password)."""
        return self._creds.username

    # -- connection -------------------------------------------------------------------------------------------
    def open(self) -> WinRMSession:
        """Build the pywinrm Protocol (lazy import) and open the shell; TLS and auth failures surface here."""
        with self._mapped("open shell"):
            from winrm.protocol import Protocol

            op_timeout = max(1, min(20, int(self.ctx.command_timeout)))
            password = self._creds.password.reveal() if self._creds.password is not None else ""
            self._protocol = Protocol(
                endpoint=self.endpoint,
                transport=self.settings.transport,  # type: ignore[arg-type]
                username=self._creds.username,
                password=password,
                server_cert_validation="validate",
                ca_trust_path=self.settings.ca_file,  # type: ignore[arg-type]  # None: system store, never the env
                message_encryption=self.settings.message_encryption,  # type: ignore[arg-type]
                operation_timeout_sec=op_timeout,
                read_timeout_sec=op_timeout + max(1, int(self.ctx.connect_timeout)),
                proxy=None,
            )
            if self.settings.transport == "kerberos":
                from connectors.winrm_windows import kerberos

                kerberos.install(self._protocol.transport, self.settings, self._creds.username,
                                 self._creds.password.reveal() if self._creds.password is not None else None)
            self._install_name_override()
            self._shell_id = self._protocol.open_shell(codepage=65001, noprofile=True)
        return self

    def _install_name_override(self) -> None:
        """With ``server_name``, connect to the pinned address but check the certificate for that name (no DNS).
        Building the session here also runs the Kerberos handshake (and message-encryption setup) at open."""
        name = self.settings.server_name
        if not name or self.settings.scheme != "https":
            if self.settings.transport == "kerberos":
                self._protocol.transport.build_session()
            return
        from requests.adapters import HTTPAdapter

        class _NameAdapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                kwargs["server_hostname"] = name
                kwargs["assert_hostname"] = name
                super().init_poolmanager(*args, **kwargs)

        session = self._protocol.transport.build_session()
        session.mount("https://", _NameAdapter())

    def reconnect(self) -> None:
        """Drop the TCP connection (the shell stays on the host); the next command proves a *new* connection works."""
        if self._protocol is not None:
            self._protocol.transport.close_session()
            self._install_name_override()

    def close(self) -> None:
        """Delete the shell and close the connection; failures here are not worth an error (the host may be gone)."""
        protocol, shell_id = self._protocol, self._shell_id
        self._protocol = self._shell_id = None
        if protocol is None:
            return
        try:
            if shell_id is not None:
                protocol.close_shell(shell_id)
        except Exception:  # noqa: BLE001 - best effort: the host reaps idle shells itself
            protocol.transport.close_session()

    # -- running ----------------------------------------------------------------------------------------------
    def run_script(self, script: str, *, timeout: float | None = None) -> ScriptResult:
        """Run a PowerShell script, chunked when the command line would exceed cmd.exe's limit."""
        line = command_line(script)
        if len(line) <= CMD_LINE_LIMIT:
            return self._run_command(line, timeout)
        *writers, runner = chunk_commands(script, secrets.token_hex(8))
        for cmd in writers:
            res = self._run_command(cmd, timeout)
            if res.exit_code != 0:
                raise Rejected(f"writing script chunk failed (exit {res.exit_code}): {res.stderr or res.stdout}")
        return self._run_command(runner, timeout)

    def run_checked(self, script: str, *, what: str, timeout: float | None = None) -> str:
        """Run and return stdout; a non-zero exit becomes :class:`Rejected` with PowerShell's own message."""
        res = self.run_script(script, timeout=timeout)
        if res.exit_code != 0:
            message = res.stderr or res.stdout.strip() or "no error text"
            raise Rejected(f"{what} failed on {self.target.name} (exit {res.exit_code}): {message}",
                           detail={"exit_code": res.exit_code})
        return res.stdout

    def run_json(self, script: str, *, what: str) -> Any:
        """Run a script whose last output is ``ConvertTo-Json`` and parse it."""
        out = self.run_checked(script, what=what).strip()
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            raise Rejected(f"{what}: host answered with something that is not JSON: {out[:200]!r}") from None

    def _run_command(self, line: str, timeout: float | None) -> ScriptResult:
        if self._protocol is None or self._shell_id is None:
            raise ConnectorError("WinRM session is closed")
        deadline = time.monotonic() + (timeout if timeout is not None else self.ctx.command_timeout)
        import winrm.exceptions as wx

        with self._mapped("run command"):
            command_id = self._protocol.run_command(self._shell_id, line)
            self.commands_sent += 1
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                try:
                    o, e, code, done = self._protocol.get_command_output_raw(self._shell_id, command_id)
                except wx.WinRMOperationTimeoutError:
                    if time.monotonic() >= deadline:
                        raise Timeout(f"command still running after {timeout or self.ctx.command_timeout:g}s; "
                                      "its outcome is unknown") from None
                    continue
                out.append(o)
                err.append(e)
                if done:
                    break
                if time.monotonic() >= deadline:
                    raise Timeout("command did not finish in time; its outcome is unknown")
            self._protocol.cleanup_command(self._shell_id, command_id)
        # With code page 65001 a UTF-8 BOM may lead a stream (pywinrm issue 111): "utf-8-sig" drops it.
        stderr = b"".join(err).decode("utf-8-sig", "replace")
        return ScriptResult(b"".join(out).decode("utf-8-sig", "replace"), decode_clixml(stderr), code)

    @contextmanager
    def _mapped(self, where: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError as exc:
            raise exc.with_context(target=self.target.name, connector="winrm_windows") from exc.__cause__
        except Exception as exc:
            raise map_exception(exc, where=where).with_context(
                target=self.target.name, connector="winrm_windows") from exc


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
