"""The ``isolate`` action: snapshot, dead-man switch, apply, verify through a fresh connection.

Order in ``apply`` (each step only after the previous one succeeded):

1. read state; already isolated → ``changed=False``;
2. register the dead-man task (reverts to the snapshot after N minutes unless cancelled);
3. write the pre-isolation state to ``state.json`` on the host, replace the rule group, block the profiles;
4. drop the TCP connection and read the state back over a *new* connection (the firewall is stateful: the old
   connection would survive a rule that blocks new ones, so only a fresh one proves the management path);
5. cancel the dead-man task. If 4 fails, the task stays and frees the host by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import AuthError, ConnectorError, Rejected, Unreachable, VerifyFailed
from connectors.types import ActionResult, Snapshot, Verification
from connectors.winrm_windows import firewall
from connectors.winrm_windows.allowlist import keep_rules
from connectors.winrm_windows.plan import (
    GROUP,
    STATE_DIR,
    TASK_NAME,
    IsolationPlan,
    build_plan,
    gpo_conflicts,
    isolation_gaps,
    profiles_equal,
)
from connectors.winrm_windows.session import WinRMSession

__all__ = [
    "apply_isolate",
    "plan_for",
    "snapshot_isolate",
    "undo_isolate",
    "verify_isolate",
]


def plan_for(sess: WinRMSession, state: Mapping[str, Any] | None = None) -> IsolationPlan:
    """The isolation plan for this session's host: management addresses from the agent's context, kept flows
    from the inventory and from the host's own network configuration in ``state`` (resolvers, DHCP servers)."""
    st = state or {}
    mgmt = [str(a) for a in sess.ctx.management_addresses]
    keep = keep_rules(sess.target.allow, management=mgmt, keep_dhcp_dns=sess.settings.keep_dhcp_dns,
                      dns_servers=st.get("dns_servers", ()), dhcp_servers=st.get("dhcp_servers", ()),
                      domain_controllers=sess.settings.domain_controllers)
    return build_plan(mgmt, winrm_port=sess.settings.port, allow_rdp=sess.settings.allow_rdp, keep=keep)


def refuse_unreachable_reauth(sess: WinRMSession, state: Mapping[str, Any]) -> None:
    """An NTLM logon of a domain account needs a DC (MS-APDS 3.1): without ``domain_controllers`` kept open the
    fresh-connection check after isolating would fail and the dead-man revert every time."""
    if sess.settings.transport != "ntlm" or sess.settings.domain_controllers:
        return
    user = sess.username
    domain = user.split("\\", 1)[0] if "\\" in user else (user.split("@", 1)[1] if "@" in user else "")
    if not domain or domain == "." or domain.upper() == str(state.get("computer_name", "")).upper():
        return  # a local account: the host checks it itself
    raise Rejected(f"{sess.target.name}: the agent logs on as domain account {user} over NTLM, which the host "
                   "completes by asking a domain controller (MS-APDS 3.1); isolation would block that and lock "
                   "the agent out. Set options.domain_controllers (kept open on Kerberos/LDAP/Netlogon ports) "
                   "or use transport kerberos (the ticket is checked on the host)",
                   detail={"field": "domain_controllers"})


def _saved_from(state: dict[str, Any]) -> dict[str, Any]:
    return {"dialect": state["dialect"], "profiles": state["profiles"], "rules": state["rules"]}


def refuse_gpo_overrides(sess: WinRMSession, state: dict[str, Any]) -> None:
    """Refuse (permanently, before any change) when Group Policy would make local isolation rules not hold."""
    conflicts = gpo_conflicts(state)
    if conflicts:
        raise Rejected(f"cannot isolate {sess.target.name} with local firewall rules: {'; '.join(conflicts)}. "
                       "Isolate it through the GPO (or an EDR) instead, or let the GPO merge local rules "
                       "(see docs/windows.md)", detail={"gpo_conflicts": conflicts})


