"""Isolate / verify / release a Linux host: nftables when present, iptables otherwise.

apply = arm the dead-man timer → load the ruleset atomically → cut live flows → prove a *fresh* management
connection still works → cancel the timer. If the fresh connection fails, the timer frees the host by itself and
the action fails with that explanation (the management path must never be cut for good).
release = remove only our table/chains, cancel any timer, and compare the ruleset with the snapshot exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import ConnectorError, VerifyFailed
from connectors.linux_ssh import rules
from connectors.linux_ssh.session import SshSession
from connectors.types import ActionResult, ConnectorContext, Snapshot, Target, Verification

__all__ = ["apply", "plan_args", "preview", "release", "snapshot", "verify"]

_PROBE = ("if command -v nft >/dev/null 2>&1; then echo TOOL=nft; nft list ruleset; "
          "else echo TOOL=iptables; iptables-save; echo @@V6@@; ip6tables-save 2>/dev/null; fi; "
          f"echo @@MARK@@; cat {rules.REVERTED_MARK} 2>/dev/null; true")


def plan_args(target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> tuple[list[Any], int, int]:
    mgmt = args.get("management") or list(ctx.management_addresses)
    addrs, port = rules.management(list(mgmt), args.get("ssh_port", target.port or 22))
    seconds = args.get("confirm_seconds", ctx.confirm_timeout)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 5 <= seconds <= 86400:
        from connectors.errors import InvalidInput
        raise InvalidInput(f"confirm_seconds: {seconds!r} must be an integer between 5 and 86400")
    return addrs, port, seconds


def preview(target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
    addrs, port, seconds = plan_args(target, args, ctx)
    return [
        f"ssh {target.address}: snapshot `nft list ruleset` (or iptables-save when nft is missing)",
        f"arm dead-man timer: revert in {seconds}s unless the agent confirms over a fresh connection",
        "nft -f - <<EOF\n" + rules.nft_ruleset(addrs, port) + "EOF",
        "fallback without nft: iptables-restore --noflush <<EOF\n" + rules.iptables_rules(addrs, port, 4) + "EOF"
        + f"\n  then {rules.iptables_jumps('iptables')} (and the same for ip6tables)",
        "cut live flows: " + rules.cut_flows(addrs, port),
        "confirm over a fresh SSH connection, then cancel the dead-man timer",
    ]


def _state(s: SshSession) -> tuple[str, str, str, str]:
    """(tool, ruleset, ip6 ruleset for iptables, dead-man revert mark) in one round trip."""
    _, out, _ = s.run(_PROBE, what="ruleset snapshot")
    out, _, mark = out.partition("@@MARK@@\n")
    head, _, body = out.partition("\n")
    tool = head.removeprefix("TOOL=").strip()
    v4, _, v6 = body.partition("@@V6@@\n")
    return tool, v4, v6, mark.strip()


def snapshot(s: SshSession, args: Mapping[str, Any]) -> Snapshot:
    tool, v4, v6, _ = _state(s)
    present = _present(tool, v4)
    return Snapshot({"tool": tool, "ruleset": v4, "ruleset_v6": v6, "containment_present": present})


def _present(tool: str, ruleset: str) -> bool:
    if tool == "nft":
        return f"table {rules.TABLE} {{" in ruleset
    return "-A INPUT -j CONTAIN_IN" in ruleset


def _expected_ok(tool: str, text: str, addrs: list[Any], port: int) -> bool:
    if tool == "nft":
        needed = ["policy drop", f"tcp dport {port} accept", f"tcp sport {port} accept"]
        needed += [f"saddr {a}" for a in addrs]
        return f"table {rules.TABLE} {{" in text and all(n in text for n in needed) and "ct state" not in text
    needed = ["-A INPUT -j CONTAIN_IN", "-A OUTPUT -j CONTAIN_OUT", "-A FORWARD -j CONTAIN_FWD",
              "-A CONTAIN_IN -j DROP", "-A CONTAIN_OUT -j DROP"]
    return all(n in text for n in needed)


def apply(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    addrs, port, seconds = plan_args(s.target, args, s.ctx)
    tool = snap.data["tool"]
    if snap.data.get("containment_present") and _expected_ok(tool, snap.data["ruleset"], addrs, port):
        return ActionResult(changed=False, summary=f"already isolated ({tool}); nothing changed",
                            details={"tool": tool})
    # one round trip: arm the dead-man timer, apply atomically (stop on failure), then cut live flows
    cut = rules.cut_flows(addrs, port)
    if tool == "nft":
        script = f"{rules.deadman_arm(seconds, rules.nft_release())}\nnft -f - || exit $?\n{cut}"
        _, out, _ = s.run(script, input=rules.nft_ruleset(addrs, port), what="nft transaction")
    else:
        script = (f"{rules.deadman_arm(seconds, rules.iptables_release())}\n"
                  f"iptables-restore --noflush <<'__V4__' || exit $?\n{rules.iptables_rules(addrs, port, 4)}__V4__\n"
                  f"{rules.iptables_jumps('iptables')}\n"
                  "if command -v ip6tables-restore >/dev/null 2>&1; then "
                  f"ip6tables-restore --noflush <<'__V6__'\n{rules.iptables_rules(addrs, port, 6)}__V6__\n"
                  f"{rules.iptables_jumps('ip6tables')}\nelse echo NO_IP6TABLES; fi\n{cut}")
        _, out, _ = s.run(script, what="iptables-restore")
    warnings = []
    if "NO_IP6TABLES" in out:
        warnings.append("ip6tables is missing on this host: IPv6 traffic is NOT blocked")
    flows = out.strip().rpartition("CUT=")[2].strip() or "0"
    try:
        s.reconnect_check()
    except ConnectorError as exc:
        raise VerifyFailed(f"isolation applied but a fresh management connection failed ({exc.message}); the "
                           f"host will revert by itself within {seconds}s") from exc
    s.run(rules.deadman_cancel(), what="cancel dead-man timer")
    kept = ", ".join(str(a) for a in addrs)
    return ActionResult(
        changed=True,
        summary=f"isolated with {tool}; kept {kept} on tcp/{port}; {flows} live connection(s) cut; "
                "dead-man timer cancelled after a fresh connection",
        details={"tool": tool, "management": [str(a) for a in addrs], "ssh_port": port, "flows_cut": int(flows)
                 if flows.isdigit() else flows, "deadman_seconds": seconds},
        warnings=warnings)


def verify(s: SshSession, args: Mapping[str, Any]) -> Verification:
    addrs, port, _ = plan_args(s.target, args, s.ctx)
    tool, v4, _, mark = _state(s)
    present = _present(tool, v4)
    ok = present and _expected_ok(tool, v4, addrs, port)
    observed: dict[str, Any] = {"tool": tool, "containment_present": present}
    if mark.strip():
        observed["reverted_by_deadman_at"] = mark.strip()
    if ok:
        return Verification(True, f"isolation rules present ({tool}); management {', '.join(map(str, addrs))} "
                                  f"reachable on tcp/{port}", observed)
    why = "isolation rules incomplete" if present else "no isolation rules"
    if mark.strip() and not present:
        why += f" (the dead-man timer reverted it at {mark.strip()})"
    return Verification(False, f"{why} ({tool})", observed)


def release(s: SshSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    tool, v4, v6, _ = _state(s)
    if not _present(tool, v4) and (tool != "nft" or f"table {rules.TABLE}" not in v4):
        s.run(rules.deadman_cancel(), check=False, what="cancel dead-man timer")
        return ActionResult(changed=False, summary="not isolated; nothing to release", details={"tool": tool})
    s.run(rules.deadman_cancel() + "; " + (rules.nft_release() if tool == "nft" else rules.iptables_release()),
          what="remove isolation")
    tool, v4, v6, _ = _state(s)
    before = rules.normalise(snap.data.get("ruleset", ""))
    if snap.data.get("containment_present"):
        return ActionResult(True, f"isolation removed ({tool}); the snapshot already contained it, "
                                  "so only the agent's table was removed", details={"tool": tool})
    if rules.normalise(v4) != before or (tool != "nft" and
                                          rules.normalise(v6) != rules.normalise(snap.data.get("ruleset_v6", ""))):
        raise VerifyFailed("ruleset after release differs from the snapshot taken before isolation",
                           detail={"expected": before[-2000:], "found": rules.normalise(v4)[-2000:]})
    return ActionResult(True, f"released; ruleset identical to the snapshot ({tool})", details={"tool": tool})
