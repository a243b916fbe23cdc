"""Juniper Junos: prefix-list ``IR-BLOCKLIST`` matched by term ``IR-BLOCK`` (``then discard``) inserted first in
the inet input filter the device already uses (``options.filter``); committed with ``commit confirmed N`` and then
confirmed with ``commit``.

Other administrators: changes are made in ``configure private``, never plain ``configure``. In the shared
candidate our ``commit`` would activate everyone's half-finished edits and our ``rollback 0`` would throw them
away (Junos CLI User Guide, "Commit Operation When Multiple Users Configure the Software"); in a private copy
"only your own changes get committed" and ``rollback 0`` drops only ours. Junos refuses ``configure private``
while the shared candidate holds someone's uncommitted edits or another session holds ``configure exclusive``
("error: shared configuration database modified" / "configuration database locked by"): that is raised as
:class:`~connectors.errors.Busy` naming who, nothing changed, retryable.

Commands (Junos CLI user guide): ``set policy-options prefix-list NAME A/len``, ``set firewall family inet filter
F term T from source-prefix-list NAME``, ``... then discard``, ``insert firewall family inet filter F term T before
term FIRST``, ``rollback 0`` (discard candidate changes), ``commit confirmed N`` / ``commit``. The filter is never
created or bound here: it must already be applied inbound, otherwise a new filter would drop everything after its
implicit final discard. The prefix-list keeps a placeholder (255.255.255.255/32) so it never becomes empty.

Outbound (call-backs, C2): term ``IR-BLOCK-OUT`` (``from destination-prefix-list IR-BLOCKLIST``, ``then discard``)
goes first in the inet filter outbound traffic passes, ``options.filter_out`` — applied ``output`` on the outside
unit or ``input`` on the inside one (``set interfaces IF unit N family inet filter {input|output} F``; Junos
"Applying Firewall Filters to Interfaces": an input filter sees packets received on the interface, an output filter
packets transmitted). The filter must exist and be applied to some interface (``show configuration interfaces``):
a term in an unapplied filter blocks nothing. When ``filter_out`` is the inbound ``filter`` the term goes right
after ``IR-BLOCK`` (``insert … after term IR-BLOCK``).

Timeouts (lesson #6): a ``commit confirmed`` that was never confirmed (session lost before the second ``commit``)
rolls back by itself after N minutes. ``_read_state`` therefore also reads ``show system commit``; a pending
confirmation marks the state ``needs_persist`` and the next block/unblock — even one with nothing to add — confirms
it, instead of reporting "already blocked" and letting the rollback silently unblock.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar

from connectors.errors import Busy, Rejected
from connectors.firewall.addresses import Network
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, PLACEHOLDER, RULE, DeviceError, DeviceState, Step

__all__ = ["JuniperJunos"]

_RULE_OUT = f"{RULE}-OUT"


class JuniperJunos(Dialect):
    """Junos (netmiko ``juniper_junos``)."""

    device_type = "juniper_junos"
    aliases = ("juniper",)
    families = frozenset({4})
    error_re = re.compile(r"(?m)^\s*(error: .*|syntax error.*|unknown command.*|missing argument.*)$")
    config_prompt = r"#\s*$"
    option_names = ("filter", "filter_out")
    required_options = ("filter",)
    outbound_option = "filter_out"
    busy_re = re.compile(r"configuration database (?:locked|modified)")
    session_lines_independent = True

    def _enter(self) -> None:
        """``configure private`` (see the module docstring); Busy when Junos refuses it for someone else."""
        self.sent.append("configure private")
        out = self._exchange(["configure private"], r"[>#]\s*$")[0]
        if "error:" in out:
            holder = " ".join(out.split("error:", 1)[1].split())[:300]
            raise Busy(f"{self.target}: Junos refused configure private: {holder} — another administrator "
                       "has uncommitted changes or an exclusive lock; nothing was changed, retry when they commit "
                       "or exit", target=self.target, detail={"device_message": holder})

    @property
    def _filter(self) -> str:
        return f"firewall family inet filter {self.options['filter']}"

    @property
    def _filter_out(self) -> str:
        return f"firewall family inet filter {self.options['filter_out']}"

    @staticmethod
    def _terms(text: str, path: str) -> list[str]:
        terms: list[str] = []
        for m in re.finditer(rf"(?m)^set {re.escape(path)} term (\S+) ", text):
            if m.group(1) not in terms:
                terms.append(m.group(1))
        return terms

    @staticmethod
    def _term_ok(text: str, path: str, term: str, match: str) -> bool:
        lines = {ln.strip() for ln in text.splitlines()}
        return f"set {path} term {term} from {match} {GROUP}" in lines and f"set {path} term {term} then discard" \
            in lines

    def _read_state(self) -> DeviceState:
        plist = self._show(f"show configuration policy-options prefix-list {GROUP} | display set")
        filt = self._show(f"show configuration {self._filter} | display set")
        commits = self._show("show system commit")
        members = []
        for m in re.finditer(rf"(?m)^set policy-options prefix-list {GROUP} (\S+)\s*$", plist):
            net = ipaddress.ip_network(m.group(1), strict=False)
            if str(net.network_address) != PLACEHOLDER:
                members.append(net)
        terms = self._terms(filt, self._filter)
        in_ok = bool(terms) and terms[0] == RULE and self._term_ok(filt, self._filter, RULE, "source-prefix-list")
        facts: dict[str, Any] = {"filter_exists": bool(terms), "first_term": terms[0] if terms else None,
                                 "needs_persist": bool(re.search(r"rollback in \d+", commits)), "in_ok": in_ok,
                                 "out_ok": True}
        if self.options.get("filter_out"):
            same = self.options["filter_out"] == self.options["filter"]
            out = filt if same else self._show(f"show configuration {self._filter_out} | display set")
            out_terms = self._terms(out, self._filter_out)
            at = 1 if same else 0   # after IR-BLOCK in a shared filter
            ifaces = self._show("show configuration interfaces | display set")
            facts.update(filter_out_exists=bool(out_terms), first_term_out=(
                             out_terms[at] if len(out_terms) > at else None),
                         filter_out_bound=bool(re.search(
                             rf"(?m)family inet filter (?:input|output) {re.escape(self.options['filter_out'])}\s*$",
                             ifaces)),
                         out_ok=len(out_terms) > at and out_terms[at] == _RULE_OUT and self._term_ok(
                             out, self._filter_out, _RULE_OUT, "destination-prefix-list"))
        return DeviceState(members=members, group_exists=f"prefix-list {GROUP} {PLACEHOLDER}/32" in plist,
                           rule_in_place=in_ok and facts["out_ok"], facts=facts)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        if not state.facts.get("filter_exists"):
            raise Rejected(f"{self.target}: filter {self.options['filter']!r} has no terms or does not exist; "
                           "options.filter must name the inet filter already applied inbound", target=self.target)
        steps: list[Step] = []
        if not state.group_exists:
            steps.append(Step(f"set policy-options prefix-list {GROUP} {PLACEHOLDER}/32"))
        if not state.facts.get("in_ok"):
            steps += [Step(f"set {self._filter} term {RULE} from source-prefix-list {GROUP}"),
                      Step(f"set {self._filter} term {RULE} then discard")]
            first = state.facts.get("first_term")
            if first and first != RULE:
                steps.append(Step(f"insert {self._filter} term {RULE} before term {first}"))
        if self.options.get("filter_out") and not state.facts.get("out_ok"):
            steps += self._outbound_steps(state)
        return steps

    def _outbound_steps(self, state: DeviceState) -> list[Step]:
        name = self.options["filter_out"]
        if not state.facts.get("filter_out_exists", True):
            raise Rejected(f"{self.target}: filter {name!r} (options.filter_out) has no terms or does not exist",
                           target=self.target, detail={"field": "options.filter_out"})
        if not state.facts.get("filter_out_bound", True):
            raise Rejected(f"{self.target}: filter {name!r} (options.filter_out) is not applied to any interface "
                           "(no 'family inet filter input|output'): a term there blocks nothing; apply it or name "
                           "the filter that is", target=self.target, detail={"field": "options.filter_out"})
        path = self._filter_out
        steps = [Step(f"set {path} term {_RULE_OUT} from destination-prefix-list {GROUP}"),
                 Step(f"set {path} term {_RULE_OUT} then discard")]
        if name == self.options["filter"]:
            steps.append(Step(f"insert {path} term {_RULE_OUT} after term {RULE}"))
        else:
            first = state.facts.get("first_term_out")
            if first and first != _RULE_OUT:
                steps.append(Step(f"insert {path} term {_RULE_OUT} before term {first}"))
        return steps

    def _own_addresses(self) -> list[str] | None:
        out = self._show("show interfaces terse")
        return re.findall(r"\binet6?\s+([0-9A-Fa-f:.]+)/\d+", out)

    def _session_lines(self, net: Network) -> list[str]:
        """SRX flow sessions outlive a new filter term until cleared: ``clear security flow session
        source-prefix|destination-prefix`` (Junos OS CLI reference)."""
        return [f"clear security flow session {side}-prefix {net}" for side in ("source", "destination")]

    def _cleared_count(self, line: str, out: str) -> int | None:
        m = re.search(r"(\d+) sessions? cleared", out)
        return int(m.group(1)) if m else None

    def _session_count_lines(self, net: Network) -> list[str]:
        return [f"show security flow session {side}-prefix {net} summary" for side in ("source", "destination")]

    def _session_count(self, answers: list[str]) -> int:
        return sum(int(m.group(1)) for m in (re.search(r"Total sessions: (\d+)", a) for a in answers) if m)

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"set policy-options prefix-list {GROUP} {n}") for n in todo]

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return [Step(f"delete policy-options prefix-list {GROUP} {n}") for n in todo]

    def disconnect(self) -> None:
        """Config mode is always left by ``_change``; skip the driver's half-second wait for the exit echo."""
        if not self._channel_closed():
            self.conn.write_channel("exit" + self.conn.RETURN)
        self.conn.paramiko_cleanup()

    def _discard(self, applied: list[Step]) -> list[str]:
        """Nothing was committed: ``rollback 0`` drops exactly the accepted candidate lines."""
        return ["rollback 0"]

    def _commit(self, command: str, marker: str) -> None:
        timeout = float(self.options.get("commit_timeout") or max(self.timeout, 120.0))
        self.sent.append(command)
        out = self._exchange([command], r"#\s*$", timeout)[0]
        if marker not in out or self.error_re.search(out):
            raise DeviceError(command, " ".join(out.split())[:400])

    def _finish(self, applied: list[Step]) -> list[str]:
        minutes = max(1, int(self.options.get("confirm_minutes") or 5))
        done: list[str] = []
        if applied:
            self._commit(f"commit confirmed {minutes}", "commit confirmed will be automatically rolled back")
            done.append(f"commit confirmed {minutes}")
        # the same session still answers after the change: the management path survived, confirm it
        self._commit("commit", "commit complete")
        return done + ["commit"]

    def _persist_preview(self, applied: bool) -> list[str]:
        minutes = max(1, int(self.options.get("confirm_minutes") or 5))
        return ([f"commit confirmed {minutes}"] if applied else []) + ["commit"]

    OFFLINE_FACTS: ClassVar[dict[str, Any]] = {"first_term": "<first term of the filter>",
                                               "first_term_out": "<first term of the outbound filter>"}
