"""The text that loads the isolation and the text that undoes it, as apply, the dead-man timer and the boot unit
send them (one place, so the three can never disagree)."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.ssh_linux import deadman, persist, rules
from connectors.ssh_linux.state import FirewallState
from connectors.ssh_linux.validation import IsolateArgs

__all__ = ["ipv6_names", "load_command", "load_parts", "revert_script"]


def revert_script(tool: str, ipv6_before: Mapping[str, str] | None = None) -> str:
    """What undoes our change on the host (also what the dead-man timer runs). ``ipv6_before``: the
    ``disable_ipv6`` values recorded before isolation on an iptables host without ip6tables."""
    if tool == "nft":
        return f"{persist.remove_script()}; {rules.NFT_RELEASE}"
    text = f"{persist.remove_script()}; {rules.IPTABLES_RELEASE}"
    if ipv6_before:
        text += "; " + rules.ipv6_set_script(ipv6_names(ipv6_before), ipv6_before)
    return text


def ipv6_names(sysctls: Mapping[str, str]) -> list[str]:
    """Interfaces whose disable_ipv6 the fallback sets, plus ``default`` (interfaces created later)."""
    return rules.ipv6_interfaces(sysctls) + (["default"] if "default" in sysctls else [])


def load_command(st: FirewallState, a: IsolateArgs, token: str, expect: str, ipv6_before: Mapping[str, str],
                 priv_def: str, reload_rules: bool = True) -> tuple[str, str]:
    """(command, stdin) that, under the host's lock, arms our timer (compare-and-swap on ``expect``) and loads
    the ruleset. The ruleset is read from stdin *before* the lock is taken, so a dead network can never leave
    the lock held by a half-received command."""
    load, stdin = load_parts(st, a, ipv6_before)
    if not reload_rules:
        load = "true"
    body = load
    if a.confirm_seconds:
        arm = deadman.arm_command(a.confirm_seconds, revert_script(st.tool, ipv6_before), token,
                                  deadman.owner_id(), expect, priv_def)
        body = arm + body
    return "rs=$(cat) || exit 1; " + deadman.locked(body), stdin


def load_parts(st: FirewallState, a: IsolateArgs, ipv6_before: Mapping[str, str]) -> tuple[str, str]:
    """(commands that load the ruleset held in ``$rs`` through ``priv``, the ruleset text): what apply runs
    under the lock and what the boot unit (:mod:`.persist`) runs at boot."""
    if st.tool == "nft":
        return 'printf "%s\\n" "$rs" | ' + rules.NFT_LOAD, rules.nft_script(a.management, a.ssh_port, a.allow)
    parts = []
    for version in (4, 6):
        text = rules.iptables_restore(a.management, a.ssh_port, version, missing_jumps=(), allow=a.allow)
        parts.append(text.replace("COMMIT\n", ""))
    stdin = parts[0] + "@@V6\n" + parts[1]
    # Jumps are inserted only where ``iptables -C`` finds none (re-running -I blindly duplicates them, LAB.md).
    load = ('b4=${rs%%@@V6*}; b6=${rs#*@@V6}; for t in iptables ip6tables; do '
            'command -v $t >/dev/null 2>&1 || continue; if [ $t = iptables ]; then b=$b4; else b=$b6; fi; '
            'j=; for p in INPUT:CAGENT_IN OUTPUT:CAGENT_OUT FORWARD:CAGENT_FWD; do bb=${p%%:*}; c=${p#*:}; '
            'priv $t -w -C $bb -j $c 2>/dev/null || j="$j-I $bb 1 -j $c\n"; done; '
            'printf "%s\\n${j}COMMIT\\n" "$b" | priv $t-restore -w --noflush || exit 95; done')
    if not st.has_ip6tables and ipv6_before:
        names = ipv6_names(ipv6_before)
        load += "; " + rules.ipv6_set_script(names, dict.fromkeys(names, "1"))
    return load, stdin
