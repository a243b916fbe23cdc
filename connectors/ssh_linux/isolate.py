"""Isolate a Linux host (nftables, or iptables/ip6tables where nft is missing), verify it, release it exactly.

apply: refuse a foreign table/chain that holds our name, and refuse if the agent's own session would not survive
(its source is not a management address) → under the host's lock (:mod:`.deadman`), arm the dead-man timer with
the action's token and load the ruleset in one round trip → cut live flows and read the rules back through the
same session while a *fresh* connection is being opened (:mod:`.confirm`) → once the read-back is right, cancel
*our* timer through the fresh connection. Any failure after the ruleset is loaded removes it again at once, but
only while the live timer is still ours (the timer is the backstop when even that is impossible).

Another run's live timer means that run is between loading and confirming: wait for it, or take it over when its
owner is provably dead (same machine, process gone) or its lease ran out — the case of a crashed confirm (issue 14
finding 1): the host is isolated but the timer would lift it, so "already isolated" is only said once no timer
is armed. verify (:mod:`.verifying`) says the same: rules with an armed timer are not a containment in effect.
With ``survive_reboot``, once confirmed, the boot unit is made to match (:mod:`.reboot`, :mod:`.persist`); hosts
whose firewall manager would flush our rules on reload are refused (:mod:`.fwmanagers`). The load and revert
texts are in :mod:`.loading`.
undo: :mod:`.releasing`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError, Rejected, Timeout, VerifyFailed
from connectors.ssh_linux import deadman, flows, fwmanagers, persist, reboot, rules
from connectors.ssh_linux.loading import load_command, revert_script
from connectors.ssh_linux.allowlist import flows_from, parse_pins, pinned
from connectors.ssh_linux.confirm import FreshConfirmation
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.state import (
    FirewallState,
    judge,
    read_state,
    run_then_read,
)
from connectors.ssh_linux.validation import IsolateArgs, parse_isolate_args
from connectors.types import ActionResult, ConnectorContext, Snapshot, Target

__all__ = [
    "REUSE_STATE_SECONDS",
    "apply",
    "isolate_args",
    "lease_seconds",
    "refuse_foreign",
    "rule_summary",
    "snapshot",
    "through_jump",
]


REUSE_STATE_SECONDS = 2.0  # apply/release reuse the snapshot's read when it is this fresh and nothing ran since
_POLL = 0.5                # how often a run waiting for another run's confirmation reads the state again


def isolate_args(args: Mapping[str, Any], ctx: ConnectorContext, target: Target | None = None) -> IsolateArgs:
    """Parsed arguments, management resolved against the context and the target's allow-list as flows."""
    import dataclasses

    a = parse_isolate_args(args, ctx.management_addresses, ctx.confirm_timeout)
    if target is None or not target.allow:
        return a
    return dataclasses.replace(a, allow=flows_from(pinned(target.allow, parse_pins(args.get("allow_pins")))))


def lease_seconds(ctx: ConnectorContext) -> int:
    """How long another run's unconfirmed timer is presumed in flight: two command timeouts (a live run arms,
    reads back and confirms within that); after it, or once its process is known dead, it may be taken over."""
    return max(30, int(2 * ctx.command_timeout))


def rule_summary(state: FirewallState) -> dict[str, Any]:
    """A short, JSON-friendly view of our rules as read back from the host."""
    if state.tool == "nft":
        if state.nft_table is None:
            return {}
        return {c: v.get("rules", []) for c, v in state.nft_table.items()}
    out: dict[str, Any] = {f"v{v}": state.ipt_chains.get(v, {}) for v in (4, 6) if state.ipt_chains.get(v)}
    if state.ipv6_sysctls:
        out["ipv6_disabled"] = {n: state.ipv6_sysctls[n] == "1" for n in rules.ipv6_interfaces(state.ipv6_sysctls)}
    return out


