"""Per-site workers over a real RabbitMQ and a real PostgreSQL, acting on real lab hosts (issue 19).

A 6-host fleet lab split over two sites (``agent lab up --hosts 6 --sites 2``: h01-h03 at ``site1`` on
10.77.17.0/24, h04-h06 at ``site2`` on 10.77.18.0/24). Nothing routes to a site segment: only its worker host
(``wk1``, ``wk2``: a leg on the LAN and one on the segment) reaches its hosts. PostgreSQL and RabbitMQ run
privately on the management host (10.77.0.10, inside the lab), as does the central CLI; the workers run on the
worker hosts. The central configuration's inventory has **no credentials** for the fleet, and mgmt cannot even
reach it — so every host contained proves its action went through a worker of its site, and the journal names
which one (``owner``) and which queue (``site``).

What is shown, each test on a fresh database and a clean lab:
- routing: every action runs on a worker of its target's site, once;
- SIGKILL of a worker right after it changed a host (failpoint ``after-apply``): another worker of the site takes
  the action over when the lease lapses, reads the host, finds the isolation in effect and does not apply again;
  nothing lost, nothing applied twice (one ``applying`` transition per action), journal == hosts;
- RabbitMQ restarted while the workers are mid-action: every host isolated once, no action twice;
- PostgreSQL stopped while the workers are mid-action and started again: no action ``failed``; each ends done
  once the journal is back (the lease lapses, a worker of the site reconciles from the host);
- the central SIGKILLed between an intent and its publish: the site's sweep settles the orphan;
- two daemons, the leader SIGKILLed: the other leads and the TTL releases still fire, through the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent.lab import Lab, labconfig
from agent.lab.topology import fleet_names, worker_host
from agent.store import Action, AuditOutbox, Transition, utcnow
from tests.integration import deploy as fixtures
from tests.integration.deploy import AGENT, Processes, Scale, audit_records, create_database, owner_pid

__all__ = ["AGENT", "EDR_ADDRESS", "EDR_NAME", "FLEET", "LEASE", "SITES", "SITE_OF", "Deployment", "Scale",
           "anchor_of", "assert_chain_verifies", "assert_exactly_once", "audit_records", "contain_result",
           "daemon_health", "isolated", "owner_pid", "rows", "site_reads", "start_daemons", "transitions",
           "wait_for", "write_configs"]

pytestmark = [pytest.mark.root, pytest.mark.slow]

FLEET = fleet_names(6)
SITES = {"site1": FLEET[:3], "site2": FLEET[3:]}
SITE_OF = {h: s for s, hosts in SITES.items() for h in hosts}
LEASE = 3  # seconds: a dead worker's action is taken over within ~1.5 leases


@pytest.fixture(scope="module")
def scale() -> Iterator[Scale]:
    def edr_name(lab: Lab, stack: ExitStack) -> None:
        assert lab.site_of() == SITE_OF
        stack.enter_context(site_name(lab, "site1", EDR_NAME, EDR_ADDRESS))
    with fixtures.site_lab("ciw", hosts=len(FLEET), sites=len(SITES), pg_prefix="workers-pg-", then=edr_name) as s:
        yield s


EDR_NAME, EDR_ADDRESS = "edr.site1.test", "10.77.17.99"  # h01 keeps tcp/443 to it: a name only site1 knows


@contextmanager
def site_name(lab: Lab, site: str, name: str, address: str) -> Iterator[None]:
    """``name`` resolves to ``address`` only on ``site``'s worker host: ``ip netns exec`` bind-mounts
    /etc/netns/NS/hosts over /etc/hosts (ip-netns(8)) — so h01's allow-list name can only be pinned there."""
    folder = Path("/etc/netns") / lab.hosts[worker_host(site)].namespace
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts").write_text(Path("/etc/hosts").read_text() + f"\n{address} {name}\n")
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Deployment(Processes):
    """One test's configurations (central + one per worker process), database and running workers and daemons
    (tests/integration/deploy.py: started in the lab, stopped by PID)."""

    def __init__(self, scale: Scale, root: Path, url: str, central: Path) -> None:
        super().__init__(scale.lab, root)
        self.scale, self.url, self.central = scale, url, central
        self.contain: subprocess.Popen[str] | None = None

    def agent(self, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
        """``agent ARGS --config CENTRAL`` on mgmt, ``env`` added (failpoints)."""
        return self.run("mgmt", [*args, "--config", str(self.central)], timeout=timeout, **env)

    def audit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``agent audit --config CENTRAL ARGS`` on mgmt (the audit command passes everything after it on)."""
        return self.run("mgmt", ["audit", "--config", str(self.central), *args], timeout=120)

    def agent_in_background(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """``agent ARGS --config CENTRAL`` on mgmt, running while the test acts (Processes.background)."""
        return self.background("mgmt", [*args, "--config", str(self.central)], **env)

    def start_contain(self) -> subprocess.Popen[str]:
        self.contain = self.agent_in_background("contain", "--tag", "fleet", "--yes", "--count", str(len(FLEET)),
                                                "--json", "--reason", "outbreak drill")
        return self.contain

    def worker(self, name: str, site: str, *, slots: int = 2, wait: float = 120, lease: float = LEASE, **env: str
               ) -> subprocess.Popen[bytes]:
        cfg = write_configs(self.scale, self.root, self.url, name, central=False, wait=wait, lease=lease)
        return self.start_worker(name, site, cfg, slots=slots, **env)

    def stop_all(self, timeout: float = 30) -> None:
        super().stop_all(timeout)

    def db(self) -> Callable[[Callable[[Session], Any]], Any]:
        return lambda fn: fixtures.query(self.lab, self.url, fn)


def write_configs(scale: Scale, root: Path, url: str, name: str, *, central: bool, wait: float = 120,
                  audit_dir: Path | None = None, lease: float = LEASE) -> Path:
    """agent.yaml + inventory.yaml for one process (tests/integration/deploy.py): the lab's own, with sites,
    PostgreSQL and the broker, the router ``fw`` placed at site1 (read and changed only by site1's workers) and
    h01's allow-list name; the central one without the site targets' credentials, writing the deployment's one
    audit chain (``audit_dir``: default its own folder's; the two daemons share the central's)."""
    lab = scale.lab
    inv = labconfig.inventory(lab.state_dir, None, FLEET, lab.site_of())
    assert {h: inv["hosts"][h]["site"] for h in FLEET} == SITE_OF
    inv["devices"]["fw"]["site"] = "site1"
    text = labconfig.to_yaml(fixtures.central_inventory(inv) if central else inv)
    # block style has no list of mappings: h01's allow entry goes in flow style
    assert "\n  h01:\n" in text
    text = text.replace("\n  h01:\n", f"\n  h01:\n    allow: [{{to: {EDR_NAME}, proto: tcp, ports: [443]}}]\n", 1)
    return fixtures.write_config(lab, root / name, text, database=url, central=central, audit_dir=audit_dir,
                                 workers={"broker": scale.broker_url, "sites": list(SITES), "lease": lease,
                                          "wait": wait})


@pytest.fixture
def deploy(scale: Scale, tmp_path: Path) -> Iterator[Deployment]:
    scale.lab.reset()
    name = f"w{len(scale.dbs)}_{int(time.time())}"
    scale.dbs.append(name)
    url = create_database(scale.lab, scale.pg.url, name)
    d = Deployment(scale, tmp_path, url, write_configs(scale, tmp_path, url, "central", central=True))
    try:
        yield d
    finally:
        d.stop_all()
        scale.lab.reset()


# -- what the hosts and the journal say ----------------------------------------------------------------------------
def isolated(lab: Lab) -> set[str]:
    return fixtures.isolated(lab, FLEET)


def rows(d: Deployment) -> list[Action]:
    return fixtures.actions(d.lab, d.url)


def transitions(d: Deployment) -> list[Transition]:
    return fixtures.transitions(d.lab, d.url)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll every 0.3 s; an exception from ``check`` is "not yet" (no schema yet, PostgreSQL restarting)."""
    fixtures.wait_for(check, timeout, what, every=0.3, tolerate=True)


def anchor_of(d: Deployment) -> tuple[str, str]:
    """What counsel holds: the deployment key's fingerprint and a signed head of the central's chain."""
    return fixtures.chain_anchor(d.root / "central" / "audit", d.lab.state_dir / "audit-signing.key.pub")


def assert_chain_verifies(d: Deployment) -> None:
    """The central's chain verifies with the deployment's key and a trust anchor (expected fingerprint + head)."""
    fp, anchor = anchor_of(d)
    res, twice = fixtures.verify_chain(d.root / "central" / "audit", d.lab.state_dir / "audit-signing.key.pub", fp,
                                       anchor)
    assert res.returncode == 0, (res.stdout[-1500:], res.stderr[-1500:])
    assert not twice, f"queued records chained twice: {twice}"


def assert_exactly_once(d: Deployment) -> list[Action]:
    """Every fleet host: one isolate action, done; one ``applying`` transition each; hosts == journal."""
    acts = [r for r in rows(d) if r.action == "isolate"]
    assert sorted(r.target for r in acts) == FLEET, [(r.target, r.state) for r in acts]
    assert {r.target: r.state for r in acts} == dict.fromkeys(FLEET, "done")
    applying: dict[str, int] = {}
    for t in transitions(d):
        if t.to_state == "applying" and t.from_state != "applying":
            applying[t.action_id] = applying.get(t.action_id, 0) + 1
    assert {r.target: applying.get(r.id, 0) for r in acts} == dict.fromkeys(FLEET, 1)
    assert isolated(d.scale.lab) == set(FLEET)
    return acts


def contain_result(proc: subprocess.Popen[str], timeout: float = 240) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0 and os.environ.get("SITE_WORKERS_DEBUG"):
        Path(os.environ["SITE_WORKERS_DEBUG"]).write_text(out + "\n----\n" + err)
    assert proc.returncode == 0, (proc.returncode, out[-3000:], err[-3000:])
    data: dict[str, Any] = json.loads(out)
    return data


def start_daemons(d: Deployment, names: tuple[str, ...], extra: str = "") -> dict[str, tuple[
        subprocess.Popen[bytes], str]]:
    """``agent daemon`` processes on mgmt (no site credentials, the central's audit chain), each on its own
    loopback port, ``extra`` lines added under ``daemon:``; returns once each answers and exactly one leads the
    scheduler."""
    if not (d.root / "rules.yaml").exists():
        (d.root / "rules.yaml").write_text(
            "rules:\n  - name: outbreak\n    match: {source: gen, rule_id: ttl-*}\n    runbook: isolate-host\n"
            "    params: {capture_evidence: false}\n    ttl: 25s\n")
    daemons: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    for name in names:
        cfg = write_configs(d.scale, d.root, d.url, name, central=True, audit_dir=d.root / "central" / "audit")
        section, url = fixtures.daemon_section(d.lab, "  sources:\n    gen: {format: generic, token: "
                                                      "env:TEST_GEN_TOKEN}\n" + extra)
        cfg.write_text(cfg.read_text() + f"rules: \"{d.root / 'rules.yaml'}\"\n" + section)
        daemons[name] = (d.start_daemon(name, cfg, TEST_GEN_TOKEN="tok-123456789"), url)
    # started together on a new journal (test_daemons_start_together)
    fixtures.wait_for_daemons(d, {name: url for name, (_proc, url) in daemons.items()}, timeout=60)
    return daemons


def daemon_health(d: Deployment, url: str) -> str:
    return fixtures.daemon_health(d.lab, url)


# -- the tests -----------------------------------------------------------------------------------------------------
def test_actions_route_to_their_site_workers(deploy: Deployment):
    """Each action is queued for its target's site and run by a worker of that site; the central process (no
    credentials for the fleet) runs none itself. Fails before: no `agent worker`, no routing."""
    d = deploy
    reach = d.scale.lab.probe([("mgmt", "h01", 22), ("wk2", "h01", 22), ("wk1", "h01", 22)])
    assert [reach.state(src, "h01", 22) == "open" for src in ("mgmt", "wk2", "wk1")] == [False, False, True]
    workers = {"site1": d.worker("site1-a", "site1"), "site2": d.worker("site2-a", "site2")}
    result = contain_result(d.start_contain())
    assert result["status"] == "done", result
    acts = assert_exactly_once(d)
    for row in acts:
        assert row.site == SITE_OF[row.target]
        assert owner_pid(row.owner) == workers[row.site].pid, (row.target, row.owner)
    # one audit chain for the deployment, written by the central: the workers keep no audit directory, their
    # records (claim, snapshot, apply, verify, outcome) are in it, each naming its site and worker (the journal
    # owner) with its own event time; it verifies with the deployment's key (docs/workers.md)
    chain = audit_records(d.root / "central" / "audit")
    assert not (d.root / "site1-a" / "audit").exists() and not (d.root / "site2-a" / "audit").exists()
    for row in acts:
        mine = [r for r in chain if r.get("action_id") == row.id and r.get("worker")]
        states = [r["to_state"] for r in mine if r["event"] == "action.transition"]
        assert states[-1] == "done" and "applying" in states and "verifying" in states, (row.target, states)
        assert {r["worker"] for r in mine} == {row.owner} and {r["site"] for r in mine} == {row.site}
        assert any(r["event"] == "worker.claimed" for r in mine)
        assert all(r["event_ts"] <= r["ts"] for r in mine)
        assert sum(1 for r in chain if r.get("action_id") == row.id and r["event"] == "action.done") == 1
    assert_chain_verifies(d)
    # the export of the incident verifies with the independent verifier, and the counsel report and `incidents
    # show` count each action once (the worker's outcome is in the chain; the central no longer restates it)
    incident = result["incident"]
    fp, anchor = anchor_of(d)
    res = d.audit("export", "--incident", incident, "--out", str(d.root / "export"))
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    res = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "docs" / "verify_export.py"),
                          str(d.root / "export"), "--expect-key", fp, "--anchor", anchor],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    exported = audit_records(d.root / "export" / "audit")
    assert {r["worker"] for r in exported if r.get("event") == "worker.claimed"} == {r.owner for r in acts}
    res = d.agent("report", "--incident", incident, "--format", "json", "-o", str(d.root / "report.json"))
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    report = json.loads((d.root / "report.json").read_text())
    n = 2 * len(FLEET)  # evidence capture + isolate per host
    assert report["narrative"]["what_was_done"].startswith(f"{n} containment action(s) (capture evidence, isolate)")
    assert f"; {n} done, 0 failed." in report["narrative"]["what_was_done"]
    assert len(report["actions"]) == n and {a["status"] for a in report["actions"]} == {"done"}
    for a in report["actions"]:
        changes = [h["change"] for h in a["history"]]
        assert changes.count("done") == 1 and sum(c.endswith("→ done") for c in changes) == 1, changes
    shown = json.loads(d.agent("incidents", "show", incident, "--json").stdout)
    assert sorted(a["target"] for a in shown["actions"] if a["action"] == "isolate") == FLEET
    # and back: release goes the same way (undo from the journaled snapshot, on the site's worker)
    res = d.agent("release", "--tag", "fleet", "--yes", "--count", str(len(FLEET)), "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert isolated(d.scale.lab) == set()
    undos = [r for r in rows(d) if r.kind == "undo"]
    assert sorted(r.target for r in undos) == FLEET and {r.state for r in undos} == {"done"}
    assert all(owner_pid(r.owner) == workers[SITE_OF[r.target]].pid for r in undos)


def test_worker_killed_mid_action_is_taken_over_not_reapplied(deploy: Deployment):
    """site1's first worker is SIGKILLed right after its first apply reached a host; a second site1 worker
    takes the action over when the lease lapses, reads the host, finds it isolated and does not apply again."""
    d = deploy
    doomed = d.worker("site1-a", "site1", AGENT_FAILPOINTS="after-apply")
    d.worker("site2-a", "site2")
    contain = d.start_contain()
    wait_for(lambda: doomed.poll() is not None, 60, "the failpoint to kill site1-a")
    assert doomed.returncode == -signal.SIGKILL, d.log("site1-a")
    survivor = d.worker("site1-b", "site1")
    result = contain_result(contain)
    assert result["status"] == "done", result
    acts = assert_exactly_once(d)
    killed = [r for r in acts if owner_pid(r.owner) == survivor.pid and any(
        "not re-applied" in t.detail for t in transitions(d) if t.action_id == r.id)]
    assert len(killed) >= 1, [(r.target, r.owner) for r in acts]
    assert all(r.site == "site1" for r in killed)
    assert {owner_pid(r.owner) for r in acts if r.site == "site1"} == {survivor.pid}


def test_worker_killed_right_after_its_claim_leaves_the_claim_in_the_chain(deploy: Deployment):
    """site1's worker is SIGKILLed the instant its first claim committed (failpoint ``worker-after-claim``): the
    ``worker.claimed`` record was queued in the claim's own transaction, so the one chain still says who held the
    action before the takeover — the record and the claim commit together or not at all. Fails before: the
    record was queued in a transaction of its own after the claim, and a kill between the two lost it."""
    d = deploy
    doomed = d.worker("site1-a", "site1", wait=4, AGENT_FAILPOINTS="worker-after-claim")
    d.worker("site2-a", "site2", wait=4)
    contain = d.start_contain()
    wait_for(lambda: doomed.poll() is not None, 60, "the failpoint to kill site1-a")
    assert doomed.returncode == -signal.SIGKILL, d.log("site1-a")
    survivor = d.worker("site1-b", "site1", wait=4)
    result = contain_result(contain)
    assert result["status"] == "done", result
    assert_exactly_once(d)
    res = d.audit("verify")  # on the writer's host: drains what waits first
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    assert_chain_verifies(d)
    chain = audit_records(d.root / "central" / "audit")
    claims = [r for r in chain if r["event"] == "worker.claimed"]
    dead = [r for r in claims if owner_pid(r["worker"]) == doomed.pid]
    assert len(dead) == 1, [(r["worker"], r["action_id"]) for r in claims]
    taken = [r for r in claims if r["action_id"] == dead[0]["action_id"] and r is not dead[0]]
    assert [(owner_pid(r["worker"]), r["takeover"], r["previous_owner"]) for r in taken] == [
        (survivor.pid, True, dead[0]["worker"])]


def test_one_audit_chain_when_a_worker_and_the_chain_writer_are_killed(deploy: Deployment):
    """site1's worker is SIGKILLed right after an apply; the central — the deployment's chain writer — is
    SIGKILLed right after appending queued records to the chain, before deleting them from the outbox
    (failpoint ``audit-drain-appended``). Containment goes on without it (the workers' records wait in
    PostgreSQL); the next drain finishes the interrupted one: every queued record chained exactly once, the
    killed worker's claim and apply and its successor's takeover in the one chain, which verifies with the
    deployment's key and anchor. Fails before: each process wrote its own chain, no outbox."""
    d = deploy
    doomed = d.worker("site1-a", "site1", wait=4, AGENT_FAILPOINTS="after-apply")
    d.worker("site2-a", "site2", wait=4)
    res = d.agent("contain", "--tag", "fleet", "--yes", "--count", str(len(FLEET)), "-p", "capture_evidence=false",
                  timeout=120, AGENT_FAILPOINTS="audit-drain-appended")
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stdout[-1500:], res.stderr[-1500:])
    wait_for(lambda: doomed.poll() is not None, 60, "the failpoint to kill site1-a")
    assert doomed.returncode == -signal.SIGKILL, d.log("site1-a")
    survivor = d.worker("site1-b", "site1", wait=4)
    wait_for(lambda: {r.state for r in rows(d) if r.action == "isolate"} == {"done"}, 90,
             "the site workers to settle every journaled action")
    marked = d.db()(lambda s: s.scalar(select(func.count()).select_from(AuditOutbox)
                                       .where(AuditOutbox.drain_from.is_not(None))))
    assert marked, "the writer should have died between appending and deleting"
    res = d.audit("verify")  # on the writer's host: drains what waits (finishing the dead drain) first
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    assert d.db()(lambda s: s.scalar(select(func.count()).select_from(AuditOutbox)
                                     .where(AuditOutbox.drain_from.is_not(None)))) == 0
    assert_chain_verifies(d)  # includes: no outbox_id twice
    acts = [r for r in rows(d) if r.action == "isolate"]
    assert isolated(d.scale.lab) == {r.target for r in acts}
    chain = audit_records(d.root / "central" / "audit")
    for row in acts:
        mine = [r for r in chain if r.get("action_id") == row.id]
        assert sum(r["event"] == "action.done" for r in mine) == 1, row.target
        assert sum(r["event"] == "action.transition" and r["to_state"] == "applying" for r in mine) == 1
    first = [r for r in chain if r["event"] == "worker.claimed" and r.get("worker", "").split(":")[1:2]
             == [str(doomed.pid)]]
    assert first, "the killed worker's claim is in the chain"
    taken = [r for r in chain if r["event"] == "worker.claimed" and r["takeover"]]
    assert taken and {owner_pid(r["worker"]) for r in taken} == {survivor.pid}
    assert {r["action_id"] for r in first} & {r["action_id"] for r in taken}


