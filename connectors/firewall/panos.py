"""Palo Alto PAN-OS: address objects ``IR-<addr>`` in static address group ``IR-BLOCKLIST``, denied by security
rule ``IR-BLOCK`` moved to the top; every change is a candidate until ``commit``.

Commands (PAN-OS CLI quick start): configure mode ``set address NAME ip-netmask A/len``, ``set address-group NAME
static MEMBER``, ``set rulebase security rules NAME ...``, ``move rulebase security rules NAME top``, ``delete``
of the same, ``commit``; ``revert config`` (PAN-OS 10.0+) discards uncommitted candidate changes, which is how a
refused line or a failed commit is cleaned up. State is read from the *running* configuration (op mode
``show config running`` in set format), never from the candidate, so a commit that timed out is not mistaken for a
block that is in effect. Object names may not contain ``/`` or ``:``, hence ``IR-2001-db8--1_128``.

Other administrators: the candidate is shared, so a plain ``commit`` would activate everyone's pending edits and
``revert config`` would drop them. The dialect commits with ``commit partial admin <login>`` and cleans up with
``revert config partial admin <login>`` (PAN-OS 10.0 configure CLI command hierarchy; XML API "Partial commit
admin-level changes"), so only the agent's own changes move. A config or commit lock held by another
administrator ("Manage Locks for Restricting Configuration Changes") is raised as
:class:`~connectors.errors.Busy`: nothing changed, retryable, the holder named.
"""

from __future__ import annotations

import re

from connectors.errors import InvalidInput
from connectors.firewall.addresses import Network, to_text
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, PLACEHOLDER, RULE, DeviceError, DeviceState, Step
from connectors.firewall.fortinet import network_from_name, object_name

__all__ = ["PaloAltoPanos"]

_PLACEHOLDER_NAME = "IR-PLACEHOLDER"
_RULE_OUT = f"{RULE}-OUT"
_PREFIX = r"^set (?:vsys \S+ |shared )?"