def snapshot_isolate(sess: WinRMSession) -> Snapshot:
    """Profiles and existing group rules, as data ``undo`` and the dead-man script can restore."""
    state = firewall.read_state(sess, firewall.detect_dialect(sess))
    plan = plan_for(sess, state)
    refuse_gpo_overrides(sess, state)
    refuse_unreachable_reauth(sess, state)
    already = not isolation_gaps(state["effective"], plan)
    data = _saved_from(state)
    data.update(already_isolated=already, management_addresses=list(plan.management))
    if already and state.get("saved"):
        data["saved_on_host"] = state["saved"]
    return Snapshot(data)


def apply_isolate(sess: WinRMSession, snapshot: Snapshot) -> ActionResult:
    """Dead-man first, then the rule group and profiles, then verify over a fresh connection, then confirm."""
    dialect = firewall.detect_dialect(sess)
    state = firewall.read_state(sess, dialect)
    plan = plan_for(sess, state)
    refuse_gpo_overrides(sess, state)
    refuse_unreachable_reauth(sess, state)
    if not isolation_gaps(state["effective"], plan):
        return ActionResult(False, f"{sess.target.name} already isolated (group {GROUP} in place)",
                            {"dialect": dialect, "rules": plan.rule_names})
    saved = snapshot.data if snapshot.data.get("profiles") else _saved_from(state)
    saved = {k: saved[k] for k in ("dialect", "profiles", "rules")}
    minutes = sess.settings.deadman_minutes
    revert = firewall.revert_script(dialect, plan, saved)
    when = sess.run_checked(firewall.register_deadman_script(revert, minutes), what="register dead-man task").strip()
    existing = [str(r["Name"]) for r in state["rules"]]
    try:
        sess.run_checked(firewall.apply_script(dialect, plan, existing, saved), what="apply isolation")
    except Rejected as exc:
        raise _stopped_part_way(sess, dialect, state, exc, "isolation") from exc
    try:
        sess.reconnect()
        after = firewall.read_state(sess, dialect)
    except (Unreachable, AuthError) as exc:
        raise VerifyFailed(f"isolation applied but the agent cannot reach {sess.target.name} over a new "
                           f"connection ({exc.message}); the dead-man task {TASK_NAME} will revert it "
                           f"at {when} (host time)", detail={"deadman_revert_at": when}) from exc
    gaps = isolation_gaps(after["effective"], plan)
    if gaps:
        raise VerifyFailed(f"isolation not in effect after applying: {'; '.join(gaps)}; the dead-man task "
                           f"will revert at {when} (host time)", detail={"gaps": gaps, "deadman_revert_at": when})
    sess.run_checked(firewall.delete_deadman_script(), what="cancel dead-man task")
    warnings = ["all other traffic is blocked both ways, including DNS and DHCP"]
    if state.get("state_dir_untrusted"):
        warnings.append(f"{STATE_DIR} existed but was not trusted (owner or ACL not SYSTEM/Administrators only): "
                        "moved aside as .untrusted-<ticks> for the investigation and recreated")
    return ActionResult(True, f"{sess.target.name} isolated: only {', '.join(plan.management)} reach WinRM "
                              f"{sess.settings.port}" + (" and RDP" if sess.settings.allow_rdp else ""),
                        {"dialect": dialect, "rules": plan.rule_names, "management": list(plan.management),
                         "deadman": {"task": TASK_NAME, "minutes": minutes, "revert_at": when,
                                     "registered_before_apply": True, "deleted_after_verify": True}},
                        warnings)


def _observed(state: dict[str, Any]) -> dict[str, Any]:
    return {"dialect": state["dialect"], "rules": [r["Name"] for r in state["rules"]],
            "profiles": [{k: p[k] for k in ("Name", "Enabled", "DefaultInboundAction", "DefaultOutboundAction")}
                         for p in state["profiles"]],
            "deadman_task": state["deadman_task"], "reverted_by_deadman": state["reverted_by_deadman"],
            "reverted_at": state["reverted_at"]}


