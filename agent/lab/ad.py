"""`agent lab up --with-ad`: a real Samba AD domain controller on the lab LAN (10.77.0.50), for rehearsing
account containment. It joins the lab's switch but gets no default route, so nothing it says can leave.

The agent binds as ``ir-agent@lab.test`` (a Domain Admin, password in the lab state dir, referenced with
``file:``). Demo users: ``jdoe`` (logs in on ``victim``, member of ``IT-Admins`` which is nested in
``Domain Admins``) and ``breakglass`` (protected: the agent must refuse to touch it).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

from agent.lab import netns
from agent.lab.topology import BRIDGE, SWITCH, namespace_name, switch_port_name

__all__ = ["DC_ADDRESS", "DEMO_PASSWORD", "DEMO_USER", "ad_present", "directory_entry", "down_ad", "up_ad"]

DC_ADDRESS = "10.77.0.50"
DEMO_USER = "jdoe"
DEMO_PASSWORD = "Lab-Demo-Passw0rd!"  # a throwaway lab account's password, shown in the demo on purpose
_RUNNING: dict[str, Any] = {}  # namespace -> SambaDC started by this process (keeps its process handle alive)


def _dc_dir(state_dir: Path) -> Path:
    return state_dir / "dc"


def ad_present(state_dir: Path) -> bool:
    return (state_dir / "ad.json").exists()


def _attach(prefix: str) -> None:
    ns, switch = namespace_name(prefix, "dc"), namespace_name(prefix, SWITCH)
    netns.add(ns)
    port = switch_port_name(prefix, "dc")
    # a fixed MAC: a DC restarted within seconds must not be hidden behind the hosts' stale ARP entries
    netns.ip("link", "add", "eth0", "address", "02:77:00:00:00:50", "netns", ns, "type", "veth",
             "peer", "name", port, "netns", switch)
    netns.run(switch, ["ip", "link", "set", port, "master", BRIDGE])
    netns.run(switch, ["ip", "link", "set", port, "up"])
    netns.run(ns, ["ip", "link", "set", "eth0", "up"])
    netns.run(ns, ["ip", "addr", "add", f"{DC_ADDRESS}/24", "dev", "eth0"])


def up_ad(prefix: str, state_dir: Path) -> dict[str, Any]:
    """Start the DC in ``<prefix>-dc`` with the lab's demo accounts; return the inventory directory entry."""
    from agent.lab.samba import SambaDC
    _attach(prefix)
    dc = SambaDC(namespace_name(prefix, "dc"), DC_ADDRESS, _dc_dir(state_dir))
    dc.provision()
    dc.start()
    _RUNNING[namespace_name(prefix, "dc")] = dc
    password_file = state_dir / "ad_agent_password"
    password = secrets.token_urlsafe(18) + "-A1"
    dc.create_user("ir-agent", password)
    dc.add_members("Domain Admins", ["ir-agent"])
    password_file.write_text(password)
    password_file.chmod(0o600)
    dc.create_user(DEMO_USER, DEMO_PASSWORD)
    dc.create_user("breakglass", secrets.token_urlsafe(18) + "-B2")
    dc.create_group("IT-Admins")
    dc.add_members("Domain Admins", ["IT-Admins"])
    dc.add_members("IT-Admins", [DEMO_USER])
    entry = directory_entry(dc, password_file)
    (state_dir / "ad.json").write_text(json.dumps(entry))
    return entry


def directory_entry(dc: Any, password_file: Path) -> dict[str, Any]:
    return {"address": DC_ADDRESS,
            "options": {"base_dn": dc.base_dn, "server_name": dc.server_name, "ca_file": str(dc.ca_file),
                        "port": 636, "protected_accounts": ["breakglass"]},
            "credentials": {"username": "ir-agent@lab.test", "password": f"file:{password_file}"}}


def down_ad(prefix: str, state_dir: Path) -> None:
    """Stop the DC (only its own processes) and delete its namespace; idempotent."""
    from agent.lab.samba import SambaDC
    dc = _RUNNING.pop(namespace_name(prefix, "dc"), None)
    if dc is None and _dc_dir(state_dir).exists():
        dc = SambaDC(namespace_name(prefix, "dc"), DC_ADDRESS, _dc_dir(state_dir))
    if dc is not None:
        dc.teardown(remove_state=True)
    ns = namespace_name(prefix, "dc")
    if netns.exists(ns):
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True, env=netns._env())
    (state_dir / "ad.json").unlink(missing_ok=True)


def stored_entry(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "ad.json"
    return json.loads(path.read_text()) if path.exists() else None