class PaloAltoPanos(Dialect):
    """PAN-OS (netmiko ``paloalto_panos``)."""

    device_type = "paloalto_panos"
    error_re = re.compile(r"(?m)^(Invalid syntax\.?|Unknown command: .*|Server error ?: .*|Validation Error.*"
                          r"|.*[Cc]ommit failed.*)$")
    config_prompt = r"#\s*$"
    option_names = ("from_zone", "admin")
    busy_re = re.compile(r"(?i)locked by")
    blocks_outbound = True
    session_lines_independent = True

    @property
    def _admin(self) -> str:
        """The login the agent's changes are recorded under (the partial commit/revert scope)."""
        user = str(getattr(self.conn, "username", "") or self.login or self.options.get("admin") or "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,62}", user):
            raise InvalidInput(f"{self.target}: login {user!r} cannot scope a partial commit (letters, digits, "
                               "'.', '_', '@', '-')", target=self.target)
        return user

    def _read_state(self) -> DeviceState:
        if not getattr(self, "_set_format", False):
            self._show("set cli config-output-format set")
            self._set_format = True
        ours = self._show(f'show config running | match "{GROUP}"')
        rules = self._show('show config running | match "rulebase security rules"')
        members: list[Network] = []
        exists = False
        for line in ours.splitlines():
            m = re.match(_PREFIX + rf"address-group {GROUP} static \[?\s*(.*?)\s*\]?\s*$", line.strip())
            if m:
                exists = True
                for name in m.group(1).split():
                    net = network_from_name(name)
                    if net is not None:
                        members.append(net)
        names = [m.group(1) for m in (re.match(_PREFIX + r"rulebase security rules (\S+) ", ln.strip())
                                      for ln in rules.splitlines()) if m]
        def settings(rule: str) -> set[str]:
            return {ln.strip().split(f" rules {rule} ", 1)[1] for ln in rules.splitlines() if f" rules {rule} " in ln}

        inbound, outbound = settings(RULE), settings(_RULE_OUT)
        order = list(dict.fromkeys(names))
        in_place = order[:2] == [RULE, _RULE_OUT] and f"source {GROUP}" in inbound and "action deny" in inbound \
            and f"destination {GROUP}" in outbound and "action deny" in outbound
        return DeviceState(members=members, group_exists=exists, rule_in_place=in_place,
                           facts={"rule_exists": RULE in names})

    def _own_addresses(self) -> list[str] | None:
        out = self._show("show interface logical")
        return re.findall(r"\s([0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:]+)/\d+\s*$", out, re.MULTILINE)

    def _session_lines(self, net: Network) -> list[str]:
        """Sessions established before the deny rule are ended with ``clear session all filter source|destination``
        (PAN-OS CLI, operational mode)."""
        return [f"clear session all filter {side} {to_text(net)}" for side in ("source", "destination")]

    def _cleared_count(self, line: str, out: str) -> int | None:
        m = re.search(r"Number of sessions that match filter: (\d+)", out)
        return int(m.group(1)) if m else None

    def _session_count_lines(self, net: Network) -> list[str]:
        return [f"show session all filter {side} {to_text(net)} count yes" for side in ("source", "destination")]

    def _session_count(self, answers: list[str]) -> int:
        return sum(int(m.group(1)) for m in (re.search(r"match filter: (\d+)", a) for a in answers) if m)

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        steps: list[Step] = []
        if not state.group_exists:
            steps += [Step(f"set address {_PLACEHOLDER_NAME} ip-netmask {PLACEHOLDER}/32"),
                      Step(f"set address-group {GROUP} static {_PLACEHOLDER_NAME}")]
        if not state.rule_in_place:
            # IR-BLOCK denies traffic from the group (inbound), IR-BLOCK-OUT traffic to it (call-backs, C2);
            # source and destination of one rule are ANDed, so the two directions need two rules, both on top
            zone = self.options.get("from_zone") or "any"
            steps += [Step(f"set rulebase security rules {RULE} from {zone} to any source {GROUP} destination any "
                           "application any service any action deny"),
                      Step(f"set rulebase security rules {_RULE_OUT} from any to any source any destination "
                           f"{GROUP} application any service any action deny"),
                      Step(f"move rulebase security rules {_RULE_OUT} top"),
                      Step(f"move rulebase security rules {RULE} top")]
        return steps

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        steps: list[Step] = []
        for net in todo:
            name = object_name(net)
            steps.append(Step(f"set address {name} ip-netmask {net.network_address}/{net.prefixlen}"))
        for net in todo:
            steps.append(Step(f"set address-group {GROUP} static {object_name(net)}"))
        return steps

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        steps = [Step(f"delete address-group {GROUP} static {object_name(n)}") for n in todo]
        return steps + [Step(f"delete address {object_name(n)}") for n in todo]

    # netmiko's PAN-OS driver detects config mode by waiting for 2 s of silence (``check_config_mode`` with
    # no pattern) on every enter, exit and disconnect; the prompts are unambiguous, so wait for them instead.
    def _enter(self) -> None:
        self.sent.append("configure")
        self.conn.send_command("configure", expect_string=r"#\s*$", read_timeout=self.timeout)

    def _leave(self) -> None:
        if self._channel_closed():
            return
        try:
            self.sent.append("exit")
            self.conn.send_command("exit", expect_string=r">\s*$", read_timeout=self.timeout)
        except Exception:  # noqa: BLE001, S110 - a dead session cannot be in config mode any more; the original error matters
            pass

    def disconnect(self) -> None:
        """We never stay in configure mode, so skip the driver's 2-second mode probe: say exit and close."""
        if not self._channel_closed():
            self.conn.write_channel("exit" + self.conn.RETURN)
        self.conn.paramiko_cleanup()

    def _discard(self, applied: list[Step]) -> list[str]:
        """Nothing was committed: dropping the candidate changes removes exactly the accepted lines."""
        return [f"revert config partial admin {self._admin}"]

    def _finish(self, applied: list[Step]) -> list[str]:
        timeout = float(self.options.get("commit_timeout") or max(self.timeout, 300.0))
        line = f"commit partial admin {self._admin}"
        self.sent.append(line)
        out = self._exchange([line], r"(?i)(committed successfully|commit failed|validation error|error)"
                             r"[\s\S]*#\s*$", timeout)[0]
        if "committed successfully" not in out.lower():
            raise DeviceError(line, " ".join(out.split())[:400])
        return [line]

    def _persist_preview(self, applied: bool) -> list[str]:
        return [f"commit partial admin {self._admin if (self.conn or self.login) else '<login user>'}"]

