"""``survive_reboot`` during apply (issue 14): refuse what cannot hold a boot unit, and make the unit match the
confirmed isolation. What is written and why: :mod:`.persist`."""

from __future__ import annotations

from typing import Any

from connectors.errors import Rejected
from connectors.ssh_linux import deadman, persist, rules
from connectors.ssh_linux.loading import load_parts
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.state import FirewallState
from connectors.ssh_linux.validation import IsolateArgs

__all__ = ["boot_text", "refuse_boot_unit", "settle"]


def refuse_boot_unit(st: FirewallState, s: SshSession) -> None:
    """``survive_reboot`` needs systemd's unit directory and no foreign file at our paths (:mod:`.persist`)."""
    if not st.persist.systemd:
        raise Rejected(f"survive_reboot: {s.target.address} has no /etc/systemd/system (not a systemd host), so no "
                       "boot unit can re-apply the isolation; nothing was changed (isolate without survive_reboot)",
                       target=s.label)
    if st.persist.foreign:
        raise Rejected(f"survive_reboot: {', '.join(st.persist.foreign)} already exist(s) on {s.target.address} and "
                       "is not the agent's (no ownership mark): refusing to overwrite it; nothing was changed",
                       target=s.label, detail={"foreign": list(st.persist.foreign)})


def boot_text(st: FirewallState, a: IsolateArgs) -> str:
    """The boot script for the isolation ``a`` on a host like ``st`` (:mod:`.persist`)."""
    v6 = st.ipv6_sysctls if st.tool != "nft" and not st.has_ip6tables else {}
    load, ruleset = load_parts(st, a, v6)
    return persist.boot_script(load, ruleset)


def _table_check(tool: str) -> str:
    return f"priv nft list table {rules.TABLE}" if tool == "nft" else "priv iptables -w -S CAGENT_IN"


def settle(s: SshSession, st: FirewallState, a: IsolateArgs, token: str, details: dict[str, Any],
           warnings: list[str]) -> bool:
    """After a confirmed isolation: make the boot unit match it — installed (``survive_reboot``) or absent.
    Returns True when something was written or removed."""
    if not a.survive_reboot:
        if not st.persist.installed:
            return False
        s.run(deadman.locked(persist.remove_script()), timeout=10, check=True, what="remove the boot unit")
        details["boot_unit_removed"] = sorted(st.persist.found)
        return True
    boot = boot_text(st, a)
    want = persist.expected(boot)
    record = {"unit": persist.UNIT, "boot_script": persist.BOOT_SCRIPT, "enabled_by": persist.WANTS,
              "boot_script_sha256": want[persist.BOOT_SCRIPT]}
    if not st.persist.problems(want):
        details["survives_reboot"] = {**record, "installed": "already"}
        return False
    rc, out, err = s.run(persist.install_command(token, _table_check(st.tool)), input=persist.install_stdin(boot),
                         timeout=20, what="install the boot unit that re-applies the isolation")
    if rc == 0 and "PERSIST=installed" in out:
        details["survives_reboot"] = {**record, "installed": "now"}
        if not st.persist.booted:
            warnings.append(f"{s.target.address} is not running systemd now (no /run/systemd/system): the boot "
                            "unit re-applies the isolation only if the host boots with systemd")
        return True
    why = (out.strip() or err.strip())[-300:]
    details["survives_reboot"] = {**record, "installed": "no", "why": why}
    if rc == 0 and "PERSIST=skipped absent" in out:
        warnings.append(f"{persist.UNIT_NAME} not written: the isolation was lifted (released) meanwhile")
    elif rc == 0 and "PERSIST=skipped timer" in out:
        warnings.append(f"{persist.UNIT_NAME} not written: another run's unconfirmed isolation is in flight "
                        f"({why}); the next contain writes it")
    else:
        warnings.append(f"the isolation is in force but will NOT survive a reboot: installing {persist.UNIT} "
                        f"failed (exit {rc}): {why}")
    return False
