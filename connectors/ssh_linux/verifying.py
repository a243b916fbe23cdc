"""verify for isolate: the rules read back from the host, the dead-man timer, the boot unit and — with
``probe_from`` — the proof from outside (:mod:`.outside`). The read is the one apply/release made last on the
session when nothing was sent since (see :func:`verify`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.ssh_linux import outside, persist, rules
from connectors.ssh_linux.isolate import REUSE_STATE_SECONDS, through_jump, isolate_args, rule_summary
from connectors.ssh_linux.reboot import boot_text
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.state import judge, read_state
from connectors.types import Verification

__all__ = ["verify"]


def verify(s: SshSession, args: Mapping[str, Any]) -> Verification:
    a = isolate_args(args, s.ctx, s.target)
    # The state apply or release read back as their last step (isolation: through the fresh connection, after
    # the timer was cancelled) when it is this fresh and nothing was sent on this session since: a read from the
    # target after the change, so reading it again would cost a channel, a shell and two nft runs per host and
    # tell nothing new (issue 19). Anything sent in between (the boot unit, a revert) means a new read.
    st = read_state(s, reuse_within=REUSE_STATE_SECONDS)
    a = through_jump(s, st, a)
    problems = judge(st, a.management, a.ssh_port, a.allow)
    observed: dict[str, Any] = {"tool": st.tool, "present": st.present, "rules": rule_summary(st),
                                "deadman_armed_pid": st.deadman_pid}
    if a.survive_reboot:
        boot_problems = st.persist.problems(persist.expected(boot_text(st, a)))
        observed["survives_reboot"] = not boot_problems
        problems += [f"will not survive a reboot: {p}" for p in boot_problems]
    elif st.persist.installed:
        observed["boot_unit"] = f"{persist.UNIT} re-applies an isolation at boot"
    if st.timer is not None:
        observed["deadman"] = {"owner": st.timer.owner, "reverts_in_seconds": st.timer.remaining,
                               "token": st.timer.token}
    if st.deadman_reverted_at:
        observed["deadman_reverted_at"] = st.deadman_reverted_at
    if st.tool != "nft" and not st.has_ip6tables:
        observed["ipv6"] = ("ip6tables missing: IPv6 switched off per interface" if not st.ipv6_open else
                            f"ip6tables missing: IPv6 open on {', '.join(st.ipv6_open)}")
    if st.foreign:
        observed["foreign"] = st.foreign
    if not problems and st.timer is not None and a.confirm:
        observed["problems"] = ["unconfirmed: a dead-man timer is armed"]
        return Verification(False, f"isolation rules loaded but NOT confirmed: the dead-man timer of "
                                   f"{st.timer.owner} lifts them in {st.timer.remaining} s", observed)
    if not problems:
        seen = outside.probe(s, st.agent_server_address, a.ssh_port, a.management)
        if seen is not None:
            observed["outside_probe"] = seen
            reached = {p: v for p, v in seen["ports"].items() if v in ("open", "refused")}
            if reached:
                observed["problems"] = [f"from {seen['from']}: port {p} {v}" for p, v in reached.items()]
                return Verification(False, f"rules in place but the host is NOT isolated as seen from "
                                           f"{seen['from']}: {'; '.join(observed['problems'])}", observed)
        reboot = "; survives a reboot" if a.survive_reboot else ""
        proof = ""
        if seen is not None and seen.get("error"):
            proof = f"; outside probe failed: {seen['error']}"
        elif seen is not None and seen["ports"]:
            proof = f"; from {seen['from']} tcp/{','.join(seen['ports'])} time out"
        return Verification(True, f"isolated ({st.tool}{proof}{reboot}): only tcp/{a.ssh_port} with "
                                  f"{', '.join(rules.net_text(n) for n in a.management)}", observed)
    observed["problems"] = problems
    if not st.present:
        why = f"not isolated ({st.tool}: no containment rules)"
        if st.deadman_reverted_at:
            why += f"; the dead-man timer reverted it at {st.deadman_reverted_at}"
        return Verification(False, why, observed)
    return Verification(False, f"containment rules present but not as expected: {'; '.join(problems)[:300]}",
                        observed)
