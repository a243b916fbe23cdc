"""FortiGate (FortiOS CLI): address objects ``IR-<addr>`` in address group ``IR-BLOCKLIST``, denied by policy
``IR-BLOCK`` moved to the top of ``config firewall policy``.

Commands follow the FortiOS CLI reference (``config firewall address`` / ``edit`` / ``set subnet A MASK``;
``config firewall addrgrp`` / ``append member`` / ``unselect member``; ``config firewall policy`` / ``move X
before Y``). FortiOS saves every change at ``next``/``end`` (cfg-save automatic, the default), so there is no
separate persist step. A group may not be left without members, so it keeps ``IR-PLACEHOLDER``
(255.255.255.255/32). IPv4 only (``addrgrp6`` is not handled). ``options.interface`` is the policy's source
interface (default ``any``); ``options.policy_id`` picks the policy number (default: highest + 1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.firewall.addresses import Network, to_text
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, PLACEHOLDER, RULE, DeviceState, Step

_RULE_OUT = f"{RULE}-OUT"

__all__ = ["Fortinet", "network_from_name", "object_name"]

_PLACEHOLDER_NAME = "IR-PLACEHOLDER"


def object_name(net: Network) -> str:
    """``IR-45.77.1.2`` / ``IR-45.77.1.0_24``: derived from the address, so reading back needs no lookup."""
    return "IR-" + to_text(net).replace("/", "_").replace(":", "-")


def network_from_name(name: str) -> Network | None:
    """Inverse of :func:`object_name`; None for foreign names and the placeholder."""
    if not name.startswith("IR-") or name == _PLACEHOLDER_NAME:
        return None
    text = name[3:].replace("_", "/")
    try:
        return ipaddress.ip_network(text if "." in text else text.replace("-", ":"), strict=False)
    except ValueError:
        return None


def _policies(text: str) -> list[tuple[str, dict[str, str]]]:
    """``show firewall policy`` → [(id, {setting: value})] in evaluation order."""
    out: list[tuple[str, dict[str, str]]] = []
    for m in re.finditer(r"(?ms)^\s*edit (\d+)\s*$(.*?)^\s*next\s*$", text):
        settings = {k: v.strip() for k, v in re.findall(r"(?m)^\s*set (\S+) (.*)$", m.group(2))}
        out.append((m.group(1), settings))
    return out


class Fortinet(Dialect):
    """FortiGate (netmiko ``fortinet``)."""

    device_type = "fortinet"
    families = frozenset({4})
    blocks_outbound = True
    OFFLINE_FACTS: ClassVar[dict[str, Any]] = {"first": "<first policy id>"}
    error_re = re.compile(r"(?m)^(Command fail\. Return code.*|Unknown action.*|node_check_object fail.*"
                          r"|entry not found.*|value parse error.*)$")
    uses_config_mode = False
    config_prompt = r"[#$]\s*$"
    option_names = ("interface", "policy_id")

    def _read_state(self) -> DeviceState:
        group = self._show(f"show firewall addrgrp {GROUP}")
        members: list[Network] = []
        exists = f'edit "{GROUP}"' in group
        for line in group.splitlines():
            if line.strip().startswith("set member "):
                for name in re.findall(r'"([^"]+)"', line):
                    net = network_from_name(name)
                    if net is not None:
                        members.append(net)
        policies = _policies(self._show("show firewall policy"))
        ours = [pid for pid, s in policies if s.get("name") == f'"{RULE}"']
        ours_out = [pid for pid, s in policies if s.get("name") == f'"{_RULE_OUT}"']
        others = [pid for pid, s in policies if pid not in ours + ours_out]
        top = policies[:2]
        in_place = len(top) == 2 and top[0][1].get("name") == f'"{RULE}"' and \
            top[0][1].get("srcaddr") == f'"{GROUP}"' and top[0][1].get("action") == "deny" and \
            top[1][1].get("name") == f'"{_RULE_OUT}"' and top[1][1].get("dstaddr") == f'"{GROUP}"' and \
            top[1][1].get("action") == "deny"
        ids = [int(pid) for pid, _ in policies]
        return DeviceState(members=members, group_exists=exists, rule_in_place=in_place,
                           facts={"first": others[0] if others else None, "ours": ours[0] if ours else None,
                                  "ours_out": ours_out[0] if ours_out else None,
                                  "next_id": max(ids, default=0) + 1})

    def _own_addresses(self) -> list[str] | None:
        out = self._show("get system interface")
        return [a for a in re.findall(r"\bip: (\d{1,3}(?:\.\d{1,3}){3}) ", out) if a != "0.0.0.0"]

    @staticmethod
    def _span(net: Network) -> str:
        return str(net.network_address) if net.num_addresses == 1 else \
            f"{net.network_address} {net.broadcast_address}"

    _FCLEAR = "diagnose sys session filter clear"
    _CLEAR = "diagnose sys session clear"

    def _session_lines(self, net: Network) -> list[str]:
        return self._session_lines_for([net])

    def _session_lines_for(self, nets: Sequence[Network]) -> list[str]:
        """FortiOS matches a policy when a session starts; existing sessions are cleared with a session filter
        (source, then destination) and ``diagnose sys session clear`` (Fortinet KB "clear sessions matching a
        filter"). The filter is reset before each side is set and at the end: a clear with no filter would end
        every session."""
        out: list[str] = []
        for net in nets:
            for side in ("src", "dst"):
                out += [self._FCLEAR, f"diagnose sys session filter {side} {self._span(net)}", self._CLEAR]
        return [*out, self._FCLEAR] if out else []

    def clear_sessions(self, nets: Sequence[Network]) -> tuple[list[str], list[str]]:
        """Two round trips per address instead of seven: the lines that only *set* the filter are typed ahead
        together, and a ``clear`` is typed only after the filter it depends on was answered without an error —
        so a refused filter can never be followed by a clear (which would end every session on the unit). The
        lines sent are exactly :meth:`_session_lines_for`'s."""
        lines = self._session_lines_for(nets)
        sent: list[str] = []
        batch: list[str] = []
        for i, line in enumerate(lines):
            batch.append(line)
            if i + 1 < len(lines) and lines[i + 1] != self._CLEAR:
                continue   # keep typing ahead until the next line would be a clear (or the end)
            answers = self._guard(self._show_many, batch)
            for text, out in zip(batch, answers, strict=True):
                err = self._error_in(text, out)
                if err is not None:
                    net = next((n for n in nets if self._span(n) in text), None)
                    self._guard(self._show_many, [self._FCLEAR])
                    return sent, [(f"established sessions{' of ' + to_text(net) if net else ''} NOT cleared: "
                                   f"{text!r} was refused ({err.message[:200]}); they end when idle or by hand")]
                sent.append(text)
            batch = []
        return sent, []

    def sessions_left(self, nets: Sequence[Network]) -> dict[str, int]:
        """Reset, filter, list — per address and side — all read-only, so typed ahead for up to 20 addresses per
        round trip. A refused filter leaves its list unfiltered, which over-counts: verification then fails
        safe, it never under-reports."""
        out: dict[str, int] = {}
        for start in range(0, len(nets), 20):
            group = nets[start:start + 20]
            lines = [line for net in group for side in ("src", "dst") for line in (
                self._FCLEAR, f"diagnose sys session filter {side} {self._span(net)}", "diagnose sys session list")]
            answers = self._guard(self._show_many, lines)
            for i, net in enumerate(group):
                counts = [re.search(r"total session (\d+)", answers[6 * i + k]) for k in (2, 5)]
                out[to_text(net)] = sum(int(m.group(1)) for m in counts if m)
        if nets:
            self._guard(self._show_many, [self._FCLEAR])
        return out

    def _sessions_left(self, net: Network) -> int | None:
        return self.sessions_left([net])[to_text(net)]

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        steps = self._scaffold_lines(state)
        return [Step(s.line, s.undo, barrier=True) for s in steps]   # policy lines depend on each other

    def _scaffold_lines(self, state: DeviceState) -> list[Step]:
        steps: list[Step] = []
        if not state.group_exists:
            steps += [Step("config firewall address"), Step(f"edit {_PLACEHOLDER_NAME}"),
                      Step(f"set subnet {PLACEHOLDER} 255.255.255.255"), Step("next"), Step("end"),
                      Step("config firewall addrgrp"), Step(f"edit {GROUP}"),
                      Step(f"set member {_PLACEHOLDER_NAME}"), Step("next"), Step("end")]
        if state.rule_in_place:
            return steps
        # IR-BLOCK: from the group (inbound); IR-BLOCK-OUT: to the group (call-backs, C2). srcaddr and dstaddr
        # of one policy are ANDed, so the two directions need two policies, both above every other policy.
        next_id = state.facts["next_id"]
        pid = str(state.facts.get("ours") or self.options.get("policy_id") or next_id)
        if state.facts.get("ours_out"):
            out_id = str(state.facts["ours_out"])
        elif isinstance(next_id, int):
            out_id = str(next_id + 1 if pid == str(next_id) else next_id)
        else:
            out_id = f"{next_id} + 1"
        steps += [Step("config firewall policy"), Step(f"edit {pid}"), Step(f"set name {RULE}"),
                  Step(f"set srcintf {self.options.get('interface') or 'any'}"), Step("set dstintf any"),
                  Step(f"set srcaddr {GROUP}"), Step("set dstaddr all"), Step("set action deny"),
                  Step("set schedule always"), Step("set service ALL"), Step("next"),
                  Step(f"edit {out_id}"), Step(f"set name {_RULE_OUT}"), Step("set srcintf any"),
                  Step("set dstintf any"), Step("set srcaddr all"), Step(f"set dstaddr {GROUP}"),
                  Step("set action deny"), Step("set schedule always"), Step("set service ALL"), Step("next")]
        first = state.facts.get("first")
        if first:
            steps += [Step(f"move {out_id} before {first}"), Step(f"move {pid} before {out_id}")]
        elif state.facts.get("ours_out") and not state.facts.get("ours"):
            steps.append(Step(f"move {pid} before {out_id}"))
        return steps + [Step("end")]

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        steps = [Step("config firewall address")]
        for net in todo:
            name = object_name(net)
            steps += [Step(f"edit {name}"), Step(f"set subnet {net.network_address} {net.netmask}"),
                      Step("next", undo=("config firewall address", f"delete {name}", "end"))]
        # the group is touched only once every object exists: a refused ``set subnet`` stops here, before
        # a half-made object could become a member
        steps += [Step("end"), Step("config firewall addrgrp", barrier=True), Step(f"edit {GROUP}")]
        for net in todo:
            name = object_name(net)
            steps.append(Step(f"append member {name}", undo=("config firewall addrgrp", f"edit {GROUP}",
                                                             f"unselect member {name}", "next", "end")))
        return steps + [Step("next"), Step("end")]

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        steps = [Step("config firewall addrgrp"), Step(f"edit {GROUP}")]
        for net in todo:
            name = object_name(net)
            steps.append(Step(f"unselect member {name}", undo=("config firewall addrgrp", f"edit {GROUP}",
                                                               f"append member {name}", "next", "end")))
        steps += [Step("next"), Step("end"), Step("config firewall address")]
        for net in todo:
            name = object_name(net)
            steps.append(Step(f"delete {name}", undo=("config firewall address", f"edit {name}",
                                                      f"set subnet {net.network_address} {net.netmask}",
                                                      "next", "end")))
        return steps + [Step("end")]

    def _recover(self) -> None:
        """Leave any ``config``/``edit`` level without saving the half-done entry (``abort``)."""
        for _ in range(4):
            prompt = self.conn.find_prompt()
            if "(" not in prompt:
                return
            self.sent.append("abort")
            self.conn.send_command("abort", expect_string=self.config_prompt, read_timeout=self.timeout)
