"""The outbreak deployment of tests/integration/test_outbreak_acceptance.py: its processes, its journal and what
the hosts themselves say (read on the host or probed from a neighbour, never through the agent).

Lab ``agent lab up --hosts 100 --sites 3``; one configuration per process, the central ones (CLI, daemons) without
the fleet's credentials and sharing the deployment's one audit chain; every process started inside a lab
namespace and stopped by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from agent.lab import Lab, labconfig
from agent.lab.topology import fleet_names, observer_host, site_names, worker_host
from agent.store import ACTIVE_STATES, Action, Transition, utcnow
from tests.integration.cli.test_contain_cli import AGENT

HOSTS, SITES = 100, 3
FLEET = fleet_names(HOSTS, SITES)
TAG = "outbreak"
TTL = 75  # s from each intent: the contain (14-31 s measured), its checks and the probe must fit before it
LEASE = 5  # s: a dead worker's actions are taken over within ~1.5 leases
WAIT = 120  # s the central waits for a site to settle an action (then: in doubt, and the test fails)
SLOTS = 6  # actions at once per worker
ECHO, SSH = 8080, 22


@dataclass
class Outbreak:
    """The deployment under test: the lab, its journal database and broker, the audit key (and the fingerprint
    counsel was given before the run) and every process started for it, by name (stopped by PID)."""

    lab: Lab
    root: Path
    url: str
    broker: str
    signing_key: Path
    fingerprint: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sites(self) -> dict[str, list[str]]:
        where = self.lab.site_of()
        return {s: [h for h in FLEET if where[h] == s] for s in site_names(SITES)}

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "AGENT_BROKER_PASSWORD": "guest", "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
        env.pop("AGENT_FAILPOINTS", None)
        env.update(extra)
        return env

    def config(self, name: str, *, central: bool, extra: str = "") -> Path:
        """agent.yaml + inventory.yaml of one process; the central ones without fleet creds, sharing the
        deployment's one audit chain (the central's directory, the signing key); a worker with neither (its
        records go to that chain through PostgreSQL; `agent worker` refuses a key)."""
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        inv = labconfig.inventory(self.lab.state_dir, None, FLEET, self.lab.site_of())
        for host in FLEET:
            inv["hosts"][host]["tags"] = [TAG]
            if central:
                del inv["hosts"][host]["credentials"]
        (folder / "inventory.yaml").write_text(labconfig.to_yaml(inv))
        settings = labconfig.agent_settings(self.lab.repo, folder, self.lab.state_dir)
        settings.update(database=self.url, audit_dir=str(self.root / "central" / "audit"),
                        evidence_dir=str(folder / "evidence"), audit_signing_key=str(self.signing_key),
                        workers={"broker": self.broker, "broker_password": "env:AGENT_BROKER_PASSWORD",
                                 "sites": site_names(SITES), "lease": LEASE, "wait": WAIT})
        if not central:
            del settings["audit_signing_key"], settings["audit_dir"]
        (folder / "agent.yaml").write_text(labconfig.to_yaml(settings) + extra)
        return folder / "agent.yaml"

    def spawn(self, name: str, on: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["ip", "netns", "exec", self.lab.hosts[on].namespace, AGENT, *argv], stdout=log,
                                stderr=subprocess.STDOUT, env=self.env(**env), stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        """SIGTERM (a clean stop: the audit logs get their closing checkpoint), SIGKILL after 60 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def query(self, fn: Callable[[Session], Any]) -> Any:
        with self.lab.enter("mgmt"):
            engine = create_engine(self.url, poolclass=NullPool)
            try:
                with Session(engine) as s:
                    return fn(s)
            finally:
                engine.dispose()

    def actions(self) -> list[Action]:
        return list(self.query(lambda s: list(s.scalars(select(Action).order_by(Action.seq)))))

    def transitions(self) -> list[Transition]:
        return list(self.query(lambda s: list(s.scalars(select(Transition).order_by(Transition.id)))))


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
    import httpx
    try:
        with ob.lab.enter("mgmt"):
            return str(httpx.get(url + "/healthz", timeout=3).json()["scheduler"])
    except (httpx.HTTPError, ValueError, KeyError):
        return ""


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1]) if owner.count(":") >= 1 else -1


def audit_records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(directory.glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


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
