"""The shipped systemd unit: hardened, Type=notify with a watchdog, and its command line really starts the daemon.

"Tested by starting the unit's command line": the ExecStart= argv is run as written (only the installed path of
`agent` and the configuration file are swapped for this checkout's), with the environment systemd gives a
Type=notify service with a watchdog (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``): the daemon must say READY=1 once it
serves, keep feeding WATCHDOG=1, and say STOPPING=1 and exit 0 on SIGTERM. Protocol: sd_notify(3).
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from agent.paths import shipped
from tests.unit.daemon_env import configure

REPO = Path(__file__).resolve().parents[2]
UNIT = shipped("deploy", "containment-agent.service")


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_is_hardened_and_uses_the_fhs_folders() -> None:
    service = _unit()["Service"]
    for key, value in {"Type": "notify", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "User": "containment-agent", "StateDirectory": "containment-agent",
                       "LogsDirectory": "containment-agent", "ConfigurationDirectory": "containment-agent",
                       "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert service.get(key) == value, key
    assert int(service["WatchdogSec"]) > 0
    sysusers = shipped("deploy", "containment-agent.sysusers").read_text()
    assert "u containment-agent" in sysusers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_units_command_line_starts_notifies_and_stops(tmp_path: Path) -> None:
    cfg, _ = configure(tmp_path)
    port = _free_port()
    cfg.write_text(cfg.read_text().replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{port}"))
    argv = shlex.split(_unit()["Service"]["ExecStart"])
    assert argv[0].endswith("/agent") and argv[1] == "daemon"
    argv = [str(REPO / ".venv" / "bin" / "agent"), *[str(cfg) if a.endswith("agent.yaml") else a for a in argv[1:]]]
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(notify))
        sink.settimeout(1.0)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000", "AGENT_NO_WARM": "1"}
        log = tmp_path / "daemon.log"
        with log.open("w") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        messages: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and messages.count("WATCHDOG=1") < 2:
                try:
                    messages.append(sink.recv(4096).decode())
                except TimeoutError:
                    assert proc.poll() is None, log.read_text()
            assert messages and messages[0].startswith("READY=1"), messages
            assert messages.count("WATCHDOG=1") >= 2, messages
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
            while True:
                try:
                    messages.append(sink.recv(4096).decode())
                except TimeoutError:
                    break
            assert "STOPPING=1" in messages, messages
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
