"""Release a Linux host's isolation exactly (the undo of :mod:`.isolate`).

Under the host's lock (:mod:`.deadman`), cancel any timer, remove the boot unit and only our table / chains and
jumps, restore IPv6 sysctls, and read the ruleset back (one round trip); it must equal the snapshot taken before
isolating, and any difference is stated. Kept apart from :mod:`.isolate` because releasing shares nothing with
the arm/load/confirm sequence but the state reader and the foreign-table guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import VerifyFailed
from connectors.ssh_linux import deadman, persist, rules
from connectors.ssh_linux.isolate import REUSE_STATE_SECONDS, refuse_foreign, rule_summary
from connectors.ssh_linux.loading import ipv6_names, revert_script
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.state import empty_tables_added, normalise, read_state, ruleset_diff, run_then_read
from connectors.types import ActionResult, Snapshot

__all__ = ["release"]


def lines_gone(before: str, after: str) -> list[str]:
    """Normalised ruleset lines ``before`` had that ``after`` lacks (as a multiset: a rule present twice and now
    once counts). Only these can have been caused by a release, which deletes and never adds."""
    from collections import Counter
    missing = Counter(normalise(before).splitlines()) - Counter(normalise(after).splitlines())
    return sorted(missing.elements())


def release(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    """Undo an isolation exactly; the ruleset read back must equal the journaled snapshot (differences stated)."""
    st = read_state(s, reuse_within=REUSE_STATE_SECONDS)
    refuse_foreign(st, s)
    ipv6_before = dict(snap.data.get("ipv6_sysctls") or {})
    ipv6_changed = any(st.ipv6_sysctls.get(n) != ipv6_before[n] for n in ipv6_names(ipv6_before))
    if not st.present and not ipv6_changed and not st.persist.installed:
        if st.timer is None:
            return ActionResult(False, "not isolated; nothing to release", details={"tool": st.tool})
        s.run(deadman.locked(deadman.cancel_any_command()), timeout=10, what="cancel dead-man timer")
        return ActionResult(False, "not isolated; cancelled a pending dead-man timer", details={"tool": st.tool})
    _, after = run_then_read(s, deadman.locked(deadman.cancel_any_command() + revert_script(st.tool, ipv6_before)),
                             what="remove containment rules and read the ruleset back")
    if after.present:
        raise VerifyFailed(f"containment rules still present after release: {rule_summary(after)}",
                           target=s.label)
    if after.persist.installed:
        raise VerifyFailed(f"the boot unit is still there after release: {'; '.join(after.persist.problems(None))}",
                           target=s.label)
    details: dict[str, Any] = {"tool": after.tool}
    if st.persist.installed:
        details["boot_unit_removed"] = sorted(st.persist.found)
    if snap.data.get("containment_present") or "ruleset" not in snap.data:
        return ActionResult(True, f"released ({after.tool}); the snapshot already held isolation rules, so the "
                                  "ruleset was not compared", details=details,
                            warnings=["ruleset not compared with the snapshot"])
    diff = ruleset_diff(snap.data["ruleset"], after.ruleset)
    gone = lines_gone(snap.data["ruleset"], after.ruleset)
    if after.tool != "nft" and snap.data.get("ip6tables", True):
        diff += ruleset_diff(snap.data.get("ruleset6", ""), after.ruleset6)
        gone += lines_gone(snap.data.get("ruleset6", ""), after.ruleset6)
    warnings: list[str] = []
    if gone:  # a line the host had before is missing: the release may have deleted it — not trusted
        raise VerifyFailed("ruleset after release differs from the snapshot: " + " | ".join(diff)[:900],
                           target=s.label, detail={"diff": diff})
    if diff:  # only lines added since the snapshot, every part of ours gone: added by someone else meanwhile
        details["added_while_contained"] = diff
        warnings.append("the host gained rules while it was contained that the agent did not add (a release "
                        "only deletes) — review them: an intruder's, or fail2ban's, Docker's…: "
                        + " | ".join(line for line in diff if line.startswith("+") and not line.startswith("+++")
                                     )[:600])
    if after.tool != "nft":
        empty = [f"ip {t}" for t in empty_tables_added(snap.data["ruleset"], after.ruleset)]
        if snap.data.get("ip6tables", True):
            empty += [f"ip6 {t}" for t in empty_tables_added(snap.data.get("ruleset6", ""), after.ruleset6)]
        if empty:
            details["empty_tables_left"] = empty
            warnings.append(f"iptables-nft created empty table(s) {', '.join(empty)} (no rules, ACCEPT policies: "
                            "they filter nothing) that were absent before; no iptables command can delete them "
                            "(`nft delete table ...` where nft is installed)")
    if ipv6_before:
        details["ipv6_restored"] = {n: after.ipv6_sysctls.get(n) for n in rules.ipv6_interfaces(ipv6_before)}
        wrong = [n for n, v in details["ipv6_restored"].items() if v != ipv6_before.get(n)]
        if wrong:
            raise VerifyFailed(f"disable_ipv6 not restored on {', '.join(wrong)}", target=s.label)
    details["ruleset_equal_to_snapshot"] = not warnings
    details["normalised_lines"] = len(normalise(after.ruleset).splitlines())
    summary = (f"released ({after.tool}); ruleset equals the snapshot" if not diff else
               f"released ({after.tool}); ruleset equals the snapshot plus rules added by others while contained")
    if st.persist.installed:
        summary += f"; boot unit {persist.UNIT_NAME} removed"
    if details.get("empty_tables_left"):
        summary += f" except empty table(s) {', '.join(details['empty_tables_left'])} left by iptables-nft"
    return ActionResult(True, summary, details=details, warnings=warnings)
