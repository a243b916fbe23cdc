"""Cisco ASA and IOS/IOS-XE: a network object-group ``IR-BLOCKLIST`` referenced by a deny entry at the top.

ASA (Cisco ASA CLI configuration guide, "Objects for Access Control"): ``object-group network IR-BLOCKLIST`` /
``network-object host X`` (``network-object A MASK`` for IPv4 prefixes, ``A/len`` for IPv6; groups may mix
families), referenced by ``access-list <acl> line 1 extended deny ip object-group IR-BLOCKLIST any`` in the ACL
already bound to the outside interface (``options.acl``; never created here, because a new unbound ACL blocks
nothing and a new bound one would drop everything else). The guide says an object group in use may not be made
empty, so the group keeps a placeholder member (``host 255.255.255.255``, never a valid source address).
Persist: ``write memory``.

IOS/IOS-XE (object-group ACLs, 12.4(20)T and later): ``object-group network IR-BLOCKLIST`` / ``host X`` /
``A MASK``, referenced by entry ``1 deny ip object-group IR-BLOCKLIST any`` inserted at reserved sequence 1 of the
named extended ACL ``options.acl``; or, with only ``options.interface``, a dedicated ACL ``IR-BLOCKLIST-IN``
(deny the group, permit the rest) applied inbound there — refused when that interface already has an inbound
ACL (set ``options.acl`` to it instead). IPv4 only. Persist: ``write memory``.

Outbound (call-backs, C2): traffic *to* a blocked address is denied by a second entry, ``deny ip any object-group
IR-BLOCKLIST``, at the top of the ACL that outbound traffic passes, named by ``options.acl_out`` (ASA: an ACL bound
``in`` on the inside interface or ``out`` on the outside one — Cisco ASA CLI configuration guide, "Inbound and
Outbound Rules": inbound rules apply to traffic entering an interface, outbound ones to traffic exiting it; IOS:
likewise, ``ip access-group NAME {in|out}``). The ACL must exist and be applied (``access-group`` / ``ip
access-group``): an entry in an unbound ACL blocks nothing, and a new ACL bound here would drop everything else at
its implicit deny. When ``acl_out`` is the inbound ``acl`` too, the outbound entry is the second one. IOS with
``options.interface`` and no ``acl_out`` gets a dedicated ``IR-BLOCKLIST-OUT`` (deny to the group, permit the
rest) applied ``out`` on that interface — refused when the interface already filters outbound.

Undo of the last address leaves the scaffold (group with placeholder + the deny entry) in place: it matches
nothing, and removing it would touch the operator's ACL again for no gain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.errors import InvalidInput, Rejected
from connectors.firewall.addresses import Network
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, PLACEHOLDER, DeviceState, Step

__all__ = ["CiscoAsa", "CiscoIos"]

_ASA_MEMBER = re.compile(r"^\s*network-object\s+(?:host\s+(\S+)|(\S+)\s+(\d+\.\d+\.\d+\.\d+)|(\S+/\d+))\s*$")
_IOS_MEMBER = re.compile(r"^\s*(?:host\s+(\S+)|(\d+\.\d+\.\d+\.\d+)\s+(\d+\.\d+\.\d+\.\d+)|(\S+/\d+))\s*$")
_PLACEHOLDER_NET = ipaddress.ip_network(PLACEHOLDER)


def _parse_member(m: re.Match[str]) -> Network:
    host, addr, mask, cidr = m.groups()
    if host:
        return ipaddress.ip_network(host)
    if cidr:
        return ipaddress.ip_network(cidr, strict=False)
    return ipaddress.ip_network(f"{addr}/{mask}", strict=False)


def _members(text: str, pattern: re.Pattern[str]) -> list[Network]:
    out: list[Network] = []
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            net = _parse_member(m)
            if net != _PLACEHOLDER_NET:
                out.append(net)
    return out


class CiscoAsa(Dialect):
    """Cisco ASA (netmiko ``cisco_asa``)."""

    device_type = "cisco_asa"
    error_re = re.compile(r"(?m)^(ERROR: .*|% Invalid input detected.*|% Incomplete command.*)$")
    option_names: ClassVar[tuple[str, ...]] = ("acl", "acl_out")
    required_options: ClassVar[tuple[str, ...]] = ("acl",)
    outbound_option = "acl_out"
    session_lines_independent = True
    config_prompt = r"#\s*$"

    @property
    def _ace(self) -> str:
        return f"access-list {self.options['acl']} extended deny ip object-group {GROUP} any"

    @property
    def _acl_out(self) -> str | None:
        return str(self.options["acl_out"]) if self.options.get("acl_out") else None

    @property
    def _ace_out(self) -> str:
        return f"access-list {self._acl_out} extended deny ip any object-group {GROUP}"

    def _member_text(self, net: Network) -> str:
        if net.prefixlen == net.max_prefixlen:
            return f"network-object host {net.network_address}"
        if net.version == 4:
            return f"network-object {net.network_address} {net.netmask}"
        return f"network-object {net}"

    def _aces(self, name: str) -> list[str]:
        text = self._show(f"show running-config access-list {name}")
        return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("access-list ")]

    def _read_state(self) -> DeviceState:
        group = self._show(f"show running-config object-group id {GROUP}")
        aces = self._aces(str(self.options["acl"]))
        in_ok = bool(aces) and aces[0] == self._ace
        facts: dict[str, Any] = {"acl_exists": bool(aces), "ace_elsewhere": self._ace in aces[1:], "in_ok": in_ok,
                                 "out_ok": True}
        if self._acl_out:
            same = self._acl_out == self.options["acl"]
            out = aces if same else self._aces(self._acl_out)
            at = 1 if same else 0   # the outbound entry comes right after the inbound one in a shared ACL
            groups = self._show("show running-config access-group")
            bound = {m.group(1) for m in re.finditer(r"(?m)^access-group (\S+) (?:in|out) interface \S+", groups)}
            facts.update(acl_out_exists=bool(out), acl_out_bound=self._acl_out in bound,
                         out_ok=len(out) > at and out[at] == self._ace_out,
                         out_elsewhere=self._ace_out in out and out.index(self._ace_out) != at)
        return DeviceState(members=_members(group, _ASA_MEMBER),
                           group_exists=f"object-group network {GROUP}" in group,
                           rule_in_place=in_ok and facts["out_ok"], facts=facts)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        if not state.facts.get("acl_exists", True):
            raise Rejected(f"access-list {self.options['acl']!r} does not exist on {self.target}; options.acl "
                           "must name the ACL bound to the outside interface", target=self.target)
        steps: list[Step] = []
        if not state.group_exists:
            steps += [Step(f"object-group network {GROUP}"), Step(f" network-object host {PLACEHOLDER}"),
                      Step("exit")]
        if not state.facts.get("in_ok"):
            if state.facts.get("ace_elsewhere"):
                steps.append(Step(f"no {self._ace}", undo=(self._ace,)))
            steps.append(Step(f"access-list {self.options['acl']} line 1 extended deny ip object-group {GROUP} any",
                              undo=(f"no {self._ace}",)))
        if self._acl_out and not state.facts.get("out_ok"):
            self._check_out_acl(state)
            if state.facts.get("out_elsewhere"):
                steps.append(Step(f"no {self._ace_out}", undo=(self._ace_out,)))
            line = 2 if self._acl_out == self.options["acl"] else 1
            steps.append(Step(f"access-list {self._acl_out} line {line} extended deny ip any object-group {GROUP}",
                              undo=(f"no {self._ace_out}",)))
        return steps

    def _check_out_acl(self, state: DeviceState) -> None:
        """The outbound ACL must exist and be applied: a deny in an unbound ACL blocks nothing."""
        if not state.facts.get("acl_out_exists", True):
            raise Rejected(f"access-list {self._acl_out!r} (options.acl_out) does not exist on {self.target}; it "
                           "must name the ACL outbound traffic already passes", target=self.target,
                           detail={"field": "options.acl_out"})
        if not state.facts.get("acl_out_bound", True):
            raise Rejected(f"access-list {self._acl_out!r} (options.acl_out) is not applied to any interface on "
                           f"{self.target} (no access-group): a deny there blocks nothing; apply it or name the "
                           "ACL that is", target=self.target, detail={"field": "options.acl_out"})

    def _group_steps(self, todo: list[Network], negate: bool) -> list[Step]:
        steps = [Step(f"object-group network {GROUP}")]
        for net in todo:
            text = self._member_text(net)
            line, back = (f" no {text}", text) if negate else (f" {text}", f"no {text}")
            steps.append(Step(line, undo=(f"object-group network {GROUP}", f" {back}", "exit")))
        return steps + [Step("exit")]

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return self._group_steps(todo, negate=False)

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return self._group_steps(todo, negate=True)

    def _save(self) -> list[str]:
        out = self._show("write memory")
        if "[OK]" not in out:
            raise Rejected(f"{self.target}: write memory failed (change is active but NOT saved): "
                           f"{' '.join(out.split())[:300]}", target=self.target, detail={"saved": False})
        return ["write memory"]

    def _persist_preview(self, applied: bool) -> list[str]:
        return ["write memory"]

    def _own_addresses(self) -> list[str] | None:
        out = self._show("show interface ip brief")
        return re.findall(r"(?m)^\S+\s+(\d{1,3}(?:\.\d{1,3}){3})\s", out)

    @staticmethod
    def _conn_range(net: Network) -> str:
        return str(net.network_address) if net.num_addresses == 1 else \
            f"{net.network_address}-{net.broadcast_address}"

    def _session_lines(self, net: Network) -> list[str]:
        """ASA ACLs are checked at connection setup only; ``clear conn address ip1[-ip2]`` ends the flows with
        the address at either end (Cisco ASA Series Command Reference, "clear conn")."""
        return [f"clear conn address {self._conn_range(net)}"]

    def _cleared_count(self, line: str, out: str) -> int | None:
        m = re.search(r"(\d+) connection\(s\) deleted", out)
        return int(m.group(1)) if m else None

    def _session_count_lines(self, net: Network) -> list[str]:
        return [f"show conn address {self._conn_range(net)}"]

    def _session_count(self, answers: list[str]) -> int:
        return sum(1 for ln in answers[0].splitlines() if re.match(r"^\s*(TCP|UDP|ICMP|SCTP|GRE)\s", ln))


class CiscoIos(CiscoAsa):
    """Cisco IOS and IOS-XE (netmiko ``cisco_ios``, ``cisco_xe``)."""

    device_type = "cisco_ios"
    aliases = ("cisco_xe",)
    families = frozenset({4})
    error_re = re.compile(r"(?m)^\s*% ?(Invalid input detected|Incomplete command|Ambiguous command|Duplicate"
                          r"|Unknown|.*[Ee]rror).*$")
    option_names = ("acl", "interface", "acl_out")
    required_options = ()
    own_acl = f"{GROUP}-IN"
    own_acl_out = f"{GROUP}-OUT"

    @classmethod
    def outbound_for(cls, options: Mapping[str, Any]) -> bool:
        """``acl_out`` names the ACL, or ``interface`` gets the agent's own ACL applied ``out``."""
        return bool(options.get("acl_out") or options.get("interface"))

    def _own_addresses(self) -> list[str] | None:
        out = self._show("show ip interface brief")
        return re.findall(r"(?m)^\S+\s+(\d{1,3}(?:\.\d{1,3}){3})\s", out)

    def _session_lines(self, net: Network) -> list[str]:
        """An IOS extended ACL is stateless: every packet of an established flow meets the deny."""
        return []

    def _session_count_lines(self, net: Network) -> list[str]:
        return []   # stateless ACL: no session table to read

    @property
    def has_session_table(self) -> bool:
        return False

    def _offline_facts(self) -> dict[str, Any]:
        return {} if self.options.get("acl") else {"acl_exists": False}  # interface mode creates its ACL

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        super().validate_options(options)
        if not options.get("acl") and not options.get("interface"):
            raise InvalidInput("options.acl or options.interface: one is required for cisco_ios",
                               detail={"field": "options.acl"})

    @property
    def _acl(self) -> str:
        return str(self.options.get("acl") or self.own_acl)

    @property
    def _out_acl(self) -> str:
        return str(self.options.get("acl_out") or self.own_acl_out)

    @property
    def _out_seq(self) -> int:
        """Reserved sequence of the outbound entry: 1, or 2 when it shares the inbound ACL (1 is inbound's)."""
        return 2 if self.options.get("acl_out") and self.options.get("acl_out") == self._acl else 1

    def _member_text(self, net: Network) -> str:
        if net.prefixlen == net.max_prefixlen:
            return f"host {net.network_address}"
        return f"{net.network_address} {net.netmask}"

    def _entries(self, name: str) -> tuple[bool, list[str]]:
        acl = self._show(f"show ip access-lists {name}")
        return "access list" in acl, [ln.strip() for ln in acl.splitlines() if re.match(r"^\s+\d+ ", ln)]

    def _read_state(self) -> DeviceState:
        group = self._show(f"show object-group name {GROUP}")
        exists, entries = self._entries(self._acl)
        deny = f"deny ip object-group {GROUP} any"
        facts: dict[str, Any] = {"acl_exists": exists, "seq1": entries[0] if entries else ""}
        in_place = bool(entries) and entries[0].split(" ", 1)[1].startswith(deny)
        iface = ""
        if self.options.get("interface") and (not self.options.get("acl") or not self.options.get("acl_out")):
            iface = self._show(f"show running-config interface {self.options['interface']}")
        if not self.options.get("acl"):
            bound = re.search(r"(?m)^\s*ip access-group (\S+) in\s*$", iface)
            facts["bound_in"] = bound.group(1) if bound else ""
            in_place = in_place and facts["bound_in"] == self.own_acl
        facts["in_ok"] = in_place
        out_ok = True
        if self.outbound:
            out_exists, out = (exists, entries) if self._out_acl == self._acl else self._entries(self._out_acl)
            at = 1 if self._out_acl == self._acl else 0   # after the inbound entry in a shared ACL
            out_ok = len(out) > at and f"{out[at]} ".split(" ", 1)[1].startswith(f"deny ip any object-group {GROUP}")
            facts["acl_out_exists"] = out_exists
            if self.options.get("acl_out"):
                out_ok = out_ok and out[at].split(" ", 1)[0] == str(self._out_seq)
                facts["out_seq"] = next((e for e in out if e.split(" ", 1)[0] == str(self._out_seq)), "")
                bindings = self._show("show running-config | include ip access-group")
                facts["acl_out_bound"] = bool(re.search(
                    rf"(?m)^\s*ip access-group {re.escape(self._out_acl)} (?:in|out)\s*$", bindings))
            else:
                bound_out = re.search(r"(?m)^\s*ip access-group (\S+) out\s*$", iface)
                facts["bound_out"] = bound_out.group(1) if bound_out else ""
                out_ok = out_ok and facts["bound_out"] == self.own_acl_out
        facts["out_ok"] = out_ok
        return DeviceState(members=_members(group, _IOS_MEMBER), group_exists=f"object-group {GROUP}" in group
                           or f"group {GROUP}" in group, rule_in_place=in_place and out_ok, facts=facts)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        steps: list[Step] = []
        if not state.group_exists:
            steps += [Step(f"object-group network {GROUP}"), Step(f" host {PLACEHOLDER}"), Step("exit")]
        if not state.facts.get("in_ok"):
            steps += self._inbound_steps(state)
        if self.outbound and not state.facts.get("out_ok"):
            steps += self._outbound_steps(state)
        return steps

    def _inbound_steps(self, state: DeviceState) -> list[Step]:
        deny = f"deny ip object-group {GROUP} any"
        if self.options.get("acl"):
            if not state.facts.get("acl_exists"):
                raise Rejected(f"access list {self._acl!r} does not exist on {self.target}", target=self.target)
            if str(state.facts.get("seq1", "")).startswith("1 "):
                raise Rejected(f"sequence 1 of access list {self._acl!r} is used by another entry "
                               f"({state.facts['seq1']!r}); the agent reserves it", target=self.target)
            return [Step(f"ip access-list extended {self._acl}"),
                    Step(f" 1 {deny}", undo=(f"ip access-list extended {self._acl}", " no 1", "exit")),
                    Step("exit")]
        steps: list[Step] = []
        bound = state.facts.get("bound_in")
        if bound and bound != self.own_acl:
            raise Rejected(f"interface {self.options['interface']} already filters inbound with {bound!r}; "
                           f"set options.acl: {bound} so the agent adds its entry there", target=self.target)
        if not state.facts.get("acl_exists"):
            steps += [Step(f"ip access-list extended {self.own_acl}"), Step(f" 10 {deny}"),
                      Step(" 20 permit ip any any"), Step("exit")]
        return steps + [Step(f"interface {self.options['interface']}"),
                        Step(f" ip access-group {self.own_acl} in",
                             undo=(f"interface {self.options['interface']}",
                                   f" no ip access-group {self.own_acl} in", "exit")),
                        Step("exit")]

    def _outbound_steps(self, state: DeviceState) -> list[Step]:
        """Deny traffic TO the group: at reserved sequence ``_out_seq`` of ``acl_out`` (which must exist and be
        applied), or in IR-BLOCKLIST-OUT applied ``out`` on ``options.interface``."""
        deny = f"deny ip any object-group {GROUP}"
        seq = self._out_seq
        if self.options.get("acl_out"):
            if not state.facts.get("acl_out_exists", True):
                raise Rejected(f"access list {self._out_acl!r} (options.acl_out) does not exist on {self.target}",
                               target=self.target, detail={"field": "options.acl_out"})
            if not state.facts.get("acl_out_bound", True):
                raise Rejected(f"access list {self._out_acl!r} (options.acl_out) is not applied to any interface "
                               f"on {self.target} (no ip access-group): a deny there blocks nothing; apply it or "
                               "name the ACL that is", target=self.target, detail={"field": "options.acl_out"})
            if state.facts.get("out_seq"):
                raise Rejected(f"sequence {seq} of access list {self._out_acl!r} is used by another entry "
                               f"({state.facts['out_seq']!r}); the agent reserves it", target=self.target)
            return [Step(f"ip access-list extended {self._out_acl}"),
                    Step(f" {seq} {deny}", undo=(f"ip access-list extended {self._out_acl}", f" no {seq}", "exit")),
                    Step("exit")]
        steps: list[Step] = []
        iface = self.options["interface"]
        bound = state.facts.get("bound_out")
        if bound and bound != self.own_acl_out:
            raise Rejected(f"interface {iface} already filters outbound with {bound!r}; set options.acl_out: "
                           f"{bound} so the agent adds its entry there", target=self.target,
                           detail={"field": "options.acl_out"})
        if not state.facts.get("acl_out_exists"):
            steps += [Step(f"ip access-list extended {self.own_acl_out}"), Step(f" 10 {deny}"),
                      Step(" 20 permit ip any any"), Step("exit")]
        return steps + [Step(f"interface {iface}"),
                        Step(f" ip access-group {self.own_acl_out} out",
                             undo=(f"interface {iface}", f" no ip access-group {self.own_acl_out} out", "exit")),
                        Step("exit")]