def test_rabbitmq_restart_mid_run_loses_and_doubles_nothing(deploy: Deployment):
    """The broker stops and starts again while the workers are mid-action (each pauses 3 s before applying):
    unacknowledged messages come back; redeliveries of running or finished actions are dropped by the claim."""
    d = deploy
    pause = {"AGENT_FAILPOINTS": "before-apply:pause"}
    d.worker("site1-a", "site1", slots=1, **pause)
    d.worker("site1-b", "site1", slots=1, **pause)
    d.worker("site2-a", "site2", slots=1, **pause)
    contain = d.start_contain()
    wait_for(lambda: any(r.state == "applying" for r in rows(d)), 60, "a worker to be mid-action")
    d.scale.broker.restart()
    result = contain_result(contain)
    assert result["status"] == "done", result
    assert_exactly_once(d)
    # the heartbeats (to PostgreSQL, not the broker) kept every lease: nothing needed taking over
    assert not [t.detail for t in transitions(d) if "reconciled" in t.detail]


def test_postgres_unreachable_mid_run_never_failed(deploy: Deployment):
    """PostgreSQL stops while the workers are mid-action and comes back 8 s later: nothing is recorded failed;
    when the journal returns, the lapsed leases are taken over and settled from the hosts' real state."""
    d = deploy
    pause = {"AGENT_FAILPOINTS": "before-apply:pause"}
    d.worker("site1-a", "site1", slots=3, **pause)
    d.worker("site2-a", "site2", slots=3, **pause)
    contain = d.start_contain()
    wait_for(lambda: sum(r.state == "applying" for r in rows(d)) >= 2, 60, "workers to be mid-action")
    d.scale.pg.stop()
    time.sleep(8)
    d.scale.pg.start()
    out, err = contain.communicate(timeout=240)
    assert contain.returncode in (0, 4), (contain.returncode, out[-2000:], err[-3000:])  # done, or partial (doubt)
    states = {o["target"]: o["state"] for o in json.loads(out)["outcomes"] if o["action"] == "isolate"}
    assert "failed" not in states.values(), states
    acts = [r for r in rows(d) if r.action == "isolate"]
    assert "failed" not in {r.state for r in acts}, [(r.target, r.state, r.error) for r in acts]
    wait_for(lambda: {r.state for r in rows(d) if r.action == "isolate"} == {"done"}, 60,
             "every action settled done after PostgreSQL returned")
    assert_exactly_once(d)


