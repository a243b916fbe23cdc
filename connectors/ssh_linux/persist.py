"""Isolation that survives a reboot (issue 14): a systemd unit that re-applies the agent's ruleset at boot.

Why a dedicated unit and not a line in /etc/nftables.conf: Debian's and RHEL's nftables.conf start with
``flush ruleset`` and nftables.service is often disabled; firewalld and ufw hosts do not use it at all. A unit of
our own is one file the agent owns outright, ordered where a firewall belongs: systemd.special(7) on
``network-pre.target``: "This passive target unit may be pulled in by services that want to run before any
network is set up, for example for the purpose of setting up a firewall." It runs *after* the units that load a
ruleset at boot (nftables.service flushes everything; firewalld with the iptables backend and ufw rewrite the
iptables tables), so nothing loaded later at boot replaces ours.

What is written, only after the isolation was confirmed through a fresh connection (an unconfirmed isolation
that survived a reboot could lock the agent out for good: the dead-man timer dies with the reboot):

- :data:`BOOT_SCRIPT` — a POSIX sh script holding the exact ruleset that was loaded and the same load commands
  (so what boot applies is what verify expects);
- :data:`UNIT` — ``Type=oneshot`` running ``/bin/sh BOOT_SCRIPT``, ``WantedBy=multi-user.target``;
- :data:`WANTS` — the symlink ``systemctl enable`` would create (made directly, so no running systemd is needed
  and the sudoers rules stay exact paths).

Every file carries the ownership mark; a file of those names without it is someone else's and is refused, never
overwritten or deleted. Release (and a dead-man timer that fires) removes exactly these three paths, each only if
it is still ours. Privileged writes go through ``priv`` (``tee``/``ln``/``rm`` with fixed paths, so the sudoers
rules in docs/linux-hosts.md can name them exactly).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from connectors.ssh_linux import deadman, rules

__all__ = [
    "BOOT_SCRIPT",
    "DIR",
    "PERSIST_EXIT",
    "UNIT",
    "UNIT_NAME",
    "WANTS",
    "PersistState",
    "boot_script",
    "expected",
    "install_command",
    "install_stdin",
    "parse_section",
    "remove_script",
    "state_script",
    "unit_text",
]

DIR = "/etc/containment-agent"
BOOT_SCRIPT = f"{DIR}/isolate-at-boot"
UNIT_NAME = "containment-agent-isolation.service"
UNIT = f"/etc/systemd/system/{UNIT_NAME}"
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
WANTS = f"{WANTS_DIR}/{UNIT_NAME}"
PERSIST_EXIT = 96  # writing a file failed (the isolation itself stays loaded and confirmed)
_EOF = "CONTAINMENT_AGENT_RULESET"
_MARK = shlex.quote(rules.OWNER_MARK)


def unit_text() -> str:
    """The unit (static). Ordering: after every unit that loads a ruleset at boot, before the network."""
    return "\n".join([
        f"# {rules.OWNER_MARK}",
        "# Written by containment-agent after a confirmed isolation; `agent release` removes it.",
        "[Unit]",
        "Description=containment-agent host isolation (re-applied at boot until agent release)",
        "DefaultDependencies=no",
        # systemd.unit(5): After= only orders; units that are not installed are ignored.
        ("After=local-fs.target nftables.service netfilter-persistent.service iptables.service "
         "ip6tables.service firewalld.service ufw.service"),
        "Before=network-pre.target shutdown.target",
        "Wants=network-pre.target",
        "Conflicts=shutdown.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/bin/sh {BOOT_SCRIPT}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        ""])


def boot_script(load: str, ruleset: str) -> str:
    """The script the unit runs: ``load`` (the very commands apply ran, reading ``$rs``) on ``ruleset``."""
    if any(line == _EOF for line in ruleset.splitlines()):
        raise ValueError("ruleset contains the here-document delimiter")
    return "\n".join([
        "#!/bin/sh",
        f"# {rules.OWNER_MARK}",
        "# Re-applies the isolation containment-agent confirmed on this host; `agent release` removes this file.",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        'priv() { "$@"; }',
        f"rs=$(cat <<'{_EOF}'",
        ruleset.rstrip("\n"),
        _EOF,
        ")",
        load,
        ""])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def expected(boot: str) -> dict[str, str]:
    """What a correct installation reads back as: path -> sha256 (files) or link target (the symlink)."""
    return {BOOT_SCRIPT: _sha(boot), UNIT: _sha(unit_text()), WANTS: UNIT}


def install_command(token: str, table_check: str) -> str:
    """Under the host's lock: unless another run's dead-man timer is live or the isolation is gone
    (``table_check`` fails), write :data:`BOOT_SCRIPT` and :data:`UNIT` from stdin (``BOOT@@UNIT@@\\nUNIT``):
    disabled first, enabled last, so a half-written set is never enabled (a crash in between leaves the host
    isolated now and open after a reboot, and the next contain writes it). Prints ``PERSIST=installed`` or
    ``PERSIST=skipped <why>``."""
    deadman.check_token(token)
    body = (deadman.LIVE + f'if [ -n "$p" ] && [ "$t" != {token} ]; then echo "PERSIST=skipped timer $t $o"; '
            f'exit 0; fi; if ! {{ {table_check}; }} >/dev/null 2>&1; then echo "PERSIST=skipped absent"; exit 0; fi; '
            f'if [ -L {WANTS} ]; then priv rm -f {WANTS} || exit {PERSIST_EXIT}; fi; '
            f'[ -d {DIR} ] || priv mkdir -p {DIR} || exit {PERSIST_EXIT}; '
            f'printf "%s" "${{rs%%@@UNIT@@*}}" | priv tee {BOOT_SCRIPT} >/dev/null || exit {PERSIST_EXIT}; '
            f'printf "%s\\n" "${{rs#*@@UNIT@@?}}" | priv tee {UNIT} >/dev/null || exit {PERSIST_EXIT}; '
            f'[ -d {WANTS_DIR} ] || priv mkdir -p {WANTS_DIR} || exit {PERSIST_EXIT}; '
            f'priv ln -sfn {UNIT} {WANTS} || exit {PERSIST_EXIT}; echo "PERSIST=installed"')
    return "rs=$(cat) || exit 1; " + deadman.locked(body)


def install_stdin(boot: str) -> str:
    return boot + "@@UNIT@@\n" + unit_text()


def remove_script() -> str:
    """Remove exactly our three paths, each only while it is still ours (static text; part of every revert)."""
    # ``[ -L ]`` / ``[ -f ]`` first: builtins, so a host without the boot unit (most) runs no readlink or grep
    return (f'if [ -L {WANTS} ] && [ "$(readlink {WANTS} 2>/dev/null)" = {UNIT} ]; then priv rm -f {WANTS}; fi; '
            f"if [ -f {UNIT} ] && grep -qsF {_MARK} {UNIT}; then priv rm -f {UNIT}; fi; "
            f"if [ -f {BOOT_SCRIPT} ] && grep -qsF {_MARK} {BOOT_SCRIPT}; then priv rm -f {BOOT_SCRIPT}; fi; "
            f"if [ -d {DIR} ]; then priv rmdir {DIR} 2>/dev/null; fi; true")


def state_script() -> str:
    """Read-only: whether systemd's unit directory exists, and our paths (sha256 + ownership, link target)."""
    return ("echo '@@PERSIST'; [ -d /etc/systemd/system ] && echo 'systemd yes'; "
            "[ -d /run/systemd/system ] && echo 'booted yes'; "
            f"for f in {BOOT_SCRIPT} {UNIT}; do if [ -f \"$f\" ]; then s=$(sha256sum < \"$f\" 2>/dev/null); "
            f"m=foreign; grep -qsF {_MARK} \"$f\" && m=ours; echo \"file $f ${{s%% *}} $m\"; fi; done; "
            f"if [ -L {WANTS} ]; then echo \"link {WANTS} $(readlink {WANTS})\"; "
            f"elif [ -e {WANTS} ]; then echo \"file {WANTS} - foreign\"; fi; ")


