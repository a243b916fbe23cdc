"""MikroTik RouterOS: address-list ``IR-BLOCKLIST`` dropped by a raw ``prerouting`` rule (comment ``IR-BLOCK``)
placed first, so blocked sources are discarded before connection tracking.

Commands (RouterOS manual, "Firewall → Raw" and "Address-lists"): ``/ip firewall address-list add list=L
address=A``, ``... remove [find list=L address=A]``, ``/ip firewall raw add chain=prerouting action=drop
src-address-list=L comment=C place-before=0`` (``place-before`` only when the table already has rules),
``/ip firewall raw move [find comment=C] destination=0``. RouterOS applies and saves every command at once: there
is no configuration mode and no persist step. An empty address-list matches nothing, so no placeholder is kept.
IPv4 only (``/ipv6 firewall`` is not handled).

Established connections (RouterOS manual, "Connection tracking": ``/ip firewall connection``, whose
``src-address``/``dst-address`` read ``ip[:port]``): the raw rules drop every packet before connection tracking,
but the entries of flows set up before the block stay in the table until they time out (a day for established
TCP). They are listed, then removed with ``remove [find where src-address~"RE" or dst-address~"RE"]``, and read
back with ``print terse where ...`` — a few dozen addresses per expression, one round trip each. The regular
expression is built from the parsed addresses only — digits, ``[.]``, ``|``, ``(`` ``)`` — anchored at the start
and ended by the ``:`` before the port (or the ``.`` of the next octet), so 45.33.7.9 never matches 45.33.7.90 and
a prefix that does not end on an octet boundary lists its octet values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.firewall.addresses import Network, to_text
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, RULE, DeviceState, Step

__all__ = ["MikrotikRouterOs", "conn_regex", "ros_string"]

_ALIST = "/ip firewall address-list"
_CONN = "/ip firewall connection"
_RE_BUDGET = 300   # characters of one connection-matching expression (lines stay well inside the terminal)
_RAW = "/ip firewall raw"
_RULE_OUT = f"{RULE}-OUT"


class MikrotikRouterOs(Dialect):
    """RouterOS (netmiko ``mikrotik_routeros``)."""

    device_type = "mikrotik_routeros"
    families = frozenset({4})
    blocks_outbound = True
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

        def tagged(ln: str, comment: str) -> bool:
            return re.search(rf"\bcomment={re.escape(comment)}(\s|$)", ln) is not None

        ours = [ln for ln in rules if tagged(ln, RULE)]
        ours_out = [ln for ln in rules if tagged(ln, _RULE_OUT)]
        first = rules[0] if rules else ""
        second = rules[1] if len(rules) > 1 else ""
        in_place = tagged(first, RULE) and "chain=prerouting" in first and "action=drop" in first and \
            f"src-address-list={GROUP}" in first and tagged(second, _RULE_OUT) and "action=drop" in second and \
            f"dst-address-list={GROUP}" in second
        return DeviceState(members=members, group_exists=True, rule_in_place=in_place,
                           facts={"rules": len(rules) - len(ours) - len(ours_out), "ours": bool(ours),
                                  "ours_out": bool(ours_out)})

    def _own_addresses(self) -> list[str] | None:
        out = self._show("/ip address print terse without-paging")
        return re.findall(r"\baddress=([0-9.]+)/\d+", out)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        """Rule 0 drops packets *from* the list (inbound), rule 1 packets *to* it (outbound call-backs); raw
        prerouting sees both directions of forwarded traffic before connection tracking."""
        steps: list[Step] = []
        others = bool(state.facts.get("rules"))
        if state.facts.get("ours"):
            steps.append(Step(f"{_RAW} move [find comment={RULE}] destination=0"))
        else:
            place = " place-before=0" if others or state.facts.get("ours_out") else ""
            steps.append(Step(f"{_RAW} add chain=prerouting action=drop src-address-list={GROUP} comment={RULE}"
                              f"{place}", undo=(f"{_RAW} remove [find comment={RULE}]",)))
        if state.facts.get("ours_out"):
            steps.append(Step(f"{_RAW} move [find comment={_RULE_OUT}] destination=1"))
        else:
            place = " place-before=1" if others else ""
            steps.append(Step(f"{_RAW} add chain=prerouting action=drop dst-address-list={GROUP} "
                              f"comment={_RULE_OUT}{place}", undo=(f"{_RAW} remove [find comment={_RULE_OUT}]",)))
        return steps

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"{_ALIST} add list={GROUP} address={to_text(n)}",
                     undo=(f"{_ALIST} remove [find list={GROUP} address={to_text(n)}]",)) for n in todo]

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"{_ALIST} remove [find list={GROUP} address={to_text(n)}]",
                     undo=(f"{_ALIST} add list={GROUP} address={to_text(n)}",)) for n in todo]

    # ----- established connections ----------------------------------------------------------------------------
    def _chunks(self, nets: Sequence[Network]) -> list[tuple[list[Network], str]]:
        """Addresses grouped so that one RouterOS expression ``^(p1|p2|...)`` stays under ~300 characters: one
        round trip clears (or reads) a few dozen addresses instead of two per address."""
        out: list[tuple[list[Network], list[str]]] = []
        for net in nets:
            part = conn_regex(net)[1:]
            if not out or sum(len(p) + 1 for p in out[-1][1]) + len(part) > _RE_BUDGET:
                out.append(([], []))
            out[-1][0].append(net)
            out[-1][1].append(part)
        return [(group, ros_string("^(" + "|".join(parts) + ")")) for group, parts in out]

    @staticmethod
    def _where(rx: str) -> str:
        return f'src-address~"{rx}" or dst-address~"{rx}"'

    def _session_lines_for(self, nets: Sequence[Network]) -> list[str]:
        return [f"{_CONN} remove [find where {self._where(rx)}]" for _, rx in self._chunks(nets)]

    def _session_lines(self, net: Network) -> list[str]:
        return self._session_lines_for([net])

    def _tracked(self, group: list[Network], rx: str) -> dict[str, int]:
        """Connections with an address of ``group`` at either end, per address (one ``print`` for the group)."""
        out = self._show(f"{_CONN} print terse without-paging where {self._where(rx)}")
        rows = [(m.group(1), m.group(2)) for m in re.finditer(
            r"(?m)\bsrc-address=([0-9.]+)\S*\s.*?\bdst-address=([0-9.]+)", out)]
        return {to_text(net): sum(1 for src, dst in rows if ipaddress.ip_address(src) in net
                                  or ipaddress.ip_address(dst) in net) for net in group}

    def clear_sessions(self, nets: Sequence[Network]) -> tuple[list[str], list[str]]:
        """RouterOS' ``remove`` prints no count: each group's connections are listed just before removing them."""
        sent: list[str] = []
        self.cleared = {}
        for group, rx in self._chunks(nets):
            found = self._guard(self._tracked, group, rx)
            line = f"{_CONN} remove [find where {self._where(rx)}]"
            out = self._guard(self._show, line)
            err = self._error_in(line, out)
            if err is not None:
                return sent, [(f"established connections of {', '.join(to_text(n) for n in group[:5])} NOT "
                               f"cleared: {line[:80]!r}... was refused ({err.message[:200]}); they end when idle "
                               "or by hand")]
            sent.append(line)
            self.cleared.update(found)
        return sent, []

    def sessions_left(self, nets: Sequence[Network]) -> dict[str, int]:
        out: dict[str, int] = {}
        for group, rx in self._chunks(nets):
            out.update(self._guard(self._tracked, group, rx))
        return out

    def _sessions_left(self, net: Network) -> int | None:
        return self.sessions_left([net])[to_text(net)]


def conn_regex(net: Network) -> str:
    """A POSIX ERE matching the ``ip:port`` (or bare ``ip``) text of addresses inside ``net`` (IPv4), and only
    those: ``^45[.]33[.]7[.]9(:|$)``, ``^45[.]34[.]0[.]``, ``^45[.](32|33)[.]`` for 45.32.0.0/15."""
    octets = str(net.network_address).split(".")
    full, rest = divmod(net.prefixlen, 8)
    if full == 4:
        return "^" + "[.]".join(octets) + "(:|$)"
    head = octets[:full]
    if rest:
        base = int(octets[full])
        values = "|".join(str(v) for v in range(base, base + 2 ** (8 - rest)))
        head.append(f"({values})")
        full += 1
    return "^" + "[.]".join(head) + ("[.]" if full < 4 else "(:|$)")


def ros_string(text: str) -> str:
    """``text`` as the inside of a RouterOS double-quoted string: ``\\``, ``"``, ``$`` (variable substitution) and
    ``?`` are escaped with a backslash (RouterOS manual, "Scripting": escape sequences)."""
    return re.sub(r'([\\"$?])', r"\\\1", text)
