"""Linux hosts over SSH (paramiko): isolate with nftables (iptables fallback), capture evidence, end sessions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import ConnectorBase
from connectors.linux_ssh import evidence, isolate
from connectors.linux_ssh.session import SshSession, open_session
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
    name: ClassVar[str] = "ssh_linux"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "isolate": ActionSpec("isolate", "drop all traffic except SSH from the management address(es); cut live "
                              "flows", "host", undo_description="remove the containment rules, restore the "
                              "snapshot ruleset exactly"),
        "capture_evidence": ActionSpec("capture_evidence", "processes, connections, users, auth log, firewall "
                                       "state", "host", reversible=False, mutating=False),
        "kill_sessions": ActionSpec("kill_sessions", "end every process and login session of a user", "host",
                                    reversible=False),
    }

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> SshSession:
        return open_session(target, creds, ctx)

    # isolate
    def _validate_isolate(self, target: Target, args: Mapping[str, Any]) -> None:
        isolate.plan_args(target, args, ConnectorContext(management_addresses=("127.0.0.1",)))

    def _preview_isolate(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return isolate.preview(target, args, ctx)

    def _snapshot_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Snapshot:
        return isolate.snapshot(s, args)

    def _apply_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolate.apply(s, args, snap)

    def _verify_isolate(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        return isolate.verify(s, args)

    def _undo_isolate(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolate.release(s, args, snap)

    # evidence
    def _preview_capture_evidence(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"ssh {target.address}: {cmd}  > {name}" for name, cmd in evidence.COMMANDS.items()]

    def _apply_capture_evidence(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return evidence.capture(s, args)

    # sessions
    def _validate_kill_sessions(self, target: Target, args: Mapping[str, Any]) -> None:
        evidence.check_user(args)

    def _preview_kill_sessions(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"ssh {target.address}: loginctl terminate-user {evidence.check_user(args)}; "
                f"pkill -KILL -u {evidence.check_user(args)}"]

    def _apply_kill_sessions(self, s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return evidence.kill_sessions(s, args)

    def _verify_kill_sessions(self, s: SshSession, args: Mapping[str, Any]) -> Verification:
        import shlex
        user = shlex.quote(evidence.check_user(args))
        _, out, _ = s.run(f"pgrep -u {user} | wc -l", check=False, what="count processes")
        left = out.strip() or "0"
        return Verification(left == "0", f"{left} process(es) of {args['user']} left", {"processes": left})
