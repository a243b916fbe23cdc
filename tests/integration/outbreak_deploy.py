"""The outbreak deployment of tests/integration/test_outbreak_acceptance.py: its processes, its journal and what
the hosts themselves say (read on the host or probed from a neighbour, never through the agent).

Lab ``agent lab up --hosts 100 --sites 3``; one configuration per process, the central ones (CLI, daemons) without
the fleet's credentials and sharing the deployment's one audit chain; every process started inside a lab
namespace and stopped by its PID. What any distributed deployment needs (configurations, processes, journal
reads) is in tests/integration/deploy.py; this module keeps what only the outbreak needs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.lab import Lab, labconfig
from agent.lab.topology import fleet_names, observer_host, site_names, worker_host
from agent.store import ACTIVE_STATES, Action, Transition, utcnow
from tests.integration.deploy import (
    AGENT,
    Processes,
    audit_records,
    daemon_health,
    owner_pid,
    wait_for,
    write_config,
)
from tests.integration.deploy import actions as journal_actions
from tests.integration.deploy import transitions as journal_transitions

__all__ = ["AGENT", "ECHO", "FLEET", "HOSTS", "LEASE", "SITES", "SLOTS", "SSH", "TAG", "TTL", "WAIT", "HostState",
           "Kill", "Outbreak", "audit_records", "handle_of_one_load", "health", "host_states", "kill_and_look",
           "kill_if_holding", "owner_pid", "probe", "wait_for"]

HOSTS, SITES = 100, 3
FLEET = fleet_names(HOSTS, SITES)
TAG = "outbreak"
TTL = 75  # s from each intent: the contain (14-31 s measured; 29-31 s with the product's outside probe, which
# adds ~2 s to each verify), its checks and the probe must fit before it
LEASE = 5  # s: a dead worker's actions are taken over within ~1.5 leases
WAIT = 120  # s the central waits for a site to settle an action (then: in doubt, and the test fails)
SLOTS = 6  # actions at once per worker
ECHO, SSH = 8080, 22


class Outbreak(Processes):
    """The deployment under test: the lab, its journal database and broker, the audit key (and the fingerprint
    counsel was given before the run) and every process started for it, by name (stopped by PID)."""

    def __init__(self, lab: Lab, root: Path, url: str, broker: str, signing_key: Path, fingerprint: str) -> None:
        super().__init__(lab, root)
        self.url, self.broker, self.signing_key, self.fingerprint = url, broker, signing_key, fingerprint

    @property
    def sites(self) -> dict[str, list[str]]:
        where = self.lab.site_of()
        return {s: [h for h in FLEET if where[h] == s] for s in site_names(SITES)}

    def config(self, name: str, *, central: bool, extra: str = "") -> Path:
        """agent.yaml + inventory.yaml of one process (tests/integration/deploy.py: a central one without the
        fleet's credentials), every fleet host tagged ``outbreak`` and probed from its segment's observer
        (``probe_from``); the central ones share the deployment's one audit chain (the central's directory) signed
        with the key counsel's fingerprint names."""
        inv = labconfig.inventory(self.lab.state_dir, None, FLEET, self.lab.site_of())
        where = self.lab.site_of()
        for host in FLEET:
            inv["hosts"][host]["tags"] = [TAG]
            # the product's own proof from outside: after verify, the site's worker logs in to the segment's
            # observer and tries the host's listening ports from there (connectors/ssh_linux/outside.py)
            inv["hosts"][host]["options"] = {"probe_from": self.lab.hosts[observer_host(where[host])].address}
        return write_config(self.lab, self.root / name, inv, database=self.url, central=central,
                            workers={"broker": self.broker, "sites": site_names(SITES), "lease": LEASE,
                                     "wait": WAIT},
                            audit_dir=self.root / "central" / "audit" if central else None,
                            signing_key=self.signing_key, extra=extra)

    def actions(self) -> list[Action]:
        return journal_actions(self.lab, self.url)

    def transitions(self) -> list[Transition]:
        return journal_transitions(self.lab, self.url)


# -- what the hosts say --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostState:
    """One fleet host as read on the host itself (not through the agent)."""

    table: dict[str, Any] | None  # our nft table as nft_summary renders it; None: no table
    handle: int | None  # the table's handle: each load of the isolation script in a netns yields a higher one
    timer: str  # the dead-man timer's record; "" when none is armed (one left armed would lift the isolation)