def verify_isolate(sess: WinRMSession) -> Verification:
    """Read rules and profiles back; says so when the dead-man task freed the host."""
    state = firewall.read_state(sess, firewall.detect_dialect(sess))
    plan = plan_for(sess, state)
    gaps = isolation_gaps(state["effective"], plan) + gpo_conflicts(state)
    observed = _observed(state) | {"gaps": gaps}
    if not gaps:
        return Verification(True, f"{sess.target.name} isolated ({len(plan.rules)} rules in {GROUP})", observed)
    left = set(plan.rule_names) & {str(r["Name"]) for r in state["rules"]}
    if not left and state["reverted_by_deadman"]:
        return Verification(False, f"isolation of {sess.target.name} was reverted by the dead-man task at "
                                   f"{state['reverted_at']} (the agent did not confirm in time)", observed)
    return Verification(False, f"{sess.target.name} not isolated: {'; '.join(gaps)}", observed)


def _restore(sess: WinRMSession, saved: dict[str, Any], state: dict[str, Any]) -> ActionResult:
    dialect = state["dialect"]
    current = [str(r["Name"]) for r in state["rules"]]
    if profiles_equal(state["profiles"], saved["profiles"]) and \
            sorted(current) == sorted(str(r["Name"]) for r in saved["rules"]) and not state["deadman_task"]:
        return ActionResult(False, f"{sess.target.name} not isolated; nothing to undo", {"dialect": dialect})
    if state["deadman_task"]:
        sess.run_checked(firewall.delete_deadman_script(), what="cancel dead-man task")
    try:
        sess.run_checked(firewall.undo_script(dialect, current, saved), what="release isolation")
    except Rejected as exc:
        raise _stopped_part_way(sess, dialect, state, exc, "release") from exc
    after = firewall.read_state(sess, dialect)
    names_after = sorted(str(r["Name"]) for r in after["rules"])
    if not profiles_equal(after["profiles"], saved["profiles"]) or \
            names_after != sorted(str(r["Name"]) for r in saved["rules"]):
        raise VerifyFailed(f"release did not restore {sess.target.name}: profiles or rules differ from the "
                           "snapshot", detail={"observed": _observed(after)})
    return ActionResult(True, f"{sess.target.name} released: group {GROUP} removed, profiles restored",
                        {"dialect": dialect, "profiles": saved["profiles"],
                         "restored_rules": [r["Name"] for r in saved["rules"]]})


def _stopped_part_way(sess: WinRMSession, dialect: str, state: dict[str, Any], exc: Rejected,
                      what: str) -> ConnectorError:
    """The isolation or release script (``what``) ended with an error. PowerShell runs it line by line and keeps
    what ran before the error (the group's rules written or removed, the profiles not yet set), so unless the
    host reads exactly as ``state`` (before the script), this is no refusal: a plain error the runner settles by
    reading the host (then in doubt, and applied once / completed from the journaled snapshot when re-verified —
    for the release: ``ActionSpec.undo_in_parts``)."""
    try:
        now = firewall.read_state(sess, dialect)
    except ConnectorError:
        now = None
    if now is not None and profiles_equal(now["profiles"], state["profiles"]) and \
            sorted(str(r["Name"]) for r in now["rules"]) == sorted(str(r["Name"]) for r in state["rules"]):
        return exc  # nothing of it took effect: the host refused it
    return ConnectorError(f"{what} of {sess.target.name} stopped part-way ({exc.message}); what ran before "
                          "the error stays on the host", detail={**exc.detail, "stopped_part_way": True})


def undo_isolate(sess: WinRMSession, snapshot: Snapshot) -> ActionResult:
    """Restore exactly what the snapshot recorded (nothing, if the host was already isolated then)."""
    if snapshot.data.get("already_isolated"):
        return ActionResult(False, f"{sess.target.name} was already isolated before this action; left as is")
    state = firewall.read_state(sess, firewall.detect_dialect(sess))
    saved = {"profiles": snapshot.data.get("profiles", []), "rules": snapshot.data.get("rules", [])}
    return _restore(sess, saved, state)