@dataclass(frozen=True)
class PersistState:
    """What :func:`state_script` found: systemd present, our paths as path -> sha256/link target, foreign ones."""

    systemd: bool  # /etc/systemd/system exists: a unit can be installed
    found: dict[str, str]
    foreign: tuple[str, ...]
    booted: bool = False  # /run/systemd/system exists: systemd is PID 1 now (sd_booted(3))

    @property
    def installed(self) -> bool:
        return bool(self.found)

    def problems(self, want: dict[str, str] | None) -> list[str]:
        """Differences from ``want`` (:func:`expected`; None: nothing of ours may be there)."""
        if want is None:
            return [f"{p} still present (the isolation would come back at the next boot)" for p in self.found]
        out = [f"{p} missing" for p in want if p not in self.found]
        out += [f"{p} differs from the isolation in force" for p in want
                if p in self.found and self.found[p] != want[p]]
        return out


def parse_section(text: str) -> PersistState:
    found: dict[str, str] = {}
    foreign: list[str] = []
    systemd = booted = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["systemd", "yes"]:
            systemd = True
        elif parts[:2] == ["booted", "yes"]:
            booted = True
        elif len(parts) == 4 and parts[0] == "file":
            if parts[3] == "ours":
                found[parts[1]] = parts[2]
            else:
                foreign.append(parts[1])
        elif len(parts) == 3 and parts[0] == "link":
            if parts[2] == UNIT:
                found[parts[1]] = parts[2]
            else:
                foreign.append(parts[1])
    return PersistState(systemd, found, tuple(foreign), booted)
