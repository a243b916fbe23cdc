"""Run the real ``agent`` CLI against vendor simulators: an agent.yaml + inventory whose devices are simulators.

Importable by tests (conftest is not). Everything is on loopback; no namespaces needed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import paramiko

from tests.doubles.vendor_cli import SIM_OPTIONS, CliSimulator

REPO = Path(__file__).resolve().parents[3]
AGENT = str(REPO / ".venv" / "bin" / "agent")


class SimCli:
    """An agent configuration in ``root`` whose inventory lists ``devices`` {name: (device_type, simulator)}."""

    def __init__(self, root: Path, host_key: paramiko.PKey,
                 devices: dict[str, tuple[str, CliSimulator]], **device_options: dict[str, Any]) -> None:
        self.root = root
        pw = root / "device-password"
        pw.write_text("s3cret-pw")
        secret = root / "device-enable"
        secret.write_text("en-s3cret")
        inv: dict[str, Any] = {"management": {"addresses": ["192.0.2.10"]}, "devices": {}}
        for name, (device_type, sim) in devices.items():
            inv["devices"][name] = {
                "address": "127.0.0.1", "port": sim.port, "device_type": device_type, "edge": True,
                "host_key": f"{host_key.get_name()} {host_key.get_base64()}",
                "credentials": {"username": "admin", "password": f"file:{pw}", "secret": f"file:{secret}"},
                "options": {k: v for k, v in {**SIM_OPTIONS[device_type], **device_options.get(name, {})}.items()
                            if v is not None}}
        (root / "inventory.yaml").write_text(json.dumps(inv))
        (root / "agent.yaml").write_text(json.dumps({
            "inventory": str(root / "inventory.yaml"), "runbooks": str(REPO / "agent" / "data" / "runbooks"),
            "database": str(root / "agent.db"), "audit_dir": str(root / "audit"),
            "evidence_dir": str(root / "evidence"), "audit_signing_key": str(root / "audit.key"),
            "ssh": {"connect_timeout": 5, "command_timeout": 15}, "engine": {"retries": 1, "backoff": 0.1}}))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "AGENT_CONFIG": str(self.root / "agent.yaml"), "NO_COLOR": "1"}
        return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=120, env=env,
                              stdin=subprocess.DEVNULL, check=False)
