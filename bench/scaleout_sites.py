"""Issue 19 acceptance as a bench: N hosts over K sites, W workers per site, one worker of each site SIGKILLed
mid-run; plus the per-action latency the queue and PostgreSQL add, measured against the single-machine path.

    python bench/scaleout_sites.py [--hosts 100] [--sites 3] [--workers 2] [--no-kill] [--sample 10]

Everything is real and private: ``agent lab up --hosts N --sites K`` (each site reachable only from its worker
host), PostgreSQL and RabbitMQ on the lab's management host, ``agent worker`` processes on the worker hosts, the
central ``agent contain --tag fleet`` on mgmt with no credentials for the fleet.

1. **Overhead** (issue target: ≤ 50 ms p50, ≤ 200 ms p99 added per action): ``--sample`` site1 hosts contained one
   command at a time, (a) by the single-machine path (the agent on wk1, SQLite journal) and (b) routed (central on
   mgmt, PostgreSQL journal, RabbitMQ, one worker on wk1); per action the journal's intent → done time, so CLI
   start-up is not counted. (b) adds publish, delivery, claim and PostgreSQL commits; the central sees the result
   within one poll tick more (agent/workers/dispatch.py).
2. **Outbreak**: two ``agent daemon`` processes run on the journal; all N hosts are contained by one command
   with a TTL while the first worker of every site dies by SIGKILL right after its first apply (failpoint
   ``after-apply``); checks every host isolated exactly once (one ``applying`` transition per action, the hosts'
   rulesets == the journal); then the leader daemon is SIGKILLed and the other must fire every TTL release
   through the workers; the deployment's one audit chain (written by the central, the daemons sharing its
   directory; the workers' records queued through PostgreSQL) must verify with its key and anchor and hold every
   routed outcome once. Prints the wall times and the
   throughput (for information: workers, brokers and sshds share the machine's cores). ``--ttl 0``: no daemons,
   one release by hand.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from agent.lab import Lab, labconfig  # noqa: E402
from agent.lab.topology import fleet_names  # noqa: E402
from agent.store import Action, Transition  # noqa: E402
from tests.integration.deploy import (  # noqa: E402
    Processes,
    actions,
    audit_records,
    chain_anchor,
    create_database,
    daemon_health,
    daemon_section,
    isolated,
    lab_services,
    transitions,
    verify_chain,
    wait_for_daemons,
    write_config,
)
from tests.slots import claim  # noqa: E402


def configure(lab: Lab, folder: Path, fleet: list[str], *, database: str, broker: str | None, sites: list[str],
              central: bool) -> Path:
    """One process's configuration (tests/integration/deploy.py): ``broker`` None is the single-machine path."""
    workers = {"broker": broker, "sites": sites, "lease": 5, "wait": 600} if broker else None
    return write_config(lab, folder, labconfig.inventory(lab.state_dir, None, fleet, lab.site_of()),
                        database=database, central=central, workers=workers)


class Run(Processes):
    """The bench's agent processes (tests/integration/deploy.py); a one-shot command that fails stops the bench."""

    def agent(self, on: str, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
        res = self.run(on, [*args, "--config", str(cfg)], timeout=1800)
        if res.returncode != 0:
            raise RuntimeError(f"agent {' '.join(args[:3])} on {on} exited {res.returncode}: "
                               f"{res.stdout[-1500:]}{res.stderr[-1500:]}")
        return res


def one_chain(run: Run, lab: Lab, central: Path, url: str) -> bool:
    """The deployment's one audit chain (docs/workers.md): the central's `agent audit verify` appends what the
    workers queued, then verifies with the deployment key and a signed head as anchor; every settled routed
    action's outcome is in it once, with the worker that settled it; no queued record chained twice."""
    directory = central.parent / "audit"
    anchored = run.run("mgmt", ["audit", "--config", str(central), "anchor"], timeout=600)
    if anchored.returncode != 0:  # on the writer's host: appends what waits, closes with a checkpoint
        raise RuntimeError(f"agent audit anchor exited {anchored.returncode}: {anchored.stderr[-1500:]}")
    recs = audit_records(directory)
    pub = lab.state_dir / "audit-signing.key.pub"
    res, twice = verify_chain(directory, pub, *chain_anchor(directory, pub))
    ids = [r["outbox_id"] for r in recs if "outbox_id" in r]
    rows, _ = journal(url, lab)
    done = {r["action_id"]: r for r in recs if r["event"] in ("action.done", "action.undone") and r.get("worker")}
    settled = [r for r in rows if r.site and r.state == "done"]
    missing = [r.target for r in settled if r.id not in done or done[r.id]["worker"] != r.owner]
    from datetime import datetime
    lag = sorted((datetime.fromisoformat(r["ts"]) - datetime.fromisoformat(r["event_ts"])).total_seconds()
                 for r in recs if "outbox_id" in r)
    print(f"one audit chain: {len(recs)} records, {len(ids)} from site workers, verified with key and anchor: "
          f"{res.returncode == 0}; routed outcomes in it: {len(settled) - len(missing)}/{len(settled)}; "
          f"chained twice: {len(twice)}; a worker's record waited for the chain p50 "
          f"{statistics.median(lag) * 1000:.0f} ms, p99 {pct(lag, 0.99) * 1000:.0f} ms (dead writers included)")
    return res.returncode == 0 and not missing and not twice


def journal(url: str, lab: Lab) -> tuple[list[Action], list[Transition]]:
    return actions(lab, url), transitions(lab, url)


def isolate_latencies(rows: list[Action], trans: list[Transition], label: str = "") -> list[float]:
    """Seconds from intent to done of each isolate action (from the journal's own timestamps); with ``label``,
    also print the median time into each state (where the time goes)."""
    ids = {r.id for r in rows if r.action == "isolate" and r.kind == "apply"}
    first: dict[str, Any] = {}
    done: dict[str, Any] = {}
    steps: dict[str, list[float]] = {}
    last: dict[str, Any] = {}
    for t in trans:
        if t.action_id in ids and t.action_id not in done:  # up to its first done (release adds done -> done)
            first.setdefault(t.action_id, t.at)
            if t.action_id in last:
                steps.setdefault(t.to_state, []).append((t.at - last[t.action_id]).total_seconds() * 1000)
            last[t.action_id] = t.at
            if t.to_state == "done":
                done[t.action_id] = t.at
    if label:
        print(f"  {label}: median ms into " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in steps.items()))
    return [(done[i] - first[i]).total_seconds() for i in ids if i in done]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_daemons(run: Run, lab: Lab, central: Path) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    """Two ``agent daemon`` processes on the central configuration (no fleet credentials; the central's audit
    directory: one chain for the deployment, shared), on mgmt; returns once both answer and one leads."""
    out: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    for name in ("daemon-a", "daemon-b"):
        section, url = daemon_section(lab)
        cfg = run.root / name / "agent.yaml"
        cfg.parent.mkdir()
        cfg.write_text(central.read_text() + section)
        out[name] = (run.start_daemon(name, cfg), url)
    wait_for_daemons(run, {name: url for name, (_proc, url) in out.items()}, timeout=60)
    return out


