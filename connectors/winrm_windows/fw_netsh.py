"""Windows Firewall through ``netsh advfirewall``, for hosts without the NetSecurity module.

``netsh ... add rule`` has no group parameter, so the group is the rule-name prefix ``IR-Containment``. Arguments
are passed as single-quoted PowerShell literals (one native argument each), which also keeps PowerShell from
reading the commas of ``remoteip=a,b`` as an array. ``Invoke-Netsh`` throws on a non-zero exit so a failed
step stops the script; the dead-man revert script calls ``netsh.exe`` directly and carries on past failures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import InvalidInput
from connectors.winrm_windows.fw_netsecurity import checked_rule
from connectors.winrm_windows.plan import GROUP, IsolationPlan, RuleSpec
from connectors.winrm_windows.powershell import ps_quote

__all__ = [
    "PRELUDE",
    "READ_LINES",
    "apply_lines",
    "create_rule_lines",
    "parse",
    "remove_group_lines",
    "restore_profiles_lines",
]

PRELUDE = ("function Invoke-Netsh { $o = (& netsh.exe @args 2>&1 | Out-String); if ($LASTEXITCODE -ne 0) "
           "{ throw ('netsh ' + ($args -join ' ') + ' failed: ' + $o.Trim()) }; $o }")
READ_LINES = [
    "$r.profiles_text = (Invoke-Netsh 'advfirewall' 'show' 'allprofiles')",
    "$r.rules_text = (& netsh.exe 'advfirewall' 'firewall' 'show' 'rule' 'name=all' 'verbose' | Out-String)",
]
_STATE = {"ON": "True", "OFF": "False", "NOTCONFIGURED": "NotConfigured"}
_IN = {"blockinbound": "Block", "blockinboundalways": "Block", "allowinbound": "Allow", "notconfigured": "NotConfigured"}
_OUT = {"allowoutbound": "Allow", "blockoutbound": "Block", "notconfigured": "NotConfigured"}
_PROFILE_HEADER = re.compile(r"^(Domain|Private|Public) Profile Settings:", re.MULTILINE)


def _netsh(args: Sequence[str], strict: bool) -> str:
    quoted = " ".join(ps_quote(a, field="netsh argument") for a in args)
    return f"Invoke-Netsh {quoted} | Out-Null" if strict else f"& netsh.exe {quoted} | Out-Null"


def parse_profiles(text: str) -> list[dict[str, Any]]:
    """Profiles from ``netsh advfirewall show allprofiles``; keeps netsh's own words for an exact restore."""
    profiles = []
    heads = list(_PROFILE_HEADER.finditer(text))
    for i, m in enumerate(heads):
        block = text[m.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        fields = {}
        for line in block.splitlines():
            parts = line.strip().split(None, 1) if not line.startswith("Firewall Policy") else \
                ["Firewall Policy", line[len("Firewall Policy"):].strip()]
            if len(parts) == 2:
                fields[parts[0]] = parts[1].strip()
        state = fields.get("State", "").upper()
        policy = fields.get("Firewall Policy", "")
        pin, _, pout = policy.partition(",")
        if state not in _STATE or pin.lower() not in _IN or pout.lower() not in _OUT:
            raise InvalidInput(f"netsh profile {m.group(1)}: cannot read State={state!r} policy={policy!r}",
                               detail={"field": "profiles"})
        profiles.append({"Name": m.group(1), "Enabled": _STATE[state], "DefaultInboundAction": _IN[pin.lower()],
                         "DefaultOutboundAction": _OUT[pout.lower()], "State": state, "FirewallPolicy": policy})
    return profiles


def parse_rules(text: str) -> list[dict[str, Any]]:
    """Rules whose name starts with the group prefix, from ``show rule name=all verbose``."""
    rules = []
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and not key.startswith("-"):
                fields.setdefault(key.strip(), value.strip())
        name = fields.get("Rule Name", "")
        if not name.startswith(GROUP):
            continue
        profiles = fields.get("Profiles", "Domain,Private,Public")
        rules.append(checked_rule({
            "Name": name, "DisplayName": name,
            "Direction": {"In": "Inbound", "Out": "Outbound"}.get(fields.get("Direction", ""), "?"),
            "Action": fields.get("Action"), "Enabled": {"Yes": "True", "No": "False"}.get(fields.get("Enabled", "")),
            "Profile": "Any" if profiles == "Domain,Private,Public" else profiles.replace(",", ", "),
            "RemoteAddress": fields.get("RemoteIP", "Any").split(","),
            "Protocol": fields.get("Protocol", "Any"),
            "LocalPort": fields.get("LocalPort", "Any").split(","),
        }))
    return rules


def parse(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical ``{"profiles", "rules"}`` from the texts the read lines produced."""
    return {"profiles": parse_profiles(str(raw.get("profiles_text") or "")),
            "rules": parse_rules(str(raw.get("rules_text") or ""))}


def _add_rule(name: str, direction: str, action: str, remote: Sequence[str], protocol: str,
              ports: Sequence[str], profile: str, enabled: str, strict: bool) -> str:
    args = ["advfirewall", "firewall", "add", "rule", f"name={name}", f"dir={'in' if direction == 'Inbound' else 'out'}",
            f"action={action.lower()}"]
    if protocol.lower() != "any":
        args.append(f"protocol={protocol.lower()}")
    real_ports = [p for p in ports if p.lower() != "any"]
    if real_ports:
        args.append(f"localport={','.join(real_ports)}")
    args += [f"remoteip={','.join(remote)}", f"profile={profile.replace(' ', '').lower()}",
             f"enable={'yes' if enabled == 'True' else 'no'}"]
    return _netsh(args, strict)


def _spec_line(spec: RuleSpec) -> str:
    return _add_rule(spec.name, spec.direction, spec.action, spec.remote, spec.protocol,
                     [str(p) for p in spec.local_ports], "any", "True", True)


def create_rule_lines(rules: Sequence[Mapping[str, Any]], *, strict: bool = True) -> list[str]:
    """Recreate rules recorded by a snapshot (pre-existing members of the name-prefix group)."""
    out = []
    for r in (checked_rule(x) for x in rules):
        out.append(_add_rule(r["Name"], r["Direction"], r["Action"], r["RemoteAddress"], r["Protocol"],
                             r["LocalPort"], r["Profile"], r["Enabled"], strict))
    return out


def remove_group_lines(existing_names: Sequence[str], *, strict: bool = True) -> list[str]:
    """Delete the group's rules by name (netsh deletes every rule carrying that name)."""
    return [_netsh(["advfirewall", "firewall", "delete", "rule", f"name={n}"], strict)
            for n in dict.fromkeys(existing_names)]


def apply_lines(plan: IsolationPlan, existing_names: Sequence[str]) -> list[str]:
    """Replace the group by the plan's rules, then turn every profile on with block in and out."""
    return (remove_group_lines(existing_names) + [_spec_line(s) for s in plan.rules]
            + [_netsh(["advfirewall", "set", "allprofiles", "state", "on"], True),
               _netsh(["advfirewall", "set", "allprofiles", "firewallpolicy", "blockinbound,blockoutbound"], True)])


def restore_profiles_lines(profiles: Sequence[Mapping[str, Any]], *, strict: bool = True) -> list[str]:
    """Each profile's state and policy back to netsh's recorded words (e.g. ``BlockInboundAlways``)."""
    out = []
    for p in profiles:
        name = str(p.get("Name"))
        state = str(p.get("State", "")).upper()
        policy = str(p.get("FirewallPolicy", ""))
        pin, _, pout = policy.partition(",")
        if name not in ("Domain", "Private", "Public") or state not in _STATE or pin.lower() not in _IN \
                or pout.lower() not in _OUT:
            raise InvalidInput(f"saved netsh profile {name!r} is not restorable (State={state!r}, "
                               f"policy={policy!r})", detail={"field": "profiles"})
        key = f"{name.lower()}profile"
        out.append(_netsh(["advfirewall", "set", key, "state", state.lower()], strict))
        out.append(_netsh(["advfirewall", "set", key, "firewallpolicy", f"{pin.lower()},{pout.lower()}"], strict))
    return out
