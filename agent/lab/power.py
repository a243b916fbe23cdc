"""What losing power does to a lab host: every process in its mount namespace dies at once, its kernel state goes.

Why a module of its own (STYLE #2): :meth:`agent.lab.lab.Lab.reboot` (issue 14: isolation that survives a reboot)
and :meth:`agent.lab.lab.Lab.reset` need the low-level half — finding and killing the processes of one mount
namespace, and the static shell texts that put a network namespace's kernel state back to a known baseline —
while the lab class keeps the orchestration (which host, restart sshd, wait for it).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from agent.lab import procs
from agent.lab.errors import LabError
from agent.lab.probe import wait_until

__all__ = ["BASELINE", "BOOT_KERNEL", "power_off"]

#: Restores the lab's baseline (no firewall rules anywhere, no tracked flows). Static text, no interpolation.
BASELINE = """NFT=nft
[ -x /run/lab-sbin/nft ] && NFT=/run/lab-sbin/nft
$NFT flush ruleset
conntrack -F >/dev/null 2>&1 || true
"""

#: The kernel state a boot starts with: no ruleset, no tracked flows, IPv6 sysctls at their defaults.
BOOT_KERNEL = ("nft flush ruleset; conntrack -F >/dev/null 2>&1; for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; "
               'do echo 0 > "$f" 2>/dev/null; done; true')


def power_off(host: str, pid: int) -> None:
    """SIGKILL every process sharing ``pid``'s mount namespace (no SIGTERM first: nothing gets to clean up) and
    wait until they are gone; raises LabError naming the survivors."""
    mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == mnt:
                    members.add(int(entry.name))
            except OSError:
                continue
    members.discard(os.getpid())
    for member in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    if not wait_until(lambda: not any(procs.is_alive(m) for m in members), timeout=5):
        left = [m for m in members if procs.is_alive(m)]
        raise LabError(f"rebooting {host!r}: processes {left} survived")
