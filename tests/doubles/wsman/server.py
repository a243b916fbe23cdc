"""The WinRM double: a real HTTP(S) server on 127.0.0.1 speaking the WS-Management shell resource.

    host = WindowsHost()
    with WSManDouble(host, tls=cert, users={"Administrator": "S3cret!"}) as dbl:
        ...connector talks to 127.0.0.1:dbl.port...
        assert host.group_rules("IR-Containment")

New TCP connections are filtered by the simulated Windows Firewall (a denied connection is black-holed, like a
dropped SYN, until the client gives up). Faults can be injected per action: ``delay`` (seconds before
answering), ``timeout_fault`` (w:TimedOut), ``status`` (an HTTP status with a non-SOAP body), ``drop`` (close
without answering), ``close_after`` (answer, then close the connection).
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.doubles.wsman import soap
from tests.doubles.wsman.auth import (
    ENC_CONTENT_TYPE,
    cert_hash,
    decrypt_body,
    encrypt_body,
    ntlm_acceptor,
    parse_basic,
)
from tests.doubles.wsman.host import WindowsHost
from tests.doubles.wsman.interpreter import Interpreter
from tests.doubles.wsman.pki import ServerCert

__all__ = ["InjectedFault", "JournalEntry", "WSManDouble"]


@dataclass
class JournalEntry:
    """One WS-Management request as the double saw it."""

    action: str
    user: str
    encrypted: bool
    command_line: str | None = None
    new_connection: bool = False


@dataclass
class InjectedFault:
    """A fault applied to the next ``times`` requests of ``action`` (``*`` for any)."""

    action: str
    kind: str
    value: float = 0.0
    times: int = 1


@dataclass
class _Shell:
    owner: str
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: WSManDouble

    def process_request(self, request: Any, client_address: Any) -> None:
        dbl = self.double
        dbl.connections += 1
        if not dbl.host.allows_inbound(client_address[0], dbl.port):
            dbl.refused += 1
            threading.Thread(target=self._blackhole, args=(request,), daemon=True).start()
            return
        super().process_request(request, client_address)

    def _blackhole(self, request: socket.socket) -> None:
        self.double._stopping.wait(30)
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.double._tls is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            tls_sock = self.double._tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.double.tls_failures += 1
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            tls_sock.close()  # wrap_socket detached ``request``: socketserver would only close the empty shell


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes; no 40 ms delayed-ACK stalls
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.conn_user: str | None = None
        self.ntlm: Any = None
        self.fresh = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
              content_type: str = "application/soap+xml;charset=UTF-8") -> None:
        self.send_response(code)
        for k, v in headers or []:
            self.send_header(k, v)
        if getattr(self, "close_after", False):
            self.send_header("Connection", "close")
            self.close_connection = True
            self.close_after = False
        if getattr(self, "mutual_token", None):
            self.send_header("WWW-Authenticate", "Negotiate " + base64.b64encode(self.mutual_token).decode())
            self.mutual_token = None
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, token: str | None = None) -> None:
        dbl = self.server.double
        headers = []
        if token is not None:
            headers.append(("WWW-Authenticate", f"Negotiate {token}"))
        else:
            if "ntlm" in dbl.auth or "kerberos" in dbl.auth:
                headers.append(("WWW-Authenticate", "Negotiate"))
            if "basic" in dbl.auth and (dbl._tls is not None or dbl.allow_basic_http):
                headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", headers)

    def _authenticate(self) -> str | None:
        """The user of this request, or None after answering 401 (challenge or refusal)."""
        dbl = self.server.double
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and "basic" in dbl.auth and (dbl._tls is not None or dbl.allow_basic_http):
            creds = parse_basic(value)
            if creds and dbl.users.get(creds[0].split("\\")[-1]) == creds[1]:
                return creds[0].split("\\")[-1]
            dbl.auth_failures += 1
            self._challenge()
            return None
        if scheme.lower() == "negotiate" and "kerberos" in dbl.auth and value and \
                not base64.b64decode(value).startswith(b"NTLMSSP\x00"):
            return self._kerberos(base64.b64decode(value))
        if scheme.lower() in ("negotiate", "ntlm") and "ntlm" in dbl.auth and value:
            import spnego.exceptions

            token = base64.b64decode(value)
            try:
                if token[8:12] == b"\x01\x00\x00\x00":
                    self.ntlm = ntlm_acceptor(dbl._cbt)
                    self._challenge(base64.b64encode(self.ntlm.step(token) or b"").decode())
                    return None
                if self.ntlm is None:
                    raise ValueError("authenticate message without negotiate")
                self.ntlm.step(token)
            except (spnego.exceptions.SpnegoError, ValueError):
                dbl.auth_failures += 1
                self.ntlm = None
                self._challenge()
                return None
            principal = str(self.ntlm.client_principal)
            domain = principal.split("\\")[0] if "\\" in principal else ""
            if domain and domain.upper() not in (dbl.host.hostname.upper(), ".") and not self._dc_reachable():
                # A domain account's NTLM network logon is completed by the host passing the response to a DC
                # over Netlogon (MS-APDS 3.1.5, MS-NRPC NetrLogonSamLogonEx): with every DC blocked the logon
                # fails ("There are currently no logon servers available") and WinRM answers 401.
                dbl.auth_failures += 1
                dbl.dc_unreachable_logons += 1
                self.ntlm = None
                self._challenge()
                return None
            self.conn_user = principal.split("\\")[-1]
            return self.conn_user
        if not header and self.conn_user is not None:
            return self.conn_user
        self._challenge()
        return None

    def _kerberos(self, token: bytes) -> str | None:
        """Accept a Kerberos AP-REQ for ``HTTP/<fqdn>`` with the service key from the keytab in ``KRB5_KTNAME``
        (exported from the lab's Samba DC). The ticket is checked with that key alone — no DC is asked, which is
        why Kerberos keeps working on an isolated host — and the AP-REP goes back for mutual authentication."""
        import spnego
        import spnego.exceptions

        dbl = self.server.double
        try:
            ctx = spnego.server(protocol="kerberos")
            answer = ctx.step(token)
        except spnego.exceptions.SpnegoError:
            dbl.auth_failures += 1
            self._challenge()
            return None
        if not ctx.complete:
            dbl.auth_failures += 1
            self._challenge()
            return None
        self.ntlm = ctx  # the security context that seals messages (named for NTLM, which came first)
        self.mutual_token = answer
        dbl.kerberos_logons += 1
        self.conn_user = str(ctx.client_principal).split("@")[0]
        return self.conn_user

    def _dc_reachable(self) -> bool:
        """Netlogon to a DC: RPC endpoint mapper (135) or SMB named pipe (445), TCP, as the host's firewall sees it."""
        host = self.server.double.host
        return any(host.allows_outbound(dc, port) for dc in host.domain_controllers for port in (135, 445))

    def do_POST(self) -> None:
        dbl = self.server.double
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/wsman":
            self._send(404, b"Not Found", content_type="text/plain")
            return
        user = self._authenticate()
        if user is None:
            return
        encrypted = "multipart/encrypted" in self.headers.get("Content-Type", "")
        if encrypted:
            if self.ntlm is None:
                self._send(400, b"encrypted body without a security context", content_type="text/plain")
                return
            try:
                data = decrypt_body(self.ntlm, data)
            except ValueError as exc:
                self._send(400, str(exc).encode(), content_type="text/plain")
                return
        if not data:
            self._send(200)  # pywinrm's empty POST that sets up the encryption context
            return
        if dbl._tls is None and not encrypted and not dbl.allow_unencrypted:
            dbl.journal.append(JournalEntry("(refused: unencrypted)", user, False))
            self._send(400, b"unencrypted traffic is disabled", content_type="text/plain")
            return
        try:
            req = soap.parse_request(data)
        except (ValueError, SyntaxError) as exc:
            self._send(400, f"bad SOAP: {exc}".encode(), content_type="text/plain")
            return
        injected = dbl._take_fault(req.action)
        if injected is not None:
            if injected.kind == "delay":
                dbl._stopping.wait(injected.value)
            elif injected.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            elif injected.kind == "status":
                self._send(int(injected.value), b"<html><body>Service Unavailable</body></html>",
                           content_type="text/html")
                return
            elif injected.kind == "close_after":
                # Answer, then close the TCP connection (HTTP.sys does so on its idle timeout): the client's next
                # request arrives on a new connection, which must authenticate again.
                self.close_after = True
            elif injected.kind == "timeout_fault":
                self._reply(soap.fault(req.message_id, "TimedOut", "The WS-Management service cannot complete the "
                                       "operation within the time specified in OperationTimeout.", 2150858793),
                            encrypted, 500)
                return
        entry = JournalEntry(req.action, user, encrypted, new_connection=self.fresh)
        self.fresh = False
        dbl.journal.append(entry)
        code, body = dbl._dispatch(req, user, entry, self.headers.get("Host", ""))
        self._reply(body, encrypted, code)

    def _reply(self, body: bytes, encrypted: bool, code: int) -> None:
        if encrypted:
            self._send(code, encrypt_body(self.ntlm, body), content_type=ENC_CONTENT_TYPE)
        else:
            self._send(code, body)


class WSManDouble:
    """A running WS-Management endpoint backed by a :class:`WindowsHost`; use as a context manager."""

    def __init__(self, host: WindowsHost, *, users: dict[str, str] | None = None,
                 auth: tuple[str, ...] = ("basic", "ntlm"), tls: ServerCert | None = None,
                 allow_basic_http: bool = False, allow_unencrypted: bool = False,
                 address: str = "127.0.0.1") -> None:
        self.host = host
        self.users = dict(users or {"Administrator": "S3cret!"})
        self.auth = auth
        self.allow_basic_http = allow_basic_http
        self.allow_unencrypted = allow_unencrypted
        self.journal: list[JournalEntry] = []
        self.scripts: list[str] = []
        self.shells: dict[str, _Shell] = {}
        self.faults: list[InjectedFault] = []
        self.connections = self.refused = self.tls_failures = self.auth_failures = 0
        self.dc_unreachable_logons = 0
        self.kerberos_logons = 0
        self._stopping = threading.Event()
        self._tls: ssl.SSLContext | None = None
        self._cbt: bytes | None = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self._cbt = cert_hash(Path(tls.cert_file).read_bytes())
        self._server = _Server((address, 0), _Handler)
        self._server.double = self
        self.port: int = self._server.server_address[1]
        # The listener runs on a random port: the host's built-in WinRM allow rule follows it.
        builtin = "WINRM-HTTPS-In-TCP" if tls is not None else "WINRM-HTTP-In-TCP"
        for rule in host.rule_named(builtin):
            rule.local_ports = [str(self.port)]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- test controls ----------------------------------------------------------------------------------------
    def inject(self, action: str, kind: str, value: float = 0.0, times: int = 1) -> None:
        """Make the next ``times`` requests of ``action`` fail with ``kind`` (see module docstring)."""
        with self.host.lock:
            self.faults.append(InjectedFault(action, kind, value, times))

    def fire_task(self, name: str) -> None:
        """Run a scheduled task's script now as SYSTEM, as if its trigger had come."""
        with self.host.lock:
            self.host.fire_task(name, Interpreter(self.host, "SYSTEM", self.scripts).run_script)

    def commands(self) -> list[str]:
        """Every command line received, in order."""
        return [e.command_line for e in self.journal if e.command_line is not None]

    def _take_fault(self, action: str) -> InjectedFault | None:
        with self.host.lock:
            for f in self.faults:
                if f.action in (action, "*") and f.times > 0:
                    f.times -= 1
                    return f
        return None

    # -- protocol ---------------------------------------------------------------------------------------------
    def _dispatch(self, req: soap.Request, user: str, entry: JournalEntry, host_header: str) -> tuple[int, bytes]:
        if req.resource_uri != soap.SHELL_URI:
            return 500, soap.fault(req.message_id, "InvalidResourceURI", "The WS-Management service cannot "
                                   "process the request because the resource URI is not valid.", 2150858811)
        if req.action == "Create":
            shell_id = str(uuid.uuid4()).upper()
            with self.host.lock:
                self.shells[shell_id] = _Shell(user)
                self.host.wsman_shells[shell_id] = (f"{self.host.hostname}\\{user}", 7000 + len(self.shells))
                self.host.ensure_dir(self.host.user_temp(user))
            return 200, soap.created(req.message_id, shell_id, f"{self.scheme}://{host_header}/wsman")
        shell = self.shells.get(req.shell_id or "")
        if shell is not None and (req.shell_id or "") not in self.host.wsman_shells:
            shell = None  # removed on the host (Remove-WSManInstance)
        if shell is None:
            return 500, soap.fault(req.message_id, "InvalidSelectors", f"The request for the Windows Remote Shell "
                                   f"with ShellId {req.shell_id} failed because the shell was not found on the "
                                   "server.", 2150858843)
        rsp = f"{{{soap.NS['rsp']}}}"
        if req.action == "Command":
            line = req.body.findtext(f"{rsp}CommandLine/{rsp}Command") or ""
            args = req.body.findtext(f"{rsp}CommandLine/{rsp}Arguments")
            line = f"{line} {args}" if args else line
            entry.command_line = line
            with self.host.lock:
                out, err, rc = Interpreter(self.host, shell.owner, self.scripts).run_cmdline(line)
            command_id = str(uuid.uuid4()).upper()
            bom = b"\xef\xbb\xbf" if self.host.output_bom else b""
            shell.commands[command_id] = {"stdout": (bom + out.encode()) if out else b"",
                                          "stderr": (bom + err.encode()) if err else b"", "rc": rc, "stdin": b""}
            return 200, soap.envelope("Command", req.message_id, f"<rsp:CommandResponse><rsp:CommandId>{command_id}"
                                      "</rsp:CommandId></rsp:CommandResponse>")
        if req.action == "Receive":
            stream = req.body.find(f"{rsp}Receive/{rsp}DesiredStream")
            cmd = shell.commands.get(stream.get("CommandId", "") if stream is not None else "")
            if cmd is None or stream is None:
                return 500, soap.fault(req.message_id, "InvalidParameter", "unknown CommandId", 2150858882)
            return 200, soap.receive_response(req.message_id, stream.get("CommandId", ""), cmd["stdout"],
                                              cmd["stderr"], cmd["rc"])
        if req.action == "Send":
            node = req.body.find(f"{rsp}Send/{rsp}Stream")
            cmd = shell.commands.get(node.get("CommandId", "") if node is not None else "")
            if cmd is None or node is None:
                return 500, soap.fault(req.message_id, "InvalidParameter", "unknown CommandId", 2150858882)
            cmd["stdin"] += base64.b64decode(node.text or "")
            return 200, soap.envelope("Send", req.message_id, "<rsp:SendResponse/>")
        if req.action == "Signal":
            node = req.body.find(f"{rsp}Signal")
            shell.commands.pop(node.get("CommandId", "") if node is not None else "", None)
            return 200, soap.envelope("Signal", req.message_id, "<rsp:SignalResponse/>")
        if req.action == "Delete":
            self.shells.pop(req.shell_id or "", None)
            self.host.wsman_shells.pop(req.shell_id or "", None)
            return 200, soap.envelope("Delete", req.message_id, "")
        return 500, soap.fault(req.message_id, "ActionNotSupported", f"The action {req.action} is not supported "
                               "by the service.", 2150858760)
