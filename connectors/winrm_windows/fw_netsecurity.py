"""Windows Firewall through the NetSecurity cmdlets (Windows 8 / Server 2012 and later).

Statements are one per line and every value is either from a fixed vocabulary (``Inbound``, ``Block``) or a
:func:`ps_quote` literal. State is read back as data (``ConvertTo-Json``) with enums cast to strings, because
ConvertTo-Json would otherwise print enum members as numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import InvalidInput
from connectors.winrm_windows.plan import GROUP, IsolationPlan, RuleSpec
from connectors.winrm_windows.powershell import ps_array, ps_quote, validate_address_token

__all__ = [
    "READ_LINES",
    "apply_lines",
    "checked_rule",
    "create_rule_lines",
    "parse",
    "remove_group_lines",
    "restore_profiles_lines",
]

_PROFILE_FIELDS = ("Name = [string]$_.Name; Enabled = [string]$_.Enabled; DefaultInboundAction = "
                   "[string]$_.DefaultInboundAction; DefaultOutboundAction = [string]$_.DefaultOutboundAction")
_RULE_FIELDS = ("$a = $_ | Get-NetFirewallAddressFilter; $p = $_ | Get-NetFirewallPortFilter; [ordered]@{ "
                "Name = [string]$_.Name; DisplayName = [string]$_.DisplayName; Direction = [string]$_.Direction; "
                "Action = [string]$_.Action; Enabled = [string]$_.Enabled; Profile = [string]$_.Profile; "
                "RemoteAddress = @($a.RemoteAddress); Protocol = [string]$p.Protocol; LocalPort = @($p.LocalPort); "
                "RemotePort = @($p.RemotePort); IcmpType = @($p.IcmpType) }")
#: Three views: the local store (``PersistentStore``, the default; what undo restores), the ActiveStore (what the
#: firewall enforces: Group Policy merged with local per ``AllowLocalFirewallRules``; what verify judges) and the
#: Group Policy result (``RSOP``; which settings a GPO forces, so isolation can refuse up front).
READ_LINES = [
    f"$r.profiles = @(Get-NetFirewallProfile -All | ForEach-Object {{ [ordered]@{{ {_PROFILE_FIELDS} }} }})",
    ("$r.active_profiles = @(Get-NetFirewallProfile -PolicyStore ActiveStore | ForEach-Object { [ordered]@{ "
     f"{_PROFILE_FIELDS}; AllowLocalFirewallRules = [string]$_.AllowLocalFirewallRules }} }})"),
    ("$r.gpo_profiles = @(Get-NetFirewallProfile -PolicyStore RSOP | ForEach-Object { [ordered]@{ "
     f"{_PROFILE_FIELDS}; AllowLocalFirewallRules = [string]$_.AllowLocalFirewallRules }} }})"),
    (f"$r.rules = @(Get-NetFirewallRule -Group {ps_quote(GROUP)} -ErrorAction SilentlyContinue | ForEach-Object {{ "
     f"{_RULE_FIELDS} }})"),
    (f"$r.active_rules = @(Get-NetFirewallRule -PolicyStore ActiveStore -Group {ps_quote(GROUP)} "
     f"-ErrorAction SilentlyContinue | ForEach-Object {{ {_RULE_FIELDS} }})"),
]

_ENUMS = {
    "Direction": {"Inbound", "Outbound"},
    "Action": {"Allow", "Block"},
    "Enabled": {"True", "False"},
    "ProfileEnabled": {"True", "False", "NotConfigured"},
    "DefaultAction": {"Allow", "Block", "NotConfigured"},
}
_PROTOCOL = re.compile(r"^(Any|TCP|UDP|ICMPv4|ICMPv6|\d{1,3})$", re.IGNORECASE)
_PORT = re.compile(r"^(\d{1,5}(-\d{1,5})?|[A-Za-z][A-Za-z0-9]{0,30})$")
_ICMP = re.compile(r"^(Any|\d{1,3}(:\d{1,3})?)$")
_PROFILE = re.compile(r"^(Any|(Domain|Private|Public)(, ?(Domain|Private|Public)){0,2})$")


def _enum(kind: str, value: Any, field: str) -> str:
    text = str(value)
    if text not in _ENUMS[kind]:
        raise InvalidInput(f"{field} {text!r} is not one of {sorted(_ENUMS[kind])}", detail={"field": field})
    return text


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def checked_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule read from the host, validated so it can be written back safely (host output is untrusted)."""
    name = str(rule.get("Name", ""))
    ps_quote(name, field="rule Name")
    ps_quote(str(rule.get("DisplayName", "")), field="rule DisplayName")
    protocol = str(rule.get("Protocol") or "Any")
    if not _PROTOCOL.match(protocol):
        raise InvalidInput(f"rule {name}: Protocol {protocol!r} not understood", detail={"field": "Protocol"})
    ports = [p for p in _list(rule.get("LocalPort")) if p]
    rports = [p for p in _list(rule.get("RemotePort")) if p]
    for field, values in (("LocalPort", ports), ("RemotePort", rports)):
        for p in values:
            if not _PORT.match(p):
                raise InvalidInput(f"rule {name}: {field} {p!r} not understood", detail={"field": field})
    icmp = [p for p in _list(rule.get("IcmpType")) if p]
    for p in icmp:
        if not _ICMP.match(p):
            raise InvalidInput(f"rule {name}: IcmpType {p!r} not understood", detail={"field": "IcmpType"})
    profile = str(rule.get("Profile") or "Any")
    if not _PROFILE.match(profile):
        raise InvalidInput(f"rule {name}: Profile {profile!r} not understood", detail={"field": "Profile"})
    return {
        "Name": name,
        "DisplayName": str(rule.get("DisplayName", "")),
        "Direction": _enum("Direction", rule.get("Direction"), "Direction"),
        "Action": _enum("Action", rule.get("Action"), "Action"),
        "Enabled": _enum("Enabled", rule.get("Enabled", "True"), "Enabled"),
        "Profile": profile,
        "RemoteAddress": [validate_address_token(a) for a in _list(rule.get("RemoteAddress")) or ["Any"]],
        "Protocol": protocol,
        "LocalPort": ports or ["Any"],
        "RemotePort": rports or ["Any"],
        "IcmpType": icmp or ["Any"],
    }