def test_engine_dies_between_intent_and_publish_nothing_lost(deploy: Deployment):
    """The central process is SIGKILLed after journaling an action's intent and before publishing it (failpoint
    ``after-intent``): no message will ever come. The site's worker settles the orphan once it is older than
    ``workers.wait`` — reading the host first, then applying once — so every journaled action ends done, each
    host whose action was journaled is isolated exactly once and the others are untouched (journal == hosts)."""
    d = deploy
    d.worker("site1-a", "site1", wait=4)
    d.worker("site2-a", "site2", wait=4)
    res = d.agent("contain", "--tag", "fleet", "--yes", "--count", str(len(FLEET)), "-p", "capture_evidence=false",
                  timeout=120, AGENT_FAILPOINTS="after-intent")
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stdout[-1500:], res.stderr[-1500:])
    orphans = [r for r in rows(d) if r.action == "isolate" and r.state == "intent"]
    assert orphans, "the failpoint should leave a journaled, unpublished intent"
    wait_for(lambda: {r.state for r in rows(d) if r.action == "isolate"} == {"done"}, 60,
             "the site workers to settle the orphaned intents")
    acts = [r for r in rows(d) if r.action == "isolate"]
    journaled = {r.target for r in acts}
    assert isolated(d.scale.lab) == journaled
    trans = transitions(d)
    for r in acts:
        assert sum(1 for t in trans if t.action_id == r.id and t.to_state == "applying"
                   and t.from_state != "applying") == 1
    for r in orphans:
        assert any("reconciled" in t.detail for t in trans if t.action_id == r.id)