def through_jump(s: SshSession, st: FirewallState, a: IsolateArgs) -> IsolateArgs:
    """A target reached through jump hosts sees the agent as its last bastion (``SSH_CONNECTION``), so that
    address is what isolation must keep open on tcp/ssh_port: added to the management set (host-sized)."""
    import dataclasses
    import ipaddress

    if not s.target.jump or not st.agent_source:
        return a
    src = ipaddress.ip_address(st.agent_source)
    if any(src.version == n.version and src in n for n in a.management):
        return a
    return dataclasses.replace(a, management=(*a.management, ipaddress.ip_network(src)))


def _refuse_reload_hazard(st: FirewallState, s: SshSession) -> None:
    """A firewall manager whose reload would silently drop the isolation (:mod:`.fwmanagers`): refuse contain."""
    hazard = fwmanagers.reload_hazard(st)
    if hazard:
        raise Rejected(f"{s.target.address}: {hazard}; nothing was changed", target=s.label,
                       detail={"firewall_manager": dict(st.managers)})


def refuse_foreign(st: FirewallState, s: SshSession) -> None:
    """A table or chain with our name but without our ownership mark is someone else's: touch nothing."""
    if st.foreign:
        raise Rejected(f"{', '.join(st.foreign)} already exists on {s.target.address} and is not the agent's (no "
                       "ownership mark): refusing to replace or delete it; rename or remove it first",
                       target=s.label, detail={"foreign": list(st.foreign)})


def snapshot(s: SshSession, args: Mapping[str, Any]) -> Snapshot:
    st = read_state(s)
    refuse_foreign(st, s)
    _refuse_reload_hazard(st, s)
    a = isolate_args(args, s.ctx, s.target)
    if a.survive_reboot:
        reboot.refuse_boot_unit(st, s)
    data: dict[str, Any] = {"tool": st.tool, "ruleset": st.ruleset, "containment_present": st.present,
                            "token": deadman.new_token(), "firewall_managers": dict(st.managers),
                            # what release removes (each only while it still carries our mark), and what was there
                            "boot_unit": {"paths": [persist.BOOT_SCRIPT, persist.UNIT, persist.WANTS],
                                          "present_before": sorted(st.persist.found)}}
    if st.tool != "nft":
        data["ruleset6"] = st.ruleset6
        data["ip6tables"] = st.has_ip6tables
        if not st.has_ip6tables:
            data["ipv6_sysctls"] = dict(st.ipv6_sysctls)
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
    if st.tool != "nft" and not st.has_ip6tables and any(n.version == 6 for n in a.management):
        raise Rejected("this host has no ip6tables, so IPv6 is blocked by switching it off, but a management "
                       "address is IPv6: isolating would cut the agent off", target=s.label)


def _arm_and_load(s: SshSession, st: FirewallState, a: IsolateArgs, token: str, expect: str,
                  ipv6_before: Mapping[str, str], details: dict[str, Any], reload_rules: bool) -> bool:
    """Arm + load in one round trip. Returns False when another run's timer appeared first (compare failed)."""
    from connectors.ssh_linux.privilege import priv_definition

    priv_def = priv_definition(s.privilege)
    cmd, stdin = load_command(st, a, token, expect, ipv6_before, priv_def, reload_rules)
    rc, out, err = s.run(cmd, input=stdin, timeout=20, what="arm dead-man timer and load the ruleset")
    if rc == deadman.BUSY_EXIT:
        return False
    if a.confirm_seconds:
        due = deadman.parse_due(out)
        details["deadman"] = {"armed_seconds": a.confirm_seconds, "pid": deadman.parse_arm(out), "token": token,
                              "reverts_at": _utc(due) if due else None}
    text = (err.strip() or out.strip())[-500:]
    if rc in (deadman.ARM_FAILED_EXIT, deadman.LOCK_EXIT):
        raise Rejected(f"the dead-man timer could not be armed on {s.target.address}; nothing was loaded: {text}",
                       target=s.label, detail={"exit_status": rc})
    if rc != 0:
        _undo_now(s, st.tool, token, a, ipv6_before)
        raise Rejected(f"loading the containment ruleset ({st.tool}) failed on {s.target.address} (exit {rc}): "
                       f"{text}", target=s.label, detail={"exit_status": rc})
    return True


