"""Isolate a Linux host (nftables, or iptables/ip6tables where nft is missing), verify it, release it exactly.

apply: refuse if the agent's own session would not survive (its source is not a management address) → arm the
dead-man timer and load the ruleset atomically from stdin (one round trip; the load runs only if the timer is
armed) → cut live flows and read the rules back through the same session (one round trip) while a *fresh*
connection is being opened (:mod:`.confirm`) → once the read-back is right, cancel the timer through the fresh
connection. Any failure after the ruleset is loaded removes it again at once (the timer is the backstop when even
that is impossible). The state read by the snapshot is reused when nothing ran since (≈ 1 round trip saved).
undo: remove only our table / chains and jumps, cancel any timer and read the ruleset back (one round trip); it
must equal the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError, Rejected, VerifyFailed
from connectors.ssh_linux import deadman, flows, rules
from connectors.ssh_linux.confirm import FreshConfirmation
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.state import (
    FirewallState,
    judge,
    normalise,
    read_state,
    ruleset_diff,
    run_then_read,
)
from connectors.ssh_linux.validation import IsolateArgs, parse_isolate_args
from connectors.types import ActionResult, ConnectorContext, Snapshot, Verification

__all__ = ["REUSE_STATE_SECONDS", "apply", "isolate_args", "release", "revert_script", "rule_summary", "snapshot",
           "verify"]


REUSE_STATE_SECONDS = 2.0  # apply/release reuse the snapshot's read when it is this fresh and nothing ran since


def isolate_args(args: Mapping[str, Any], ctx: ConnectorContext) -> IsolateArgs:
    return parse_isolate_args(args, ctx.management_addresses, ctx.confirm_timeout)


def revert_script(tool: str) -> str:
    """What undoes our change on the host (also what the dead-man timer runs)."""
    return rules.NFT_RELEASE if tool == "nft" else rules.IPTABLES_RELEASE


def rule_summary(state: FirewallState) -> dict[str, Any]:
    """A short, JSON-friendly view of our rules as read back from the host."""
    if state.tool == "nft":
        if state.nft_table is None:
            return {}
        return {c: v.get("rules", []) for c, v in state.nft_table.items()}
    return {f"v{v}": state.ipt_chains.get(v, {}) for v in (4, 6) if state.ipt_chains.get(v)}


def snapshot(s: SshSession, args: Mapping[str, Any]) -> Snapshot:
    st = read_state(s)
    data: dict[str, Any] = {"tool": st.tool, "ruleset": st.ruleset, "containment_present": st.present}
    if st.tool != "nft":
        data["ruleset6"] = st.ruleset6
        data["ip6tables"] = st.has_ip6tables
    return Snapshot(data)


def _check_own_path(st: FirewallState, a: IsolateArgs, s: SshSession) -> None:
    """Lesson 1 of ARCHITECTURE: never apply a ruleset that cuts the path the agent is using right now."""
    import ipaddress

    if not st.agent_source:
        raise Rejected("cannot tell where the agent's session comes from (SSH_CONNECTION is empty); refusing to "
                       "isolate blind", target=s.label)
    src = ipaddress.ip_address(st.agent_source)
    if not any(src.version == n.version and src in n for n in a.management):
        raise Rejected(f"the host sees the agent as {src}, which is not among the management addresses "
                       f"{[str(n) for n in a.management]}: isolating would cut the agent off (NAT or proxy?)",
                       target=s.label)
    if st.agent_server_port is not None and st.agent_server_port != a.ssh_port:
        raise Rejected(f"the agent reached sshd on port {st.agent_server_port}, but ssh_port is {a.ssh_port}: "
                       "isolating would cut the agent off", target=s.label)


def _arm_and_load(s: SshSession, st: FirewallState, a: IsolateArgs, details: dict[str, Any]) -> list[str]:
    """Arm the dead-man timer, then load the ruleset; return warnings. nft: both in one round trip."""
    if st.tool == "nft":
        script = rules.NFT_LOAD
        if a.confirm_seconds:
            script = deadman.armed_or_exit(a.confirm_seconds, revert_script("nft")) + script
        rc, out, err = s.run(script, input=rules.nft_script(a.management, a.ssh_port), timeout=20,
                             what="arm dead-man timer and load the ruleset (nft -f -)")
        if a.confirm_seconds:
            details["deadman"] = {"armed_seconds": a.confirm_seconds, "pid": deadman.parse_arm(out)}
        if rc == deadman.ARM_FAILED_EXIT:
            raise Rejected(f"the dead-man timer could not be armed on {s.target.address}; nothing was loaded: "
                           f"{(err.strip() or out.strip())[-300:]}", target=s.label)
        if rc != 0:
            _undo_now(s, "nft")
            raise Rejected(f"nft -f - (containment table) failed on {s.target.address} (exit {rc}): "
                           f"{(err.strip() or out.strip())[-500:]}", target=s.label, detail={"exit_status": rc})
        return []
    if a.confirm_seconds:
        _, out, _ = s.run(deadman.arm_command(a.confirm_seconds, revert_script(st.tool)), timeout=15, check=True,
                          what="arm dead-man timer")
        details["deadman"] = {"armed_seconds": a.confirm_seconds, "pid": deadman.parse_arm(out)}
    try:
        return _load_iptables(s, a)
    except ConnectorError:
        _undo_now(s, st.tool)
        raise


def _load_iptables(s: SshSession, a: IsolateArgs) -> list[str]:
    _, out, _ = s.run(rules.IPTABLES_CHECK_JUMPS, timeout=15, what="iptables -C (existing jumps)")
    warnings: list[str] = []
    for version, tool in ((4, "iptables"), (6, "ip6tables")):
        if f"{tool} absent" in out:
            if version == 4:
                raise Rejected("neither nft nor iptables is installed: cannot isolate", target=s.label)
            warnings.append("ip6tables is not installed: IPv6 traffic is NOT blocked on this host")
            continue
        missing = [c for _, c, _ in rules.IPT_CHAINS if f"{tool} {c} missing" in out]
        s.run(f"{tool}-restore -w --noflush", input=rules.iptables_restore(a.management, a.ssh_port, version,
                                                                       missing),
              timeout=20, check=True, what=f"{tool}-restore --noflush (containment chains)")
    return warnings


def _undo_now(s: SshSession, tool: str) -> None:
    """Best-effort immediate revert after a failed apply (the armed timer stays as the backstop)."""
    try:
        s.run(revert_script(tool) + "; " + deadman.cancel_command(), timeout=15, what="revert after failure")
    except ConnectorError:
        pass


def _cut_and_read(s: SshSession, a: IsolateArgs, details: dict[str, Any], warnings: list[str]) -> FirewallState:
    """Cut live flows and read the rules back, in one round trip (plus ``conntrack -D`` when flows are tracked)."""
    if not a.cut_sessions:
        warnings.append("cut_sessions is false: connections opened before isolation are frozen, not ended")
        return read_state(s)
    cut_out, after = run_then_read(s, flows.cut_command(a.management, a.ssh_port),
                                   what="cut live flows and read the rules back")
    try:
        details["cut"] = flows.finish_cut(s, cut_out, a.management, a.ssh_port)
    except ConnectorError as exc:
        warnings.append(f"cutting live flows failed: {exc.message}")
    if details.get("cut", {}).get("ss_status") not in (0, None):
        warnings.append("ss -K reported an error: some live sockets may not have been cut")
    return after


def apply(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    a = isolate_args(args, s.ctx)
    st = read_state(s, reuse_within=REUSE_STATE_SECONDS)
    problems = judge(st, a.management, a.ssh_port)
    mgmt = [rules.net_text(n) for n in a.management]
    if not problems:
        return ActionResult(False, f"already isolated ({st.tool}); nothing re-applied",
                            details={"tool": st.tool, "management": mgmt, "ssh_port": a.ssh_port})
    _check_own_path(st, a, s)
    details: dict[str, Any] = {"tool": st.tool, "management": mgmt, "ssh_port": a.ssh_port}
    warnings = _arm_and_load(s, st, a, details)
    cancel = bool(a.confirm and a.confirm_seconds)
    confirmation = FreshConfirmation(s, cancel_timer=cancel).start()
    try:
        after = _cut_and_read(s, a, details, warnings)
    except BaseException:
        confirmation.abandon()
        _undo_now(s, st.tool)
        raise
    problems = judge(after, a.management, a.ssh_port)
    if problems:
        confirmation.abandon()
        _undo_now(s, st.tool)
        raise VerifyFailed(f"isolation rules read back wrong, reverted: {'; '.join(problems)[:600]}",
                           target=s.label)
    details["rules"] = rule_summary(after)
    try:
        out = confirmation.finish(proceed=True)
    except ConnectorError as exc:
        _undo_now(s, st.tool)
        raise VerifyFailed(f"isolation applied but a fresh management connection failed ({exc.message}); the "
                           "rules were removed again", target=s.label) from exc
    details["fresh_connection"] = "ok"
    if cancel:
        details["deadman"]["cancelled"] = deadman.parse_cancel(out) is not None
    cut = details.get("cut", {})
    summary = (f"isolated with {st.tool}; only tcp/{a.ssh_port} with {', '.join(mgmt)} remains; "
               f"{cut.get('sockets_killed_count', 0)} live socket(s) cut, "
               f"{cut.get('conntrack_deleted', 0)} tracked flow(s) deleted; ")
    summary += ("dead-man timer cancelled after a fresh connection" if cancel else
                f"dead-man timer left ARMED: the host reverts in {a.confirm_seconds} s" if a.confirm_seconds else
                "no dead-man timer")
    return ActionResult(True, summary, details=details, warnings=warnings)


def verify(s: SshSession, args: Mapping[str, Any]) -> Verification:
    a = isolate_args(args, s.ctx)
    st = read_state(s)
    problems = judge(st, a.management, a.ssh_port)
    observed: dict[str, Any] = {"tool": st.tool, "present": st.present, "rules": rule_summary(st),
                                "deadman_armed_pid": st.deadman_pid}
    if st.deadman_reverted_at:
        observed["deadman_reverted_at"] = st.deadman_reverted_at
    if st.tool != "nft" and not st.has_ip6tables:
        observed["ipv6"] = "ip6tables missing: IPv6 not filtered"
    if not problems:
        return Verification(True, f"isolated ({st.tool}): only tcp/{a.ssh_port} with "
                                  f"{', '.join(rules.net_text(n) for n in a.management)}", observed)
    observed["problems"] = problems
    if not st.present:
        why = f"not isolated ({st.tool}: no containment rules)"
        if st.deadman_reverted_at:
            why += f"; the dead-man timer reverted it at {st.deadman_reverted_at}"
        return Verification(False, why, observed)
    return Verification(False, f"containment rules present but not as expected: {'; '.join(problems)[:300]}",
                        observed)


def release(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    st = read_state(s, reuse_within=REUSE_STATE_SECONDS)
    if not st.present:
        s.run(deadman.cancel_command(), timeout=10, what="cancel dead-man timer")
        return ActionResult(False, "not isolated; nothing to release", details={"tool": st.tool})
    _, after = run_then_read(s, f"{revert_script(st.tool)}; {deadman.cancel_command()}",
                             what="remove containment rules and read the ruleset back")
    if after.present:
        raise VerifyFailed(f"containment rules still present after release: {rule_summary(after)}",
                           target=s.label)
    details: dict[str, Any] = {"tool": after.tool}
    if snap.data.get("containment_present") or "ruleset" not in snap.data:
        return ActionResult(True, f"released ({after.tool}); the snapshot already held isolation rules, so the "
                                  "ruleset was not compared", details=details,
                            warnings=["ruleset not compared with the snapshot"])
    diff = ruleset_diff(snap.data["ruleset"], after.ruleset)
    if after.tool != "nft" and snap.data.get("ip6tables", True):
        diff += ruleset_diff(snap.data.get("ruleset6", ""), after.ruleset6)
    if diff:
        raise VerifyFailed("ruleset after release differs from the snapshot: " + " | ".join(diff)[:900],
                           target=s.label, detail={"diff": diff})
    details["ruleset_equal_to_snapshot"] = True
    details["normalised_lines"] = len(normalise(after.ruleset).splitlines())
    return ActionResult(True, f"released ({after.tool}); ruleset equals the snapshot", details=details)
