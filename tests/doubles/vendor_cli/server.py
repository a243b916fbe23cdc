"""An SSH CLI simulator: a paramiko server on 127.0.0.1 that gives every shell session one vendor CLI model.

Why a real SSH server: the connector must be driven by netmiko's own device_type drivers (prompt detection,
paging commands, config-mode handling, echo verification), so the double speaks SSH and an interactive terminal —
echo, CR/LF handling, prompts — and nothing on the client side is patched.

The device *state* (running/saved config) lives on the simulator and is shared by all sessions, like a real box.
Tests read it (``sim.state``), count what happened (``sim.connections``, ``sim.sessions``, ``sim.saves``,
``sim.config_entries``, ``sim.lines``) and inject faults (:meth:`CliSimulator.inject`).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

__all__ = ["CliSimulator", "Fault", "new_host_key", "write_known_hosts"]


@dataclass
class Fault:
    """Do ``action`` to the ``nth`` line matching ``pattern`` (1-based; 0 = every match)."""

    pattern: str
    action: str                 # "reject" | "drop" | "delay"
    nth: int = 1
    seconds: float = 0.0
    message: str | None = None
    seen: int = 0
    fired: int = 0

    def hit(self, line: str) -> bool:
        if not re.search(self.pattern, line):
            return False
        self.seen += 1
        if self.nth == 0 or self.seen == self.nth:
            self.fired += 1
            return True
        return False


def new_host_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate(bits=256)


def write_known_hosts(path: Path, entries: list[tuple[int, paramiko.PKey]]) -> Path:
    path.write_text("".join(f"[127.0.0.1]:{port} {key.get_name()} {key.get_base64()}\n" for port, key in entries))
    return path


class _Iface(paramiko.ServerInterface):
    def __init__(self, sim: CliSimulator) -> None:
        self.sim = sim
        self.shell = threading.Event()
        self.user = ""

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username: str) -> str:
        return "password,keyboard-interactive"

    def _ok(self, username: str, password: str) -> int:
        user = username.split("+", 1)[0]   # MikroTik login options: admin+ct511w4098h
        if user == self.sim.username and password == self.sim.password:
            self.user = user
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return self._ok(username, password)

    def check_auth_interactive(self, username: str, submethods: str) -> paramiko.InteractiveQuery:
        self.user = username
        query = paramiko.InteractiveQuery("", "")
        query.add_prompt("Password: ", False)
        return query

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        return self._ok(self.user, responses[0] if responses else "")

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.shell.set()
        return True

    def check_channel_window_change_request(self, *args: Any) -> bool:
        return True


class CliSimulator:
    """Serve ``model_factory(sim)`` per SSH shell session; ``state`` is shared across sessions."""

    def __init__(self, model_factory: Callable[[CliSimulator], Any], state: Any, host_key: paramiko.PKey,
                 username: str = "admin", password: str = "s3cret-pw", enable_secret: str = "en-s3cret") -> None:
        self.model_factory = model_factory
        self.state = state
        self.host_key = host_key
        self.username, self.password, self.enable_secret = username, password, enable_secret
        self.connections = 0
        self.sessions = 0
        self.lines: list[str] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self._stop = threading.Event()
        self.port = 0

    # ----- test-facing helpers ----------------------------------------------------------------------------------
    @property
    def saves(self) -> int:
        return int(self.state.saves)

    @property
    def config_entries(self) -> int:
        return int(self.state.config_entries)

    @property
    def saved_config(self) -> Any:
        return self.state.saved

    @property
    def rule_references_group(self) -> bool:
        return bool(self.state.rule_references_group)

    def inject(self, pattern: str, action: str, nth: int = 1, seconds: float = 0.0,
               message: str | None = None) -> Fault:
        fault = Fault(pattern, action, nth, seconds, message)
        self.faults.append(fault)
        return fault

    def reset_counters(self) -> None:
        self.connections = self.sessions = 0
        self.lines.clear()
        self.state.saves = self.state.config_entries = 0

    # ----- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> CliSimulator:
        paramiko.Transport.load_server_moduli()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"sim-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for tr in list(self._transports):
            tr.close()
        if self._sock:
            self._sock.close()
        for t in self._threads:
            t.join(timeout=0.2)   # daemon threads; a handshake that never opened a channel may linger

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        transport.add_server_key(self.host_key)
        iface = _Iface(self)
        try:
            transport.start_server(server=iface)
            chan = transport.accept(timeout=10)
            if chan is None or not iface.shell.wait(10):
                return
            with self.lock:
                self.sessions += 1
            model = self.model_factory(self)
            _Terminal(self, chan, model).run()
        except (EOFError, OSError, paramiko.SSHException):
            pass
        finally:
            transport.close()
            if transport in self._transports:
                self._transports.remove(transport)


class _Terminal:
    """Line discipline of a device console: echo, CR/LF/CRLF as one Enter, prompt after every answer."""

    def __init__(self, sim: CliSimulator, chan: paramiko.Channel, model: Any) -> None:
        self.sim, self.chan, self.model = sim, chan, model
        self.buf = ""
        self.last_cr = False

    def send(self, text: str) -> None:
        self.chan.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def run(self) -> None:
        self.send(self.model.greeting() + self.model.prompt())
        while not self.model.closed:
            data = self.chan.recv(65536)
            if not data:
                return
            for ch in data.decode("utf-8", "replace"):
                if ch in "\r\n":
                    if ch == "\n" and self.last_cr:
                        self.last_cr = False
                        continue
                    self.last_cr = ch == "\r"
                    line, self.buf = self.buf, ""
                    if not self.line(line):
                        return
                else:
                    self.last_cr = False
                    self.buf += ch

    def line(self, line: str) -> bool:
        echo = (line if self.model.echo else "") + "\n"
        with self.sim.lock:
            self.sim.lines.append(line)
            faults = [f for f in self.sim.faults if f.hit(line)]
        for fault in faults:
            if fault.action == "drop":
                self.chan.close()
                self.chan.get_transport().close()
                return False
            if fault.action == "delay":
                self.send(echo)
                echo = ""
                time.sleep(fault.seconds)
        with self.sim.lock:
            if any(f.action == "reject" for f in faults):
                msg = next((f.message for f in faults if f.message), None)
                out = msg if msg is not None else self.model.reject(line)
            else:
                out = self.model.handle(line)
        if out and not out.endswith("\n"):
            out += "\n"
        self.send(echo + out + ("" if self.model.closed else self.model.prompt()))
        if self.model.closed:
            self.chan.close()
            return False
        return True