def _undo_now(s: SshSession, tool: str, token: str, a: IsolateArgs, ipv6_before: Mapping[str, str]) -> bool:
    """Best-effort immediate revert after a failed apply, only while the live timer is still ours (another run
    may have taken the host over; its containment is not ours to remove). The timer stays as the backstop.
    Returns True when the host confirmed the revert."""
    try:
        _, out, _ = s.run(deadman.undo_own_command(token, revert_script(tool, ipv6_before),
                                                   timer_expected=bool(a.confirm_seconds)),
                          timeout=10, what="revert after failure")
    except ConnectorError:
        return False
    return "DEADMAN_UNDONE=yes" in out


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


def _failpoint(name: str) -> None:
    """The agent's crash-test hooks (agent.failpoints); absent when the connector runs without the agent."""
    try:
        from agent.failpoints import failpoint
    except ImportError:  # pragma: no cover - a third-party host of the connector
        return
    failpoint(name)


def _may_take_over(timer: deadman.TimerRecord, lease: int) -> bool:
    return deadman.owner_is_dead(timer.owner) or timer.age > lease


def _utc(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loaded_in_doubt(s: SshSession, a: IsolateArgs, exc: ConnectorError, when: str,
                     details: Mapping[str, Any]) -> Timeout:
    """The ruleset is (probably) loaded but the run lost the host: say what state it is in and when it reverts."""
    at = details.get("deadman", {}).get("reverts_at")
    revert = (f"the host's dead-man timer lifts it by itself at {at} (host clock) unless a later run confirms it"
              if at else "no dead-man timer was armed: the isolation stays until released")
    return Timeout(f"in doubt: the host is isolated but unconfirmed — the containment ruleset was loaded on "
                   f"{s.target.address} and the connection was lost {when} ({exc.message}); {revert}. Re-run "
                   "contain to confirm it, or release", target=s.label,
                   detail={"in_doubt": True, "confirm_seconds": a.confirm_seconds, "reverts_at": at})


def apply(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    a = isolate_args(args, s.ctx, s.target)
    token = str(snap.data.get("token") or deadman.new_token())
    ipv6_before = dict(snap.data.get("ipv6_sysctls") or {})
    mgmt = [rules.net_text(n) for n in a.management]
    details: dict[str, Any] = {"tool": "", "management": mgmt, "ssh_port": a.ssh_port}
    lease = lease_seconds(s.ctx)
    deadline = time.monotonic() + lease + 10
    st = read_state(s, reuse_within=REUSE_STATE_SECONDS)
    a = through_jump(s, st, a)
    mgmt = [rules.net_text(n) for n in a.management]
    details["management"] = mgmt
    waited = False
    while True:
        refuse_foreign(st, s)
        _refuse_reload_hazard(st, s)
        details["tool"] = st.tool
        if st.tool != "nft" and not st.has_ip6tables and not ipv6_before:
            ipv6_before = dict(st.ipv6_sysctls)
        timer, expect, took_over = st.timer, "", ""
        if timer is not None and timer.token != token:
            if not _may_take_over(timer, lease):
                if time.monotonic() > deadline:
                    raise Rejected(f"another run ({timer.owner}) keeps an unconfirmed isolation of "
                                   f"{s.target.address} in flight; its timer reverts it in {timer.remaining} s",
                                   target=s.label)
                waited = True
                time.sleep(_POLL)
                st = read_state(s)
                continue
            expect, took_over = timer.token, timer.owner
        elif timer is not None:
            expect = token  # our own timer from an interrupted attempt (the token is journaled in the snapshot)
        problems = judge(st, a.management, a.ssh_port, a.allow)
        if not problems and (timer is None or not a.confirm):
            note = " (after waiting for another run to confirm it)" if waited else ""
            warned: list[str] = []
            if timer is None and reboot.settle(s, st, a, token, details, warned):
                what = "installed the boot unit" if a.survive_reboot else "removed the boot unit"
                return ActionResult(True, f"already isolated ({st.tool}); {what}{note}", details=details,
                                    warnings=warned)
            return ActionResult(False, f"already isolated ({st.tool}); nothing re-applied{note}", details=details,
                                warnings=warned)
        _check_own_path(st, a, s)
        if _arm_and_load(s, st, a, token, expect, ipv6_before, details, reload_rules=bool(problems)):
            _failpoint("isolate-after-load")
            break
        waited = True
        st = read_state(s)
    if took_over or expect == token:
        details["took_over"] = {"owner": took_over or "this action (interrupted earlier)",
                                "token": expect, "reason": "owner gone or lease expired"}
    warnings: list[str] = []
    cancel = bool(a.confirm and a.confirm_seconds)
    confirmation = FreshConfirmation(s, command=deadman.confirm_command(token) if cancel else "true").start()
    try:
        after = _cut_and_read(s, a, details, warnings)
    except ConnectorError as exc:
        confirmation.abandon()
        if not _undo_now(s, st.tool, token, a, ipv6_before) and exc.transient:
            raise _loaded_in_doubt(s, a, exc, "while reading the rules back", details) from exc
        raise
    except BaseException:
        confirmation.abandon()
        _undo_now(s, st.tool, token, a, ipv6_before)
        raise
    problems = judge(after, a.management, a.ssh_port, a.allow)
    if problems:
        confirmation.abandon()
        _undo_now(s, st.tool, token, a, ipv6_before)
        raise VerifyFailed(f"isolation rules read back wrong, reverted: {'; '.join(problems)[:600]}",
                           target=s.label)
    details["rules"] = rule_summary(after)
    _failpoint("isolate-before-confirm")
    try:
        out = confirmation.finish(proceed=True)
    except ConnectorError as exc:
        if not _undo_now(s, st.tool, token, a, ipv6_before) and exc.transient:
            raise _loaded_in_doubt(s, a, exc, "while confirming through a fresh connection", details) from exc
        raise VerifyFailed(f"isolation applied but a fresh management connection failed ({exc.message}); the "
                           "rules were removed again", target=s.label) from exc
    details["fresh_connection"] = "ok"
    _failpoint("isolate-after-confirm")
    if cancel:
        outcome, who = deadman.parse_confirm(out)
        details["deadman"]["confirm"] = outcome
        details["deadman"]["cancelled"] = outcome == "confirmed"
        if outcome == "other":
            raise VerifyFailed(f"another run ({who}) took this host's isolation over before it was confirmed; its "
                               "dead-man timer decides now (in doubt until it confirms)", target=s.label,
                               detail={"in_doubt": True})
        if outcome != "confirmed":
            warnings.append("our dead-man timer was already gone when confirming (another run confirmed or "
                            "released in between); verify reads the real state")
    if not cancel or details["deadman"].get("cancelled"):
        reboot.settle(s, after, a, token, details, warnings)
    cut = details.get("cut", {})
    summary = (f"isolated with {st.tool}; only tcp/{a.ssh_port} with {', '.join(mgmt)} remains; "
               f"{cut.get('sockets_killed_count', 0)} live socket(s) cut, "
               f"{cut.get('conntrack_deleted', 0)} tracked flow(s) deleted; ")
    summary += ("dead-man timer cancelled after a fresh connection" if cancel else
                f"dead-man timer left ARMED: the host reverts in {a.confirm_seconds} s" if a.confirm_seconds else
                "no dead-man timer")
    if took_over:
        summary += f"; completed an unconfirmed isolation left by {took_over}"
    if ipv6_before and st.tool != "nft":
        summary += "; IPv6 switched off (no ip6tables on this host)"
    if fwmanagers.describe(after):
        details["firewall_manager"] = fwmanagers.describe(after)
    if details.get("survives_reboot", {}).get("installed") in ("now", "already"):
        summary += f"; survives a reboot ({persist.UNIT_NAME} re-applies it at boot until release)"
    return ActionResult(True, summary, details=details, warnings=warnings)
