"""Issue 19's acceptance as a test: an outbreak of 100 hosts over 3 sites, contained by one command while a worker
of each site and the leader daemon die by SIGKILL.

Everything is real and private: ``agent lab up --hosts 100 --sites 3`` (h01-h34 at site1 on 10.77.17.0/24,
h35-h67 at site2, h68-h100 at site3; each site segment reachable only from its worker host ``wkK``, whose leg
there is a management address), PostgreSQL and RabbitMQ on the management host, two ``agent worker`` processes
per site on its worker host, two ``agent daemon`` processes and the central CLI on mgmt — with **no credentials
for the fleet** in their inventory (mgmt cannot even reach it). The inventory tags the 100 hosts ``outbreak``.

1. Before anything: from ``obsK`` (a bare neighbour on site K's segment, not a management address) every host's
   echo port and sshd answer — the probe can see them.
2. One ``agent contain --tag outbreak --ttl 75s`` from mgmt. While it runs: site1's first worker SIGKILLs itself
   right after its first apply reached a host, before journaling it (failpoint ``after-apply``: the worst moment);
   the test SIGKILLs site2's and site3's first workers once a quarter of their site is done, at an instant they
   hold at least two unfinished actions (frozen by SIGSTOP while the journal is read, then killed); the test
   SIGKILLs the leader daemon once half of the outbreak is done. Each kill is proven mid-run: the journal as the
   process died shows the site's unfinished actions, among them the dead worker's own.
3. The contain ends ``done``. Every host isolated exactly once: one isolate action per host, done, run by a
   worker of its site (never the central), one ``applying`` transition each; the dead workers' unfinished actions
   were taken over by the site's other worker; each host's nft table == the journal's verified rules == the
   rules the management addresses call for.
4. Verified by probe, twice. The product's own: every fleet host names its segment's observer as ``probe_from``
   (connectors/ssh_linux/outside.py), so each isolate's verify — run by the site's worker — logs in to ``obsK``
   and tries the host's listening ports from there; the journal's verification holds the verdict. And one from
   outside the agent: from ``obsK`` every host's ports time out (dropped, not refused: nothing reached it) while
   the site worker's management SSH still gets in. The two agree port by port (echo and sshd: blocked).
5. The surviving daemon leads; its scheduler fires every TTL release through the workers: one undo per host,
   done, created after the leader died, run by a worker of the site, chained by the surviving daemon. Each host's
   table is gone and the probe from ``obsK`` reaches every port again.
6. The deployment's one audit chain (workers queue their records through PostgreSQL; the central CLI and the
   daemons share its directory) verifies with the signing key, the fingerprint counsel received beforehand and
   the signed head anchored after the contain, and holds each host's isolate and release as its worker recorded
   them, each queued record once.

Lab, brokers and processes are private and stopped by PID; the lab prefix is claimed (``cob``…) and torn down.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab.topology import MGMT_ADDRESS, observer_host, worker_host
from tests.integration.deploy import create_database, daemon_section, site_lab, verify_chain, wait_for_daemons
from tests.integration.outbreak_deploy import (
    AGENT,
    ECHO,
    FLEET,
    HOSTS,
    SITES,
    SLOTS,
    SSH,
    TAG,
    TTL,
    Kill,
    Outbreak,
    audit_records,
    handle_of_one_load,
    health,
    host_states,
    kill_and_look,
    kill_if_holding,
    owner_pid,
    probe,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def outbreak(tmp_path: Path) -> Iterator[Outbreak]:
    with site_lab("cob", hosts=HOSTS, sites=SITES, pg_prefix="outbreak-pg-") as scale:
        key = tmp_path / "audit-signing.key"
        made = subprocess.run([AGENT, "audit", "init-key", "--out", str(key)], capture_output=True, text=True,
                              timeout=60, check=True)
        [fingerprint] = [ln.split()[-1] for ln in made.stdout.splitlines() if ln.startswith("fingerprint:")]
        url = create_database(scale.lab, scale.pg.url, "outbreak")  # a database of its own, as a deployment would
        ob = Outbreak(scale.lab, tmp_path, url, scale.broker_url, key, fingerprint)
        try:
            yield ob
        finally:
            ob.stop_all()


# -- the test ------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
@pytest.mark.alone  # 100 hosts, workers, brokers, two daemons: the two cores, TTL-bound (tests/alone.py)
def test_outbreak_100_hosts_3_sites_workers_and_leader_killed(outbreak: Outbreak):
    ob = outbreak
    assert [len(hosts) for hosts in ob.sites.values()] == [34, 33, 33]
    before = probe(ob)  # 1. the probe sees every host before containment
    assert set(before.values()) == {"open"}, {k: v for k, v in before.items() if v != "open"}
    workers, daemons = start_deployment(ob)
    leader = next(n for n, u in daemons.items() if health(ob, u) == "leader")
    other = next(n for n in daemons if n != leader)
    started = time.monotonic()
    kills = contain_while_killing(ob, workers, leader)  # 2.
    applies = assert_isolated_exactly_once(ob, workers, kills)  # 3.
    assert_isolated_as_seen_from_outside(ob, applies)  # 4.
    assert not [r for r in ob.actions() if r.kind == "undo"], \
        f"a TTL release fired before the probe ({time.monotonic() - started:.0f} s > TTL {TTL} s): raise TTL"
    print(f"isolation checked on the hosts and probed: {time.monotonic() - started:.1f} s after the contain "
          f"started (the first TTL release is due at {TTL} s)")
    anchor = subprocess.run([AGENT, "audit", "anchor", "--dir", str(ob.root / "central" / "audit"), "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert anchor.returncode == 0, anchor.stdout + anchor.stderr
    (ob.root / "central-anchor.json").write_text(anchor.stdout)
    # 5. the surviving daemon leads and fires every TTL release through the workers
    wait_for(lambda: health(ob, daemons[other]) == "leader", 15, f"{other} to lead after {leader} died")
    undos = assert_released_by_ttl(ob, workers, applies, other, kills[leader])
    print(f"released by TTL: {time.monotonic() - started:.1f} s after the contain started")
    after = probe(ob)
    assert set(after.values()) == {"open"}, {k: v for k, v in after.items() if v != "open"}
    ob.stop_all()
    assert_audit_verifies(ob, applies, undos, ob.procs[other].pid)  # 6.


def start_deployment(ob: Outbreak) -> tuple[dict[str, list[subprocess.Popen[bytes]]], dict[str, str]]:
    """2 workers per site on its worker host (site1's first dies at its first apply), 2 daemons on mgmt started
    at once (as two hosts' service managers would), one of them leading. Returns the workers per site and each
    daemon's base URL."""
    workers: dict[str, list[subprocess.Popen[bytes]]] = {}
    for site in ob.sites:
        workers[site] = [
            ob.start_worker(f"{site}-{n}", site, ob.config(f"{site}-{n}", central=False), slots=SLOTS,
                            **({"AGENT_FAILPOINTS": "after-apply"} if (site, n) == ("site1", "a") else {}))
            for n in ("a", "b")]
    daemons: dict[str, str] = {}
    for name in ("daemon-a", "daemon-b"):
        section, daemons[name] = daemon_section(ob.lab)
        ob.start_daemon(name, ob.config(name, central=True, extra=section))
    wait_for_daemons(ob, daemons)
    return workers, daemons


def contain_while_killing(ob: Outbreak, workers: dict[str, list[subprocess.Popen[bytes]]], leader: str
                          ) -> dict[str, Kill]:
    """One ``agent contain --tag outbreak`` from mgmt; meanwhile the first worker of each site and the leader
    daemon die by SIGKILL (site1's by its failpoint, the others by the test), each while its share is unfinished."""
    sites = ob.sites
    started = time.monotonic()
    contain = ob.background("mgmt", ["contain", "--tag", TAG, "--yes", "--count", str(HOSTS), "--ttl", f"{TTL}s",
                                     "--json", "-p", "capture_evidence=false", "--reason", "ransomware outbreak drill",
                                     "--config", str(ob.config("central", central=True))])
    kills: dict[str, Kill] = {}
    try:
        deadline = time.monotonic() + 300
        while contain.poll() is None and time.monotonic() < deadline:
            acts = [r for r in ob.actions() if r.action == "isolate" and r.kind == "apply"]
            done = {s: sum(1 for r in acts if r.site == s and r.state == "done") for s in sites}
            for site, (doomed, _) in workers.items():
                if site in kills:
                    continue
                if site == "site1" and doomed.poll() is not None:  # its failpoint fired
                    kills[site] = kill_and_look(ob, doomed, site)
                elif site != "site1" and done[site] >= len(sites[site]) // 4 and (kill := kill_if_holding(
                        ob, doomed, site, at_least=2 if done[site] < len(sites[site]) // 2 else 1)) is not None:
                    kills[site] = kill  # two of its own wanted; late in the site's run, one will do
            if leader not in kills and sum(done.values()) >= HOSTS // 2:
                kills[leader] = kill_and_look(ob, ob.procs[leader], None)
            time.sleep(0.2)
        out, err = contain.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if contain.poll() is None:
            contain.kill()
            contain.communicate(timeout=30)
    assert contain.returncode == 0, (contain.returncode, out[-3000:], err[-3000:])
    assert json.loads(out)["status"] == "done"
    print(f"\ncontain {HOSTS} hosts over {SITES} sites: {time.monotonic() - started:.1f} s "
          f"(lab up {ob.lab.timings['up']:.1f} s)")
    # every kill landed mid-run: the site still had unfinished actions, the dead worker some of them
    assert sorted(kills) == sorted([*sites, leader]), (sorted(kills), {s: ob.log(f"{s}-a") for s in sites})
    for site in sites:
        assert kills[site].held and set(kills[site].held) <= set(kills[site].unfinished), (site, kills[site])
    assert kills[leader].unfinished, "the leader daemon died after the contain had finished"
    print("; ".join(f"{who} SIGKILLed with {len(k.unfinished)} unfinished ({len(k.held)} its own)"
                    for who, k in kills.items()))
    return kills


def assert_isolated_exactly_once(ob: Outbreak, workers: dict[str, list[subprocess.Popen[bytes]]],
                                 kills: dict[str, Kill]) -> list[Any]:
    """One isolate per host, done, by a worker of its site, one ``applying`` each; the dead workers' unfinished
    actions finished by the site's other worker; on each host: the table the journal verified, loaded once."""
    from connectors.ssh_linux.rules import nft_expected, nft_script
    from connectors.ssh_linux.validation import parse_management
    acts = [r for r in ob.actions() if r.action == "isolate"]
    applies = [r for r in acts if r.kind == "apply"]
    assert sorted(r.target for r in applies) == sorted(FLEET) and not [r for r in acts if r.kind == "undo"]
    assert {r.target: r.state for r in applies} == dict.fromkeys(FLEET, "done")
    trans = ob.transitions()
    entered: dict[str, int] = {}
    for t in trans:
        if t.to_state == "applying" and t.from_state != "applying":
            entered[t.action_id] = entered.get(t.action_id, 0) + 1
    assert {r.target: entered.get(r.id, 0) for r in applies} == dict.fromkeys(FLEET, 1)
    where = ob.lab.site_of()
    for r in applies:
        assert r.site == where[r.target], (r.target, r.site)
        assert owner_pid(r.owner) in {p.pid for p in workers[r.site]}, (r.target, r.owner)
    verifying: dict[str, Any] = {}
    checked = []  # seconds from verifying to done, each isolate (its outside probe included)
    for t in trans:
        if t.to_state == "verifying":
            verifying[t.action_id] = t.at
        elif t.to_state == "done" and t.action_id in verifying:
            checked.append((t.at - verifying.pop(t.action_id)).total_seconds())
    print(f"verify incl. the product's outside probe: median {sorted(checked)[len(checked) // 2]:.1f} s, "
          f"max {max(checked):.1f} s ({len(checked)} verifications)")
    taken = {t.action_id for t in trans if "not re-applied" in t.detail or "reconciled" in t.detail}
    print(f"taken over from dead workers and reconciled from the host: {len(taken)}")
    by_id = {r.id: r for r in applies}
    for site in ob.sites:
        survivor = workers[site][1].pid
        assert all(owner_pid(by_id[i].owner) == survivor for i in kills[site].held), site
    mgmt = parse_management([MGMT_ADDRESS, *(f"10.77.{16 + k}.1" for k in range(1, SITES + 1))])
    expected = nft_expected(mgmt, SSH)
    on_hosts = host_states(ob.lab)
    assert {h: st.timer for h, st in on_hosts.items() if st.timer} == {}, "dead-man timers left armed"
    once = handle_of_one_load(nft_script(mgmt, SSH))
    assert {h: st.handle for h, st in on_hosts.items()} == dict.fromkeys(FLEET, once), "loaded more than once"
    for r in applies:
        seen = on_hosts[r.target].table
        assert seen is not None, f"{r.target}: no containment table, but the journal says done"
        assert "deadman" not in r.verification["observed"], (r.target, r.verification)
        rules = {c: v["rules"] for c, v in seen.items()}
        assert rules == r.verification["observed"]["rules"] == expected, (r.target, rules, r.verification)
        assert {c: v["policy"] for c, v in seen.items()} == dict.fromkeys(("input", "output", "forward"), "drop")
    return applies


def assert_isolated_as_seen_from_outside(ob: Outbreak, applies: list[Any]) -> None:
    """From the segment's observer every port of every host times out (dropped: nothing reached the host, not even
    a refusal); from the site's worker (a management address) its sshd still answers. And the product says the
    same: each isolate's verification carries its own probe from that observer (``probe_from``: the site's worker
    logged in to it and tried the host's listening ports), which found every port blocked — the verdict the
    journal holds agrees, port by port, with the one taken here from outside the agent."""
    where = ob.lab.site_of()
    seen = probe(ob)
    outside = {(h, p): seen[(observer_host(where[h]), h, p)] for h in FLEET for p in (ECHO, SSH)}
    assert outside == {(h, p): "timeout" for h in FLEET for p in (ECHO, SSH)}
    assert {h: seen[(worker_host(where[h]), h, SSH)] for h in FLEET} == dict.fromkeys(FLEET, "open")
    # the product's probe (connectors/ssh_linux/outside.py: "blocked" is timeout(1)'s 124, a refusal "refused")
    said = {r.target: r.verification["observed"].get("outside_probe") for r in applies}
    assert {h: (rec or {}).get("from") for h, rec in said.items()} == \
        {h: ob.lab.hosts[observer_host(where[h])].address for h in FLEET}, said
    assert {h: rec.get("error") for h, rec in said.items() if rec.get("error")} == {}
    as_lab_says = {"blocked": "timeout", "refused": "refused", "open": "open"}
    assert {(h, int(p)): as_lab_says.get(v, v) for h, rec in said.items() for p, v in rec["ports"].items()} == \
        outside, "the product's probe and the one from outside disagree"


def assert_released_by_ttl(ob: Outbreak, workers: dict[str, list[subprocess.Popen[bytes]]], applies: list[Any],
                           survivor: str, leader_killed: Kill) -> list[Any]:
    """Every host's table (and any timer) gone; one undo per isolate, done, created after the leader died, run by
    a worker of the host's site and recorded by the surviving daemon."""
    wait_for(lambda: not [st for st in host_states(ob.lab).values() if st.table or st.timer], TTL + 120,
             "every TTL release", every=3)
    wait_for(lambda: {r.state for r in ob.actions() if r.kind == "undo"} == {"done"}, 60, "the undos to settle")
    where = ob.lab.site_of()
    undos = [r for r in ob.actions() if r.action == "isolate" and r.kind == "undo"]
    assert sorted(r.target for r in undos) == sorted(FLEET)
    assert {r.undo_of for r in undos} == {r.id for r in applies}
    for r in undos:
        assert r.state == "done" and r.site == where[r.target] and r.created_at > leader_killed.at, r.target
        assert owner_pid(r.owner) in {p.pid for p in workers[r.site]}, (r.target, r.owner)
    def released() -> set[str]:  # the workers' records of the releases, appended by the surviving daemon
        return {r["action_id"] for r in audit_records(ob.root / "central" / "audit") if r["event"] == "action.undone"}
    wait_for(lambda: {r.id for r in undos} <= released(), 30, f"{survivor} to chain the TTL releases")
    return undos


def assert_audit_verifies(ob: Outbreak, applies: list[Any], undos: list[Any], survivor_pid: int) -> None:
    """The deployment's one audit chain (docs/workers.md) verifies: signing key, the fingerprint received
    beforehand, the signed head anchored after the contain; it holds every host's isolate and release as the site
    worker recorded them, each queued record once; every release was journaled by the surviving daemon."""
    pub = ob.signing_key.with_name(ob.signing_key.name + ".pub")
    logs = sorted({p.parent.parent for p in ob.root.glob("*/audit/*.jsonl")})
    assert [p.name for p in logs] == ["central"]
    res, twice = verify_chain(ob.root / "central" / "audit", pub, ob.fingerprint, ob.root / "central-anchor.json")
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-2000:])
    assert not twice, f"a worker's record was chained twice: {twice}"
    chain = audit_records(ob.root / "central" / "audit")
    by_worker = {(r["action_id"], r["worker"]) for r in chain if r["event"] in ("action.done", "action.undone")
                 and r.get("worker")}
    assert {(r.id, r.owner) for r in [*applies, *undos]} <= by_worker
    fired_by = {r["action_id"]: r.get("pid") for r in chain if r["event"] == "action.intent"}
    assert {r.target: fired_by.get(r.id) for r in undos} == dict.fromkeys(FLEET, survivor_pid)