def test_two_daemons_leader_killed_ttl_release_fires_through_the_workers(deploy: Deployment):
    """Two ``agent daemon`` processes on the journal (no fleet credentials), workers on both sites. An alert with
    a TTL contains h01 (site1) and h04 (site2) through the workers; the leader daemon is SIGKILLed; the other
    takes over the scheduler and the TTL releases still fire — routed to the sites' workers, each undone once."""
    import httpx
    d = deploy
    d.worker("site1-a", "site1")
    d.worker("site2-a", "site2")
    daemons = start_daemons(d, ("daemon-a", "daemon-b"))

    def health(name: str) -> str:
        return daemon_health(d, daemons[name][1])

    leader = next(n for n in daemons if health(n) == "leader")
    other = next(n for n in daemons if n != leader)
    for host in ("h01", "h04"):
        with d.scale.lab.enter("mgmt"):
            res = httpx.post(daemons[other][1] + "/alerts/gen", json={"rule_id": "ttl-1", "host": host,
                                                                      "severity": 90},
                             headers={"Authorization": "Bearer tok-123456789"}, timeout=10)
        assert res.status_code == 202, res.text
    wait_for(lambda: isolated(d.scale.lab) == {"h01", "h04"}, 60, "both hosts isolated through the workers")
    daemons[leader][0].kill()  # SIGKILL: its lock session ends with its connection
    killed_at = utcnow()
    assert daemons[leader][0].wait(10) == -signal.SIGKILL
    wait_for(lambda: health(other) == "leader", 15, "the other daemon to lead")
    wait_for(lambda: isolated(d.scale.lab) == set(), 90, "the TTL releases, fired by the new leader")
    time.sleep(2)
    acts = [r for r in rows(d) if r.action == "isolate"]
    assert sorted((r.target, r.kind, r.state) for r in acts) == [
        ("h01", "apply", "done"), ("h01", "undo", "done"), ("h04", "apply", "done"), ("h04", "undo", "done")]
    assert all(r.site == SITE_OF[r.target] for r in acts)
    assert all(r.created_at > killed_at for r in acts if r.kind == "undo")  # fired after the leader died
    # both daemons write the deployment's one chain (a shared directory, one drain at a time): the workers'
    # records of the releases are appended by the survivor, none twice, and the chain verifies
    undone = {r.id for r in acts if r.kind == "undo"}
    wait_for(lambda: undone <= {r["action_id"] for r in audit_records(d.root / "central" / "audit")
                                if r["event"] == "action.undone" and r.get("worker")}, 15, "the releases chained")
    daemons[other][0].send_signal(signal.SIGTERM)  # a clean stop: its closing checkpoint signs the tail
    daemons[other][0].wait(30)
    assert_chain_verifies(d)


