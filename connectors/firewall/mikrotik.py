"""MikroTik RouterOS: address-list ``IR-BLOCKLIST`` dropped by a raw ``prerouting`` rule (comment ``IR-BLOCK``)
placed first, so blocked sources are discarded before connection tracking.

Commands (RouterOS manual, "Firewall → Raw" and "Address-lists"): ``/ip firewall address-list add list=L
address=A``, ``... remove [find list=L address=A]``, ``/ip firewall raw add chain=prerouting action=drop
src-address-list=L comment=C place-before=0`` (``place-before`` only when the table already has rules),
``/ip firewall raw move [find comment=C] destination=0``. RouterOS applies and saves every command at once: there
is no configuration mode and no persist step. An empty address-list matches nothing, so no placeholder is kept.
IPv4 only (``/ipv6 firewall`` is not handled).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

from connectors.firewall.addresses import Network, to_text
from connectors.firewall.dialect import GROUP, RULE, DeviceState, Dialect, Step

__all__ = ["MikrotikRouterOs"]

_ALIST = "/ip firewall address-list"
_RAW = "/ip firewall raw"


class MikrotikRouterOs(Dialect):
    """RouterOS (netmiko ``mikrotik_routeros``)."""

    device_type = "mikrotik_routeros"
    families = frozenset({4})
    OFFLINE_FACTS: ClassVar[dict[str, Any]] = {"rules": 1}   # place-before=0 whenever the raw table has rules
    error_re = re.compile(r"(?m)^(bad command name.*|failure: .*|syntax error.*|expected end of command.*"
                          r"|input does not match.*|no such item.*|invalid value.*)$")
    uses_config_mode = False
    config_prompt = r"\].*>\s*$"

    def _read_state(self) -> DeviceState:
        alist = self._show(f"{_ALIST} print terse without-paging where list={GROUP}")
        raw = self._show(f"{_RAW} print terse without-paging")
        members = [ipaddress.ip_network(m.group(1), strict=False)
                   for m in re.finditer(r"(?m)\blist=" + GROUP + r" address=(\S+)", alist)]
        rules = [ln for ln in raw.splitlines() if re.match(r"^\s*\d+\s", ln)]
        ours = [ln for ln in rules if f"comment={RULE}" in ln]
        first = rules[0] if rules else ""
        in_place = f"comment={RULE}" in first and "chain=prerouting" in first and "action=drop" in first and \
            f"src-address-list={GROUP}" in first
        return DeviceState(members=members, group_exists=True, rule_in_place=in_place,
                           facts={"rules": len(rules), "ours": bool(ours)})

    def _own_addresses(self) -> list[str] | None:
        out = self._show("/ip address print terse without-paging")
        return re.findall(r"\baddress=([0-9.]+)/\d+", out)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        if state.facts.get("ours"):
            return [Step(f"{_RAW} move [find comment={RULE}] destination=0")]
        place = " place-before=0" if state.facts.get("rules") else ""
        return [Step(f"{_RAW} add chain=prerouting action=drop src-address-list={GROUP} comment={RULE}{place}",
                     undo=(f"{_RAW} remove [find comment={RULE}]",))]

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"{_ALIST} add list={GROUP} address={to_text(n)}",
                     undo=(f"{_ALIST} remove [find list={GROUP} address={to_text(n)}]",)) for n in todo]

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"{_ALIST} remove [find list={GROUP} address={to_text(n)}]",
                     undo=(f"{_ALIST} add list={GROUP} address={to_text(n)}",)) for n in todo]
