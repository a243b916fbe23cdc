"""A small in-process SSH server on 127.0.0.1 for host-key, auth and error-mapping tests of ssh_linux.

It is a real paramiko server (real key exchange, real host key, real auth decisions), with a toy command
executor: every exec request reads stdin to EOF, answers ``out:<command>|in:<stdin>`` on stdout, ``err`` on
stderr, and exits with status 3 — unless the command is ``sleep``, which never answers (for timeouts).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Self

import paramiko

__all__ = ["SshDouble", "new_key", "write_key"]


def new_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate(bits=256)


def write_key(key: paramiko.PKey, path: Path, passphrase: str | None = None) -> str:
    key.write_private_key_file(str(path), password=passphrase)
    return str(path)


class _Server(paramiko.ServerInterface):
    def __init__(self, double: SshDouble) -> None:
        self.double = double

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == "root" and password == self.double.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.asbytes() == self.double.client_key.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        threading.Thread(target=self._exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def _exec(self, channel: Any, command: str) -> None:
        self.double.commands.append(command)
        if command.rstrip().endswith("sleep"):
            return
        data = b""
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            data += chunk
        tail = command.rsplit("; ", 1)[-1]
        channel.sendall(f"out:{tail}|in:{data.decode()}".encode())
        channel.sendall_stderr(b"err")
        channel.send_exit_status(3)
        channel.shutdown_write()
        channel.close()


class SshDouble:
    """``with SshDouble() as srv:`` serves SSH on ``srv.port`` until the block ends."""

    def __init__(self, host_key: paramiko.PKey | None = None, password: str = "right",
                 ciphers: tuple[str, ...] = ()) -> None:
        self.host_key = host_key or new_key()
        self.ciphers = ciphers  # what the server offers (default: paramiko's list), as sshd_config Ciphers
        self.client_key = new_key()
        self.password = password
        self.commands: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port: int = self._sock.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    @property
    def pin(self) -> str:
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            if self.ciphers:
                t.get_security_options().ciphers = self.ciphers
            self._transports.append(t)
            try:
                t.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                t.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for t in self._transports:
            t.close()
        self._sock.close()
