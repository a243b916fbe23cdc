"""The ``ssh_linux`` connector: isolate / release, capture evidence and kill a user's sessions over SSH.

Thin by design: each hook validates with :mod:`.validation` and delegates to one module (:mod:`.isolate`,
:mod:`.releasing`, :mod:`.evidence`, :mod:`.usersessions`). Validation and previews never import paramiko or connect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import InvalidInput
from connectors.ssh_linux import (
    evidence,
    isolate,
    outside,
    persist,
    preview,
    releasing,
    usersessions,
    verifying,
)
from connectors.ssh_linux.allowlist import flows_from, parse_pins, pinned
from connectors.ssh_linux.privilege import parse_privilege
from connectors.ssh_linux.session import SshSession, open_session
from connectors.ssh_linux.validation import parse_isolate_args, parse_port, parse_user
from connectors.types import (
    ActionResult,
    AllowRule,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)

__all__ = ["SshLinuxConnector"]


def _describe(rule: AllowRule) -> str:
    """One allow-list entry for the plan: what stays open and who declared it."""
    if rule.service:
        return f"{rule.service} ({rule.source})"
    what = "/".join(str(p) for p in rule.ports) if rule.ports else "all ports"
    proto = "" if rule.protocol == "any" else f"{rule.protocol} "
    note = f": {rule.note}" if rule.note else ""
    return f"{rule.direction} {proto}{what} with {', '.join(rule.to)} ({rule.source}{note})"


class SshLinuxConnector(ConnectorBase):
    """Linux hosts over SSH (paramiko): nftables isolation with an iptables/ip6tables fallback."""

    name: ClassVar[str] = "ssh_linux"
    inventory_section: ClassVar[str] = "hosts"
    host_os: ClassVar[tuple[str, ...]] = ("linux",)
    #: actions whose arguments take ``allow_pins``: the planner resolves the allow-list's ``resolve: plan`` DNS
    #: names (in the agent, or the site's worker) before the plan is shown and journals the addresses with them
    pins_allow_names: ClassVar[frozenset[str]] = frozenset({"isolate"})
    # isolate's undo is in parts (``undo_in_parts``): one shell script (loading.revert_script) cancels the timer,
    # removes the boot unit, then — nft — deletes our table in one command, atomic by itself (one netlink
    # transaction: nft(8), wiki.nftables.org "Atomic rule replacement"), or — the iptables fallback — removes
    # each jump and chain with its own iptables command, IPv4 then IPv6 (nothing like iptables-restore's
    # per-table COMMIT covers a delete), then restores the IPv6 sysctls. A command of it that fails, or a script
    # cut off, leaves some parts undone (IPv4 open, IPv6 still cut; rules gone, IPv6 still off; boot unit gone,
    # table still there), and the read-back of most such states already says "not isolated". A resolution then
    # runs release again, which re-reads the host and removes only what is left ("not isolated; nothing to
    # release" otherwise): tests/integration/ssh_linux/test_release_in_parts.py.
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "isolate": ActionSpec(
            "isolate", "drop all traffic except SSH with the management addresses (one atomic nftables "
            "transaction, iptables fallback), cut live flows, dead-man timer until a fresh connection confirms",
            "host", undo_description="delete only the containment table/chains; the ruleset must then equal the "
            "snapshot exactly", active_as="isolated", blast="hosts", undo_in_parts=True),
        "capture_evidence": ActionSpec(
            "capture_evidence", "processes, connections, users, auth log and firewall state (read-only, ≤10 s)",
            "host", reversible=False, mutating=False),
        "kill_sessions": ActionSpec(
            "kill_sessions", "end every login session and process of a user (loginctl terminate-user, pkill)",
            "host", reversible=False),
    }

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> SshSession:
        return open_session(target, creds, ctx)

    # isolate ------------------------------------------------------------------------------------------------
    def _validate_isolate(self, target: Target, args: Mapping[str, Any]) -> None:
        if target.port is not None:
            parse_port(target.port, "port")
        parse_privilege(target.options)
        outside.parse_probe_from(target.options)
        parse_isolate_args(args, default_management=None)
        flows_from(pinned(target.allow, parse_pins(args.get("allow_pins"))))

    def summarize(self, target: Target, action: str, args: Mapping[str, Any],
                  ctx: ConnectorContext) -> list[str]:
        if action != "isolate":
            return super().summarize(target, action, args, ctx)
        a = isolate.isolate_args(args, ctx, target)
        keep = ", ".join(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in a.management)
        effect = (f"nftables (iptables where nft is missing); keep tcp/{a.ssh_port} from {keep}; "
                  "drop everything else in and out")
        if target.allow:
            rules = pinned(target.allow, parse_pins(args.get("allow_pins")))
            effect += "; also keep " + "; ".join(_describe(r) for r in rules)
        if a.cut_sessions:
            effect += "; cut live flows"
        if a.confirm_seconds:
            revert = (f"auto-revert in {a.confirm_seconds} s unless a fresh connection confirms" if a.confirm
                      else f"auto-revert in {a.confirm_seconds} s (not confirmed: reverts by design)")
        else:
            revert = "no auto-revert timer"
        lines = [effect, f"{revert}; undo: delete only our table/chains, ruleset must equal the snapshot"]
        if a.survive_reboot:
            lines.append(f"survives a reboot: once confirmed, {persist.UNIT_NAME} (enabled) re-applies it at boot; "
                         "release removes it")
        vantage = outside.parse_probe_from(target.options)
        if vantage:
            lines.append(f"proof from outside: after verify, {vantage} tries the host's listening TCP ports "
                         "(each must time out); recorded with the verification")
        return lines

    def _preview_isolate(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return preview.isolate_preview(target.address, target.port, isolate.isolate_args(args, ctx, target),
                                       parse_privilege(target.options))

    def _snapshot_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Snapshot:
        return isolate.snapshot(s, args)

    def _apply_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolate.apply(s, args, snap)

    def _verify_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        return verifying.verify(s, args)

    def _undo_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return releasing.release(s, args, snap)

    # capture_evidence ---------------------------------------------------------------------------------------
    def _validate_capture_evidence(self, target: Target, args: Mapping[str, Any]) -> None:
        if args:
            raise InvalidInput(f"args: capture_evidence takes no arguments, got {sorted(args)}",
                               connector=self.name, action="capture_evidence")

    def _preview_capture_evidence(self, target: Target, args: Mapping[str, Any],
                                  ctx: ConnectorContext) -> list[str]:
        return [f"ssh {target.address}: {cmd}  > {name}" for name, cmd in evidence.COMMANDS.items()]

    def _apply_capture_evidence(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return evidence.capture(s, args)

    def _verify_capture_evidence(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        return Verification(False, "capture_evidence changes nothing on the host", {})

    # kill_sessions ------------------------------------------------------------------------------------------
    def _validate_kill_sessions(self, target: Target, args: Mapping[str, Any]) -> None:
        unknown = sorted(set(args) - {"user"})
        if unknown:
            raise InvalidInput(f"args: {unknown} are not kill_sessions arguments (known: user)",
                               connector=self.name, action="kill_sessions")
        parse_user(args.get("user"))

    def _preview_kill_sessions(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"ssh {target.address}: {line}" for line in usersessions.preview(args)]

    def _apply_kill_sessions(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return usersessions.kill_sessions(s, args)

    def _verify_kill_sessions(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        return usersessions.verify_killed(s, args)

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "isolate": ActionHooks(apply=self._apply_isolate, verify=self._verify_isolate,
                                   validate=self._validate_isolate, preview=self._preview_isolate,
                                   snapshot=self._snapshot_isolate, undo=self._undo_isolate),
            "capture_evidence": ActionHooks(apply=self._apply_capture_evidence, verify=self._verify_capture_evidence,
                                            validate=self._validate_capture_evidence,
                                            preview=self._preview_capture_evidence),
            "kill_sessions": ActionHooks(apply=self._apply_kill_sessions, verify=self._verify_kill_sessions,
                                         validate=self._validate_kill_sessions, preview=self._preview_kill_sessions),
        }