def health(lab: Lab, url: str) -> str:
    return daemon_health(lab, url)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--sites", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="workers per site")
    ap.add_argument("--slots", type=int, default=8, help="actions at once per worker")
    ap.add_argument("--sample", type=int, default=10, help="site1 hosts for the per-action overhead")
    ap.add_argument("--no-kill", action="store_true", help="do not SIGKILL a worker of each site mid-run")
    ap.add_argument("--ttl", type=int, default=120, metavar="S",
                    help="contain with this TTL, run two daemons, SIGKILL the leader and wait for the other to "
                         "release every host (0: release by hand, no daemons)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("scaleout_sites: needs root (the lab)", file=sys.stderr)
        return 2
    fleet = fleet_names(args.hosts, args.sites)
    with claim(["cbs", "cbs2", "cbs3"], "bench lab prefixes") as prefix, \
            tempfile.TemporaryDirectory(prefix="scaleout-bench-") as tmp:
        root = Path(tmp)
        lab = Lab(prefix=prefix, fleet=args.hosts, sites=args.sites)
        start = time.monotonic()
        lab.up(rebuild=True)
        print(f"lab: {args.hosts} hosts over {args.sites} sites up in {time.monotonic() - start:.1f} s")
        run = Run(lab, root)
        try:
            with lab_services(lab, "bench-pg-") as scale:
                return bench(run, lab, fleet, args, scale.pg.url, scale.broker_url)
        finally:
            run.stop_all()
            lab.down()


def bench(run: Run, lab: Lab, fleet: list[str], args: argparse.Namespace, pg: str, broker: str) -> int:
    root = run.root
    where = lab.site_of()
    sites = sorted(set(where.values()))
    site1 = [h for h in fleet if where[h] == "site1"]
    warm, sample = site1[0], site1[1:args.sample + 1]  # the first action of a process pays its imports: not counted
    ok = True

    # 1. per-action overhead: single-machine path on wk1 vs routed through the queue, one host per command
    local = configure(lab, root / "local", fleet, database=str(root / "local" / "agent.db"), broker=None,
                         sites=[], central=False)
    for host in sample:
        run.agent("wk1", local, "contain", "--host", host, "--yes", "-p", "capture_evidence=false")
    run.agent("wk1", local, "release", "--host", ",".join(sample), "--yes", "--count", str(len(sample)))
    run.agent("wk1", local, "contain", "--host", warm, "--yes", "-p", "capture_evidence=false")  # like routed
    run.agent("wk1", local, "release", "--host", warm, "--yes")
    from agent.store import Store
    store = Store(f"sqlite:///{root / 'local' / 'agent.db'}")
    with store.session() as s:
        base = isolate_latencies([r for r in s.scalars(select(Action)) if r.target != warm],
                                 list(s.scalars(select(Transition))), "single machine")
    store.close()
    url = create_database(lab, pg, "overhead")
    central = configure(lab, root / "central1", fleet, database=url, broker=broker, sites=sites, central=True)
    worker_cfg = configure(lab, root / "worker1", fleet, database=url, broker=broker, sites=sites, central=False)
    run.start_worker("overhead-w", "site1", worker_cfg, slots=1)
    run.agent("mgmt", central, "contain", "--host", warm, "--yes", "-p", "capture_evidence=false")
    run.agent("mgmt", central, "release", "--host", warm, "--yes")
    for host in sample:
        run.agent("mgmt", central, "contain", "--host", host, "--yes", "-p", "capture_evidence=false")
    run.agent("mgmt", central, "release", "--host", ",".join(sample), "--yes", "--count", str(len(sample)))
    run.stop_all()
    rows, trans = journal(url, lab)
    routed = isolate_latencies([r for r in rows if r.target != warm], trans, "routed")
    added50 = (statistics.median(routed) - statistics.median(base)) * 1000
    added99 = (pct(routed, 0.99) - pct(base, 0.99)) * 1000
    print(f"per action, intent -> done ({len(sample)} isolates each): single machine p50 "
          f"{statistics.median(base) * 1000:.0f} ms p99 {pct(base, 0.99) * 1000:.0f} ms; routed p50 "
          f"{statistics.median(routed) * 1000:.0f} ms p99 {pct(routed, 0.99) * 1000:.0f} ms")
    print(f"added by queue + PostgreSQL: p50 {added50:+.0f} ms (target <= 50), p99 {added99:+.0f} ms "
          f"(target <= 200)")

    # 2. the outbreak: all hosts, W workers per site, the first of each site killed after its first apply
    url = create_database(lab, pg, "outbreak")
    central = configure(lab, root / "central2", fleet, database=url, broker=broker, sites=sites, central=True)
    worker_cfg = configure(lab, root / "worker2", fleet, database=url, broker=broker, sites=sites, central=False)
    doomed = []
    for site in sites:
        for n in range(args.workers):
            kill = {"AGENT_FAILPOINTS": "after-apply"} if n == 0 and not args.no_kill else {}
            proc = run.start_worker(f"{site}-{n}", site, worker_cfg, slots=args.slots, **kill)
            if kill:
                doomed.append(proc)
    daemons = start_daemons(run, lab, central) if args.ttl else {}
    start = time.monotonic()
    run.agent("mgmt", central, "contain", "--tag", "fleet", "--yes", "--count", str(len(fleet)),
              "-p", "capture_evidence=false", "--reason", "outbreak bench",
              *(["--ttl", f"{args.ttl}s"] if args.ttl else []))
    took = time.monotonic() - start
    killed = sum(p.poll() == -signal.SIGKILL for p in doomed)
    rows, trans = journal(url, lab)
    acts = [r for r in rows if r.action == "isolate" and r.kind == "apply"]
    applying: dict[str, int] = {}
    for t in trans:
        if t.to_state == "applying" and t.from_state != "applying":
            applying[t.action_id] = applying.get(t.action_id, 0) + 1
    taken_over = sum(1 for t in trans if "not re-applied" in t.detail)
    on_hosts = isolated(lab, fleet)
    once = sorted(r.target for r in acts) == sorted(fleet) and all(r.state == "done" for r in acts) \
        and all(applying.get(r.id) == 1 for r in acts)
    print(f"contain {len(fleet)} hosts: {took:.1f} s ({len(fleet) / took:.1f} hosts/s); workers SIGKILLed "
          f"{killed}/{len(doomed)}; taken over and found applied: {taken_over}; every host isolated exactly "
          f"once: {once}; hosts isolated (nft) {len(on_hosts)}/{len(fleet)}")
    ok &= once and on_hosts == set(fleet) and killed == len(doomed)
    if daemons:  # the leader dies; the other must take the scheduler over and fire every TTL release
        leader = next(n for n in daemons if health(lab, daemons[n][1]) == "leader")
        daemons[leader][0].kill()
        killed_at = time.monotonic()
        other = next(n for n in daemons if n != leader)
        deadline = killed_at + 15
        while health(lab, daemons[other][1]) != "leader" and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"leader daemon SIGKILLed; the other leads after {time.monotonic() - killed_at:.1f} s")
        deadline = time.monotonic() + args.ttl + 180
        left = set(fleet)
        while left and time.monotonic() < deadline:
            time.sleep(5)
            left = isolated(lab, fleet)
        rows, _ = journal(url, lab)
        undos = [r for r in rows if r.action == "isolate" and r.kind == "undo"]
        once = sorted(r.target for r in undos) == sorted(fleet) and all(r.state == "done" for r in undos)
        print(f"TTL releases fired by the new leader through the workers: hosts still isolated {len(left)}; "
              f"one undo per host, done: {once}")
        ok &= not left and once
    else:
        start = time.monotonic()
        run.agent("mgmt", central, "release", "--tag", "fleet", "--yes", "--count", str(len(fleet)))
        took = time.monotonic() - start
        left = isolated(lab, fleet)
        print(f"release {len(fleet)} hosts: {took:.1f} s; hosts still isolated: {len(left)}")
        ok &= not left
    ok &= one_chain(run, lab, central, url)
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