def test_site_worker_reads_back_its_containments_and_reports_drift(deploy: Deployment):
    """Only a site's workers reach its hosts, so they re-verify its containments: each read-back is journaled
    as proof, and the isolation removed behind the agent's back is reported as drift (``containment.drift`` in
    the deployment's one audit chain) — the central daemon, with no credentials, could only say "could not read".
    Two workers of the site split the reads: each containment is read once per round, not once per worker
    (fails before: each worker read every containment of its site)."""
    from connectors.ssh_linux.rules import TABLE
    d = deploy
    d.worker("site1-a", "site1")
    d.worker("site1-b", "site1")  # started together: their sweeps run in step
    res = d.agent("contain", "--host", "h01", "--yes", "-p", "capture_evidence=false", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [row] = [r for r in rows(d) if r.action == "isolate"]

    def swept() -> list[str]:
        return [t.detail for t in transitions(d) if t.action_id == row.id and "site1 worker" in t.detail]
    wait_for(lambda: any("re-verified in_effect" in t for t in swept()), 40, "the worker's read-back of h01")
    time.sleep(2)  # both workers' sweeps have come round: the read is split, not doubled
    assert len(swept()) == 1, swept()
    d.scale.lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])  # someone lifts it behind our back
    wait_for(lambda: any("re-verified drift" in t.detail for t in transitions(d) if t.action_id == row.id),
             40, "the drift to be journaled")
    # the worker queued it for the deployment's chain; no writer runs now, so it waits in PostgreSQL until the
    # central's next command (`agent audit verify` on the writer's host appends what is queued first)
    res = d.audit("verify")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    drift = [r for r in audit_records(d.root / "central" / "audit") if r["event"] == "containment.drift"]
    assert drift and drift[0]["target"] == "h01" and drift[0]["site"] == "site1"


