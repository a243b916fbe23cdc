"""What isolation means for one host: the rule set, and the test that a state read back matches it.

The NetSecurity scripts build an :class:`IsolationPlan` and read state back into one canonical shape, so
"is it isolated?" is decided once, here::

    {"profiles": [{"Name": "Domain", "Enabled": "True", "DefaultInboundAction": "Block", ...}, ...],
     "rules": [{"Name": ..., "Direction": "Inbound", "Action": "Block", "RemoteAddress": [...], ...}, ...]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.errors import InvalidInput
from connectors.winrm_windows.addresses import complement_ranges, format_networks, token_span
from connectors.winrm_windows.powershell import validate_network

__all__ = [
    "GROUP",
    "MARKER_FILE",
    "PROFILES",
    "STATE_DIR",
    "STATE_FILE",
    "TASK_NAME",
    "IsolationPlan",
    "RuleSpec",
    "build_plan",
    "gpo_conflicts",
    "isolation_gaps",
    "merged_spans",
    "profiles_equal",
]

GROUP = "IR-Containment"
TASK_NAME = "IR-Containment-Revert"
STATE_DIR = "C:\\ProgramData\\IR-Containment"
STATE_FILE = STATE_DIR + "\\state.json"
MARKER_FILE = STATE_DIR + "\\reverted-by-deadman.txt"
PROFILES = ("Domain", "Private", "Public")
RDP_PORT = 3389


@dataclass(frozen=True)
class RuleSpec:
    """One firewall rule of the isolation group, independent of how it is written to the host."""

    name: str
    display_name: str
    direction: str  # Inbound | Outbound
    action: str  # Allow | Block
    remote: tuple[str, ...]
    protocol: str = "Any"
    local_ports: tuple[int, ...] = ()
    remote_ports: tuple[str, ...] = ()  # outbound flows: the far end's ports ("53", "49152-65535")
    icmp_types: tuple[int, ...] = ()


@dataclass(frozen=True)
class IsolationPlan:
    """The rules and profile settings that make a host isolated except for its management path."""

    management: tuple[str, ...]
    rules: tuple[RuleSpec, ...]

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self.rules]


def build_plan(management_addresses: Iterable[str], *, winrm_port: int, allow_rdp: bool,
               keep: Sequence[RuleSpec] = ()) -> IsolationPlan:
    """Allow management on WinRM (and RDP if asked) and the ``keep`` flows (DHCP, DNS, allow-list, DCs, NDP);
    block every other address both ways.

    Block rules beat allow rules, so the addresses of ``keep`` flows are left out of the block ranges too; what
    reaches them is then decided by the ``keep`` allow rules (exact protocol and ports) and the profile default,
    which isolation sets to Block."""
    nets = [validate_network(a, field="management_addresses") for a in management_addresses]
    if not nets:
        raise InvalidInput("isolation needs at least one management address, or it would cut the agent off",
                           detail={"field": "management_addresses"})
    mgmt = tuple(format_networks(nets))
    kept = [validate_network(a, field="allow") for spec in keep for a in spec.remote]
    others = tuple(complement_ranges(nets + kept))
    rules = [RuleSpec(f"{GROUP}-Allow-WinRM-In", f"{GROUP}: allow management on WinRM {winrm_port}",
                      "Inbound", "Allow", mgmt, "TCP", (winrm_port,))]
    if allow_rdp:
        rules.append(RuleSpec(f"{GROUP}-Allow-RDP-In", f"{GROUP}: allow management on RDP {RDP_PORT}",
                              "Inbound", "Allow", mgmt, "TCP", (RDP_PORT,)))
    rules += list(keep)
    rules.append(RuleSpec(f"{GROUP}-Block-In", f"{GROUP}: block all other remote addresses (in)",
                          "Inbound", "Block", others))
    rules.append(RuleSpec(f"{GROUP}-Block-Out", f"{GROUP}: block all other remote addresses (out)",
                          "Outbound", "Block", others))
    return IsolationPlan(mgmt, tuple(rules))


def merged_spans(tokens: Iterable[str]) -> list[tuple[int, int, int]]:
    """Address tokens as merged ``(version, first, last)`` spans, so equal sets compare equal however printed."""
    spans = sorted(s for s in (token_span(t) for t in tokens) if s is not None)
    out: list[tuple[int, int, int]] = []
    for v, lo, hi in spans:
        if out and out[-1][0] == v and lo <= out[-1][2] + 1:
            out[-1] = (v, out[-1][1], max(out[-1][2], hi))
        else:
            out.append((v, lo, hi))
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def isolation_gaps(state: Mapping[str, Any], plan: IsolationPlan) -> list[str]:
    """Why ``state`` is not the isolation ``plan`` (empty list: isolated). Each gap is a readable sentence."""
    gaps: list[str] = []
    rules = {str(r.get("Name")): r for r in state.get("rules", [])}
    for spec in plan.rules:
        got = rules.get(spec.name)
        if got is None:
            gaps.append(f"rule {spec.name} missing")
            continue
        if str(got.get("Enabled", "True")) != "True":
            gaps.append(f"rule {spec.name} disabled")
        if (got.get("Direction"), got.get("Action")) != (spec.direction, spec.action):
            gaps.append(f"rule {spec.name} is {got.get('Direction')}/{got.get('Action')}")
        if merged_spans(_as_list(got.get("RemoteAddress"))) != merged_spans(spec.remote):
            gaps.append(f"rule {spec.name} remote addresses differ")
        ports = sorted(p for p in _as_list(got.get("LocalPort")) if p.lower() != "any")
        if ports != sorted(str(p) for p in spec.local_ports):
            gaps.append(f"rule {spec.name} local ports {ports}")
        rports = sorted(p for p in _as_list(got.get("RemotePort")) if p.lower() != "any")
        if rports != sorted(spec.remote_ports):
            gaps.append(f"rule {spec.name} remote ports {rports}")
        icmp = sorted(p for p in _as_list(got.get("IcmpType")) if p.lower() != "any")
        if icmp != sorted(str(t) for t in spec.icmp_types):
            gaps.append(f"rule {spec.name} ICMP types {icmp}")
        if str(got.get("Protocol") or "Any").upper() != spec.protocol.upper():
            gaps.append(f"rule {spec.name} protocol {got.get('Protocol')}")
    extra = sorted(set(rules) - set(plan.rule_names))
    if extra:
        gaps.append(f"unexpected rules in group {GROUP}: {', '.join(extra)}")
    profiles = {str(p.get("Name")): p for p in state.get("profiles", [])}
    for name in PROFILES:
        p = profiles.get(name)
        if p is None:
            gaps.append(f"profile {name} not reported")
        elif (p.get("Enabled"), p.get("DefaultInboundAction"), p.get("DefaultOutboundAction")) != \
                ("True", "Block", "Block"):
            gaps.append(f"profile {name} is Enabled={p.get('Enabled')} "
                        f"in={p.get('DefaultInboundAction')} out={p.get('DefaultOutboundAction')}")
    return gaps


def gpo_conflicts(state: Mapping[str, Any]) -> list[str]:
    """Group Policy settings under which local isolation rules cannot hold, each naming the setting.

    GPO profile settings beat local ones, and with "Apply local firewall rules" = No (``AllowLocalFirewallRules``
    False; registry ``AllowLocalPolicyMerge`` = 0, set by CIS L1 and DISA STIG) the local rules we write are not
    in the ActiveStore at all. Isolation then refuses instead of reporting an isolation that does not exist."""
    out = []
    for p in state.get("gpo", {}).get("profiles", []):
        name = p.get("Name")
        if p.get("AllowLocalFirewallRules") == "False":
            out.append(f"Group Policy sets AllowLocalFirewallRules=False (\"Apply local firewall rules: No\", "
                       f"AllowLocalPolicyMerge=0) for the {name} profile: local firewall rules are ignored")
        if p.get("Enabled") == "False":
            out.append(f"Group Policy sets the {name} profile's firewall state Enabled=False")
        for key in ("DefaultInboundAction", "DefaultOutboundAction"):
            if p.get(key) == "Allow":
                out.append(f"Group Policy sets the {name} profile's {key}=Allow")
    return out


def profiles_equal(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Same Enabled/DefaultInbound/DefaultOutbound for every profile (the keys undo restores)."""
    keys = ("Enabled", "DefaultInboundAction", "DefaultOutboundAction")

    def norm(ps: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, ...]]:
        return {str(p.get("Name")): tuple(p.get(k) for k in keys) for p in ps}

    return norm(a) == norm(b)
