"""The ``ssh_linux`` connector: isolate / release, capture evidence and kill a user's sessions over SSH.

Thin by design: each hook validates with :mod:`.validation` and delegates to one module (:mod:`.isolate`,
:mod:`.evidence`, :mod:`.usersessions`). Validation and previews never import paramiko or connect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import ConnectorBase
from connectors.errors import InvalidInput
from connectors.ssh_linux import deadman, evidence, flows, isolate, rules, usersessions
from connectors.ssh_linux.session import SshSession, open_session
from connectors.ssh_linux.state import STATE_SCRIPT, then_read_script
from connectors.ssh_linux.validation import parse_isolate_args, parse_port, parse_user
from connectors.types import (
    ActionResult,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)

__all__ = ["SshLinuxConnector"]


class SshLinuxConnector(ConnectorBase):
    """Linux hosts over SSH (paramiko): nftables isolation with an iptables/ip6tables fallback."""

    name: ClassVar[str] = "ssh_linux"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "isolate": ActionSpec(
            "isolate", "drop all traffic except SSH with the management addresses (one atomic nftables "
            "transaction, iptables fallback), cut live flows, dead-man timer until a fresh connection confirms",
            "host", undo_description="delete only the containment table/chains; the ruleset must then equal the "
            "snapshot exactly"),
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
        parse_isolate_args(args, default_management=None)

    def summarize(self, target: Target, action: str, args: Mapping[str, Any],
                  ctx: ConnectorContext) -> list[str]:
        if action != "isolate":
            return super().summarize(target, action, args, ctx)
        a = isolate.isolate_args(args, ctx)
        keep = ", ".join(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in a.management)
        effect = (f"nftables (iptables where nft is missing); keep tcp/{a.ssh_port} from {keep}; "
                  "drop everything else in and out")
        if a.cut_sessions:
            effect += "; cut live flows"
        if a.confirm_seconds:
            revert = (f"auto-revert in {a.confirm_seconds} s unless a fresh connection confirms" if a.confirm
                      else f"auto-revert in {a.confirm_seconds} s (not confirmed: reverts by design)")
        else:
            revert = "no auto-revert timer"
        return [effect, f"{revert}; undo: delete only our table/chains, ruleset must equal the snapshot"]

    def _preview_isolate(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        a = isolate.isolate_args(args, ctx)
        host = f"ssh {target.address}:{target.port or 22}"
        out = [f"{host}: read state (tool, ruleset snapshot, SSH_CONNECTION must come from a management address)"]
        load = f"{rules.NFT_LOAD} <<'EOF'\n{rules.nft_script(a.management, a.ssh_port)}EOF"
        if a.confirm_seconds:
            out.append(f"{host}: arm dead-man timer ({a.confirm_seconds} s), then load the ruleset only if it is "
                       f"armed: {deadman.armed_or_exit(a.confirm_seconds, isolate.revert_script('nft'))}{load}")
        else:
            out.append(f"{host}: {load}")
        for version, tool in ((4, "iptables"), (6, "ip6tables")):
            out.append(f"{host}: fallback without nft: {rules.IPTABLES_CHECK_JUMPS}; then {tool}-restore -w "
                       f"--noflush <<'EOF'\n{rules.iptables_restore(a.management, a.ssh_port, version)}EOF")
        read_back = f"{STATE_SCRIPT}"
        if a.cut_sessions:
            read_back = (then_read_script(flows.cut_command(a.management, a.ssh_port))
                         + "; then conntrack -D for each tracked non-management flow")
            out.append(f"{host}: cut live flows and read the rules back: {read_back}")
        else:
            out.append(f"{host}: read the rules back: {read_back}")
        out.append(f"{host}: meanwhile open a fresh connection; once the rules read back right, "
                   + (f"cancel the timer through it: {deadman.cancel_command()}" if a.confirm and a.confirm_seconds
                      else "run `true` through it"))
        out.append(f"{host}: verify: {STATE_SCRIPT}")
        return out

    def _snapshot_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Snapshot:
        return isolate.snapshot(s, args)

    def _apply_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolate.apply(s, args, snap)

    def _verify_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        return isolate.verify(s, args)

    def _undo_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolate.release(s, args, snap)

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