def host_states(lab: Lab) -> dict[str, HostState]:
    from connectors.ssh_linux.privilege import STATE_DIRS
    from connectors.ssh_linux.rules import TABLE, nft_summary
    script = (f"nft -j list table {TABLE} 2>/dev/null || echo null; echo '#'; "
              f"cat {STATE_DIRS['root']}/deadman 2>/dev/null; true")

    def read(host: str) -> HostState:
        listing, _, timer = lab.exec(host, ["sh", "-c", script], timeout=30).stdout.partition("\n#\n")
        table = json.loads(listing)
        if not table:
            return HostState(None, None, timer.strip())
        [handle] = [i["table"]["handle"] for i in table["nftables"] if "table" in i]
        return HostState(nft_summary(table), int(handle), timer.strip())
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(FLEET, pool.map(read, FLEET), strict=True))


def handle_of_one_load(script: str) -> int:
    """The table handle the isolation script yields when loaded once into a fresh network namespace (nf_tables
    numbers the tables of a namespace 1, 2, …; the script adds, deletes and adds again): a fleet host whose
    handle is higher had the isolation loaded more than once."""
    from connectors.ssh_linux.rules import TABLE
    res = subprocess.run(["unshare", "--net", "sh", "-c", f"nft -f - && nft -j list table {TABLE}"], input=script,
                         capture_output=True, text=True, timeout=30, check=True)
    [handle] = [i["table"]["handle"] for i in json.loads(res.stdout)["nftables"] if "table" in i]
    return int(handle)


def probe(ob: Outbreak) -> dict[tuple[str, str, int], str]:
    """From outside each host: ``obsK`` (same segment, not management) to its echo port and sshd, and the site
    worker ``wkK`` (a management address) to its sshd. Value: "open", "timeout", "refused", …"""
    where = ob.lab.site_of()
    matrix = [(observer_host(where[h]), h, port) for h in FLEET for port in (ECHO, SSH)]
    matrix += [(worker_host(where[h]), h, SSH) for h in FLEET]
    res = ob.lab.probe(matrix, timeout=1.5)
    return {(c.src, c.dst, c.port): ("open" if c.state == "open" else c.detail) for c in res.checks}


def health(ob: Outbreak, url: str) -> str:
    """``leader`` / ``follower`` from a daemon's /healthz; "" while it does not answer."""
    return daemon_health(ob.lab, url)


@dataclass
class Kill:
    """A SIGKILL and what the journal showed right after it: the site's unfinished actions, the dead one's."""

    at: datetime
    unfinished: list[str]
    held: list[str]


def kill_and_look(ob: Outbreak, proc: subprocess.Popen[bytes], site: str | None) -> Kill:
    """SIGKILL ``proc`` (if its failpoint has not already), then read the journal: what was unfinished then."""
    if proc.poll() is None:
        proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    at = utcnow()
    unfinished, held = _unfinished(ob, proc.pid, site)
    return Kill(at, unfinished, held)


def kill_if_holding(ob: Outbreak, proc: subprocess.Popen[bytes], site: str, at_least: int) -> Kill | None:
    """Freeze the worker (SIGSTOP), read the journal, and SIGKILL it only if it holds at least ``at_least``
    unfinished actions — so the journal read is what the worker left at the instant it died — else let it go on
    (SIGCONT). A frozen worker does nothing more, so freeze-then-kill is a SIGKILL at the freeze."""
    os.kill(proc.pid, signal.SIGSTOP)
    at = utcnow()
    try:
        unfinished, held = _unfinished(ob, proc.pid, site)
    except BaseException:
        os.kill(proc.pid, signal.SIGCONT)
        raise
    if len(held) < at_least:
        os.kill(proc.pid, signal.SIGCONT)
        return None
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return Kill(at, unfinished, held)


def _unfinished(ob: Outbreak, pid: int, site: str | None) -> tuple[list[str], list[str]]:
    """Isolate actions not finished (of ``site``, or all), and those of them the process ``pid`` holds."""
    acts = [r for r in ob.actions() if r.action == "isolate" and r.kind == "apply"]
    unfinished = [r.id for r in acts if (site is None or r.site == site) and r.state in ACTIVE_STATES]
    held = [r.id for r in acts if owner_pid(r.owner) == pid and r.state in ACTIVE_STATES]
    return unfinished, held
