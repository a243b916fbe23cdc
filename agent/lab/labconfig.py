"""The lab's agent.yaml and inventory.yaml, in the project's configuration schema.

Why generated: the agent key, the known_hosts file pinning every lab host's real key and the database all live in
the lab's state directory, whose absolute path differs per checkout and per prefix. Written with a tiny emitter
(every string double-quoted, JSON-style) so the lab and its CLI stay standard-library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent import paths
from agent.lab.topology import HOSTS, MGMT_ADDRESS, SUDO_ACCOUNT, specs, worker_host

__all__ = ["agent_settings", "inventory", "to_yaml", "write"]

MANAGED_HOSTS = ("victim", "peer", "legacy")
# What the demo business keeps where: the counsel report turns this into the notification checklist.
# Counts are people per data set, by state (docs in config/inventory.yaml).
DATA = {"victim": (["ssn", "financial_account"], {"MA": 1225, "NY": 310}), "peer": (["health"], {"MA": 84}),
        "legacy": (["payment_card"], {"MA": 2210, "CA": 640})}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))


def to_yaml(data: Mapping[str, Any], indent: int = 0) -> str:
    """Block-style YAML for nested mappings whose leaves are scalars or lists of scalars."""
    pad = "  " * indent
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.append(f"{pad}{key}:" + (" {}" if not value else ""))
            if value:
                out.append(to_yaml(value, indent + 1).rstrip("\n"))
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(out) + "\n"


def agent_settings(repo: Path, config_dir: Path, state_dir: Path) -> dict[str, Any]:
    """agent.yaml contents: every path absolute, all state under the lab's state directory."""
    return {
        "inventory": str(config_dir / "inventory.yaml"),
        "runbooks": str(paths.shipped_runbooks()),
        "database": str(state_dir / "agent.db"),
        "audit_dir": str(state_dir / "audit"),
        "evidence_dir": str(state_dir / "evidence"),
        "audit_signing_key": str(state_dir / "audit-signing.key"),
        "timezone": "America/New_York",
        "obligations": str(paths.shipped_obligations()),
        "ssh": {"known_hosts": str(state_dir / "known_hosts"), "connect_timeout": 5, "command_timeout": 30},
        "engine": {"max_parallel": 8, "retries": 3, "backoff": 0.5, "confirm_timeout": 300},
    }


def inventory(state_dir: Path, directory: dict[str, Any] | None = None,
              fleet: Sequence[str] = (), sites: Mapping[str, str] | None = None) -> dict[str, Any]:
    """inventory.yaml contents: the managed hosts, the protected management host and the fw device; fleet hosts
    (``lab up --hosts N``) carry the tag ``fleet`` so ``agent contain --tag fleet`` selects them all; with
    ``--sites K`` each names its site (declared under ``sites:``), whose worker host alone reaches it."""
    creds = {"username": "root", "private_key": f"file:{state_dir / 'agent_key'}"}
    hosts: dict[str, Any] = {}
    for name in MANAGED_HOSTS:
        hosts[name] = {"address": HOSTS[name].address, "os": "linux", "connector": "ssh_linux",
                       "credentials": dict(creds), "tags": ["lab"],
                       "data": DATA[name][0], "residents": DATA[name][1]}
    sites = dict(sites or {})
    fleet_specs = specs(len(fleet), len(set(sites.values())))
    for name in fleet:
        hosts[name] = {"address": fleet_specs[name].address, "os": "linux", "connector": "ssh_linux",
                       "credentials": dict(creds), "tags": ["lab", "fleet"]}
        if name in sites:
            hosts[name]["site"] = sites[name]
    # sshd refuses root here: the agent logs in as the service account and gets root per command (sudo -n).
    hosts["sudohost"] = {"address": HOSTS["sudohost"].address, "os": "linux", "connector": "ssh_linux",
                         "credentials": {**creds, "username": SUDO_ACCOUNT}, "tags": ["sudo"],
                         "options": {"sudo": True}}
    # Only fw reaches dmz: the agent goes through fw as a ProxyJump bastion whose host key is pinned here.
    hosts["dmz"] = {"address": HOSTS["dmz"].address, "os": "linux", "connector": "ssh_linux",
                    "credentials": dict(creds), "tags": ["dmz"], "jump": ["bastion"]}
    hosts["mgmt"] = {"address": MGMT_ADDRESS, "os": "linux", "connector": "ssh_linux",
                     "credentials": dict(creds), "tags": ["lab", "management"]}
    inv: dict[str, Any] = {
        "management": {"addresses": [MGMT_ADDRESS]},
        "protected": {"hosts": ["mgmt"], "cidrs": [f"{MGMT_ADDRESS}/32"], "accounts": ["breakglass"]},
        "jump_hosts": {"bastion": {"address": HOSTS["fw"].address, "port": 22, "credentials": dict(creds),
                                   "host_key": _host_key(state_dir, "fw")}},
        "hosts": hosts,
        "devices": {"fw": {"address": HOSTS["fw"].address, "device_type": "linux", "edge": True,
                           "credentials": dict(creds), "options": {}}},
    }
    if sites:
        # each site's worker acts from its leg on the site segment: isolation must keep that address open too
        legs = [dict(fleet_specs[worker_host(site)].interfaces)["eth1"].split("/")[0]
                for site in sorted(set(sites.values()))]
        inv["management"]["addresses"] = [MGMT_ADDRESS, *legs]
        inv["sites"] = {site: {} for site in sorted(set(sites.values()), key=lambda s: int(s.removeprefix("site")))}
    if directory is not None:  # `lab up --with-ad`: the Samba DC, and who logs in where
        inv["directories"] = {"lab-ad": directory}
        hosts["victim"]["users"] = ["jdoe"]
    return inv


def _host_key(state_dir: Path, host: str) -> str:
    """``ssh-ed25519 AAAA...`` of a lab host (its public key file without the comment)."""
    path = state_dir / "hosts" / host / "ssh_host_ed25519_key.pub"
    try:
        return " ".join(path.read_text(encoding="ascii").split()[:2])
    except OSError:
        return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPendingLabUpWritesTheRealKeyHere0000000"


def write(repo: Path, config_dir: Path, state_dir: Path, prefix: str, fleet: Sequence[str] = (),
          sites: Mapping[str, str] | None = None) -> Path:
    """Write agent.yaml and inventory.yaml into ``config_dir``; return the agent.yaml path."""
    config_dir.mkdir(parents=True, exist_ok=True)
    head = (f"# Generated by `agent lab up` for the practice lab {prefix!r}; rewritten on every `lab up`.\n"
            f"# Run the agent from the management host with this file as its configuration: "
            f"ip netns exec {prefix}-mgmt ...\n")
    inv_path = config_dir / "inventory.yaml"
    agent_path = config_dir / "agent.yaml"
    from agent.lab.ad import stored_entry
    _atomic_write(inv_path, head + to_yaml(inventory(state_dir, stored_entry(state_dir), fleet, sites)))
    _atomic_write(agent_path, head + to_yaml(agent_settings(repo, config_dir, state_dir)))
    return agent_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