def site_reads(d: Deployment) -> list[Any]:
    from agent.workers.models import SiteRead
    return list(d.db()(lambda s: list(s.scalars(select(SiteRead).order_by(SiteRead.created_at)))))


def test_status_verify_and_resolve_steps_go_through_the_site_worker(deploy: Deployment):
    """Everything a site target needs goes through its site's workers, not only the change: ``status --verify``
    from the central (no credentials for the fleet or the router, no route to the fleet) shows the fresh proof a
    worker of the site read — when, what, which worker — and a block on the router at site1 gets its read-only
    resolve step (exact lines, docs/architecture.md decision 1) from that worker, whose apply then checks the
    pinned lines. With the site's worker stopped: a clear error naming the site, and a real run is refused
    before anything is journaled or sent. Fails before: the central read the targets itself ("could not read
    h01"), and showed the conditional offline lines for the router."""
    from datetime import datetime

    from connectors.ssh_linux.rules import TABLE
    d, lab = deploy, deploy.scale.lab
    worker = d.worker("site1-a", "site1")
    res = d.agent("contain", "--host", "h01", "--yes", "-p", "capture_evidence=false", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [row] = [r for r in rows(d) if r.action == "isolate"]
    # h01's allow-list name was pinned by site1's worker (only its host resolves it) and sent as that address
    assert row.args["allow_pins"] == {EDR_NAME: [EDR_ADDRESS]}
    [pin] = [r for r in site_reads(d) if r.kind == "pin"]
    assert (pin.state, pin.target, owner_pid(pin.owner)) == ("done", "h01", worker.pid)
    assert EDR_ADDRESS in lab.exec("h01", ["nft", "list", "ruleset"]).stdout
    asked = utcnow()
    res = d.agent("status", "--verify", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [check] = json.loads(res.stdout)["verified"]
    assert (check["target"], check["state"], check["site"]) == ("h01", "in_effect", "site1"), check
    assert owner_pid(check["read_by"]) == worker.pid
    assert datetime.fromisoformat(check["read_at"]) >= asked
    proofs = [t.detail for t in transitions(d) if t.action_id == row.id and "status --verify" in t.detail]
    assert len(proofs) == 1 and proofs[0].startswith(
        f"re-verified in_effect (status --verify by site1 worker {check['read_by']}): "), proofs
    lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])  # lifted behind the agent's back
    res = d.agent("status", "--verify")
    assert res.returncode == 4, res.stdout[-1500:] + res.stderr[-1500:]
    assert "DRIFT" in res.stdout and f"read by site1 worker {check['read_by']}" in res.stdout, res.stdout
    # the router's resolve step, read by site1's worker: exact lines, none conditional
    res = d.agent("block-ip", "10.77.1.130", "--allow-private", "--dry-run", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [planned] = json.loads(res.stdout)["plan"]["actions"]
    preview = planned["preview"]
    assert preview and not any(ln.startswith(("if ", "after a change", "(offline")) for ln in preview), preview
    [resolved] = [r for r in site_reads(d) if r.kind == "resolve"]
    assert (resolved.state, resolved.target, owner_pid(resolved.owner)) == ("done", "fw", worker.pid)
    res = d.agent("block-ip", "10.77.1.130", "--allow-private", "--yes", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [block] = [r for r in rows(d) if r.action == "block_ip"]
    assert (block.state, block.site, owner_pid(block.owner)) == ("done", "site1", worker.pid)
    assert block.args["planned_lines"] == preview  # the lines shown are the lines checked and sent
    assert "10.77.1.130" in lab.exec("fw", ["nft", "list", "ruleset"]).stdout
    # the site's only worker stops: the central names the site and waits no longer than a lease + connect
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    journaled, ruleset = len(rows(d)), lab.exec("fw", ["nft", "list", "ruleset"]).stdout
    with ThreadPoolExecutor(2) as pool:  # both wait out the same claim time: run them side by side
        verify = pool.submit(d.agent, "status", "--verify", "--json")
        res = d.agent("block-ip", "10.77.1.131", "--allow-private", "--yes", "--json")
        verified = verify.result()
    assert verified.returncode == 4, verified.stdout[-1500:] + verified.stderr[-1500:]
    for check in json.loads(verified.stdout)["verified"]:
        assert check["state"] == "unverified" and "no worker of site site1 took the read-back" in check["summary"]
    assert res.returncode == 1, res.stdout[-1500:] + res.stderr[-1500:]
    assert "no worker of site site1 took the resolve step of fw" in res.stderr, res.stderr
    assert "nothing was journaled or sent" in res.stderr
    assert len(rows(d)) == journaled and lab.exec("fw", ["nft", "list", "ruleset"]).stdout == ruleset


def test_drift_reapplied_once_by_a_site_worker_two_workers_two_daemons(deploy: Deployment):
    """``drift_policy: reapply`` for a containment at a worker site: the leader daemon (no credentials, no
    route) asks the site's workers, one of which re-applies it in place from the journaled snapshot under the
    action's lease. Exactly once with two workers of the site, two daemons — and two more re-apply requests
    sent at the same moment, as two daemons would: one re-apply per drift, journal == nft, each audited with
    the worker that did it. Fails before: routed actions were never re-applied (drift was only reported)."""
    from connectors.ssh_linux.rules import TABLE
    d, lab = deploy, deploy.scale.lab
    d.worker("site1-a", "site1")
    d.worker("site1-b", "site1")
    res = d.agent("contain", "--host", "h01", "--yes", "-p", "capture_evidence=false", "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    [row] = [r for r in rows(d) if r.action == "isolate"]
    start_daemons(d, ("daemon-a", "daemon-b"), "  reverify_interval: 1s\n  drift_policy: reapply\n")

    def reapplies() -> int:
        return sum(1 for t in transitions(d) if t.action_id == row.id and (t.from_state, t.to_state) == (
            "done", "applying"))
    def settled() -> int:  # re-applies verified done (a drift while one verifies would leave it in doubt)
        return sum(1 for t in transitions(d) if t.action_id == row.id and t.to_state == "done"
                   and t.detail.startswith("re-applied after drift"))
    lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])
    wait_for(lambda: reapplies() == 1 and settled() == 1 and isolated(lab) == {"h01"}, 40,
             "the daemon's re-apply through a worker")
    lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])
    from agent.store import Store
    from agent.workers.config import WorkersConfig
    from agent.workers.reads import SiteReads
    with lab.enter("mgmt"):
        store = Store(d.url)
        reads = SiteReads(store, WorkersConfig(broker=d.scale.broker.url, sites=("site1",), lease=LEASE),
                          "test:0", claim_within=20, finish_within=60)
        try:
            ids = [reads.request("site1", "reapply", target="h01", action="isolate", action_id=row.id,
                                 cause="test") for _ in range(2)]
            outcomes = reads.wait(ids)
        finally:
            reads.close()
            store.close()
    assert all(o.ok for o in outcomes), outcomes
    assert {str(o.result.get("outcome")) for o in outcomes} <= {"done", "in_effect", "held"}, outcomes
    try:
        wait_for(lambda: reapplies() == 2 and settled() == 2 and isolated(lab) == {"h01"}, 40,
                 "the second drift re-applied")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {isolated(lab)}, " + "\n".join(
            f"{t.from_state}->{t.to_state} {t.detail[:150]}" for t in transitions(d) if t.action_id == row.id)
            + f"\n{outcomes}") from None
    time.sleep(2)  # more daemon passes: nothing re-applied again
    assert reapplies() == 2 and isolated(lab) == {"h01"}
    [after] = [r for r in rows(d) if r.action == "isolate"]
    assert (after.state, after.undone_at, after.lease_until) == ("done", None, None)
    # audited once, in the deployment's one chain, by the worker that re-applied (the daemons do not restate it)
    res = d.audit("verify")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    chain = audit_records(d.root / "central" / "audit")
    reapplied = [r for r in chain if r["event"] == "containment.reapplied"]
    assert len(reapplied) == 2 and all(r["action_id"] == row.id and r["site"] == "site1" for r in reapplied)
    assert {owner_pid(r["worker"]) for r in reapplied} <= {d.procs["site1-a"].pid, d.procs["site1-b"].pid}
    drifts = [r for r in chain if r["event"] == "containment.drift" and r.get("policy") == "reapply"]
    assert len(drifts) == 2, drifts
