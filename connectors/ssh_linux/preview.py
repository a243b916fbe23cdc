"""The isolate action's preview: every command the connector would send to one host, exactly as it sends it.

Why a module of its own, and why memoized: the daemon records a dry-run plan for every alert a rehearsal rule
matches, and the preview is most of that record (~17 KB of shell). The text depends only on the parsed arguments,
the privilege mode and this agent's dead-man owner id — never on the host's name or address — so the host is named
once, in the first line, and the rest is rendered once per distinct input (a bounded LRU) and shared. Identical
string objects then also hit the audit redactor's memo (:func:`agent.audit.redact.redact_text`), so a storm of
rehearsals for many hosts does not re-render, re-scan and re-redact the same script text per alert. A memoized
preview is equal to a fresh one (tested), and what is sent is built by the same functions (:mod:`.loading`,
:mod:`.deadman`, :mod:`.persist`, :mod:`.flows`, :mod:`.state`).
"""

from __future__ import annotations

import functools

from connectors.ssh_linux import deadman, flows, loading, persist, reboot
from connectors.ssh_linux.privilege import ENV, Privilege, prelude, priv_definition
from connectors.ssh_linux.hostfuncs import READ_STATE
from connectors.ssh_linux.state import FirewallState, then_read_script
from connectors.ssh_linux.validation import IsolateArgs

__all__ = ["TOKEN_PLACEHOLDER", "isolate_preview"]

TOKEN_PLACEHOLDER = "<token of this action, journaled in its snapshot>"
_ZERO = "0" * 32


def isolate_preview(address: str, port: int | None, a: IsolateArgs, privilege: Privilege) -> list[str]:
    """The preview lines for isolating the host at ``address:port``: the connection and the prelude every
    command starts with, then each command in the order it is sent."""
    return [f"ssh {address}:{port or 22}: every command below is sent over this connection",
            *_commands(a, privilege, deadman.owner_id())]


@functools.lru_cache(maxsize=64)
def _commands(a: IsolateArgs, privilege: Privilege, owner: str) -> tuple[str, ...]:
    """The host-independent lines (``owner`` is in the key because the dead-man script embeds it; the builders
    read it themselves and get the same value in this process)."""
    out = [f"every command starts with: {ENV}{prelude(privilege)}",
           (f"read state (tool, ruleset snapshot, live dead-man timer, SSH_CONNECTION must come "
            f"from a management address): {READ_STATE}")]
    for tool in ("nft", "iptables"):
        st = FirewallState(tool=tool, ruleset="")
        cmd, stdin = loading.load_command(st, a, _ZERO, "", {}, priv_definition(privilege))
        what = "under the host's lock, arm the dead-man timer and load" if a.confirm_seconds else "load"
        cond = "" if tool == "nft" else (" (hosts without nft; without ip6tables IPv6 is switched off per "
                                         "interface with sysctl disable_ipv6, recorded for undo)")
        out.append(f"{what} ({tool}){cond}: {cmd.replace(_ZERO, TOKEN_PLACEHOLDER)} <<'EOF'\n{stdin}EOF")
    if a.cut_sessions:
        out.append(f"cut live flows and read the rules back: "
                   f"{then_read_script(flows.cut_command(a.management, a.ssh_port))}; then conntrack -D for "
                   "each tracked non-management flow")
    else:
        out.append(f"read the rules back: {READ_STATE}")
    confirm = (deadman.confirm_command(_ZERO).replace(_ZERO, TOKEN_PLACEHOLDER) if a.confirm and a.confirm_seconds
               else "true")
    out.append(f"meanwhile open a fresh connection; once the rules read back right, run through it: "
               f"{then_read_script(confirm)}")
    if not a.survive_reboot:  # reboot.settle: an isolation that survived reboots earlier left our boot unit
        out.append(f"once confirmed, only if the agent's boot unit is present (left by an isolation with "
                   f"survive_reboot), remove it: {deadman.locked(persist.remove_script())}")
    if a.survive_reboot:
        for tool in ("nft", "iptables"):
            boot = reboot.boot_text(FirewallState(tool=tool, ruleset=""), a)
            out.append(f"once confirmed ({tool}), write and enable the boot unit: "
                       f"{persist.install_command(_ZERO, '…').replace(_ZERO, TOKEN_PLACEHOLDER)} <<'EOF'\n"
                       f"{persist.install_stdin(boot)}EOF")
    out.append(f"verify: the state the fresh connection read right after that (if anything was sent since: "
               f"{READ_STATE})")
    return tuple(out)