def _profiles(items: Any, *, merge: bool = False) -> list[dict[str, str]]:
    out = []
    for p in items or []:
        row = {"Name": str(p.get("Name")),
               "Enabled": _enum("ProfileEnabled", p.get("Enabled"), "Enabled"),
               "DefaultInboundAction": _enum("DefaultAction", p.get("DefaultInboundAction"), "DefaultInboundAction"),
               "DefaultOutboundAction": _enum("DefaultAction", p.get("DefaultOutboundAction"),
                                              "DefaultOutboundAction")}
        if merge:
            row["AllowLocalFirewallRules"] = _enum("ProfileEnabled", p.get("AllowLocalFirewallRules") or
                                                   "NotConfigured", "AllowLocalFirewallRules")
        out.append(row)
    return out


def parse(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical ``{"profiles", "rules"}`` (local store) plus ``effective`` (ActiveStore) and ``gpo`` (RSOP)."""
    return {"profiles": _profiles(raw.get("profiles")),
            "rules": [checked_rule(r) for r in raw.get("rules") or []],
            "effective": {"profiles": _profiles(raw.get("active_profiles"), merge=True),
                          "rules": [checked_rule(r) for r in raw.get("active_rules") or []]},
            "gpo": {"profiles": _profiles(raw.get("gpo_profiles"), merge=True)}}


def _new_rule(name: str, display: str, direction: str, action: str, remote: Sequence[str], protocol: str,
              ports: Sequence[str], profile: str, enabled: str, rports: Sequence[str] = (),
              icmp: Sequence[str] = ()) -> str:
    parts = [f"New-NetFirewallRule -Name {ps_quote(name, field='rule name')}",
             f"-DisplayName {ps_quote(display, field='rule display name')}", f"-Group {ps_quote(GROUP)}",
             f"-Direction {direction}", f"-Action {action}"]
    if protocol.lower() != "any":
        parts.append(f"-Protocol {ps_quote(protocol, field='Protocol')}")
    real_ports = [p for p in ports if p.lower() != "any"]
    if real_ports:
        parts.append(f"-LocalPort {ps_array(real_ports, field='LocalPort')}")
    real_rports = [p for p in rports if p.lower() != "any"]
    if real_rports:
        parts.append(f"-RemotePort {ps_array(real_rports, field='RemotePort')}")
    real_icmp = [p for p in icmp if p.lower() != "any"]
    if real_icmp:
        parts.append(f"-IcmpType {ps_array(real_icmp, field='IcmpType')}")
    parts += [f"-RemoteAddress {ps_array(list(remote), field='RemoteAddress')}",
              f"-Profile {ps_quote(profile, field='Profile')}", f"-Enabled {enabled}", "| Out-Null"]
    return " ".join(parts)


def _spec_line(spec: RuleSpec) -> str:
    return _new_rule(spec.name, spec.display_name, spec.direction, spec.action, spec.remote, spec.protocol,
                     [str(p) for p in spec.local_ports], "Any", "True", spec.remote_ports,
                     [str(t) for t in spec.icmp_types])


def create_rule_lines(rules: Sequence[Mapping[str, Any]], *, strict: bool = True) -> list[str]:
    """Recreate rules recorded by a snapshot (pre-existing members of the group)."""
    out = []
    for r in (checked_rule(x) for x in rules):
        out.append(_new_rule(r["Name"], r["DisplayName"], r["Direction"], r["Action"], r["RemoteAddress"],
                             r["Protocol"], r["LocalPort"], r["Profile"], r["Enabled"], r["RemotePort"],
                             r["IcmpType"]))
    return out


def remove_group_lines(existing_names: Sequence[str] = (), *, strict: bool = True) -> list[str]:
    """Remove every rule of the group (the cmdlet selects by group, so names are not needed)."""
    return [f"Remove-NetFirewallRule -Group {ps_quote(GROUP)} -ErrorAction SilentlyContinue"]


def apply_lines(plan: IsolationPlan, existing_names: Sequence[str]) -> list[str]:
    """Replace the group by the plan's rules, then enable every profile with default block both ways."""
    return (remove_group_lines(existing_names) + [_spec_line(s) for s in plan.rules]
            + ["Set-NetFirewallProfile -All -Enabled True -DefaultInboundAction Block -DefaultOutboundAction Block"])


def restore_profiles_lines(profiles: Sequence[Mapping[str, Any]], *, strict: bool = True) -> list[str]:
    """Put each profile back exactly as recorded (``NotConfigured`` included)."""
    out = []
    for p in profiles:
        name = str(p.get("Name"))
        if name not in ("Domain", "Private", "Public"):
            raise InvalidInput(f"profile name {name!r} not understood", detail={"field": "profiles"})
        out.append(f"Set-NetFirewallProfile -Name {ps_quote(name)} "
                   f"-Enabled {_enum('ProfileEnabled', p.get('Enabled'), 'Enabled')} "
                   f"-DefaultInboundAction {_enum('DefaultAction', p.get('DefaultInboundAction'), 'in')} "
                   f"-DefaultOutboundAction {_enum('DefaultAction', p.get('DefaultOutboundAction'), 'out')}")
    return out
