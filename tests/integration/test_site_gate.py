"""No target lock held while a site answers; a drift re-apply and a release of one containment ordered on the
worker (agent/workers/gate.py) — over a real RabbitMQ, a real PostgreSQL and real lab hosts (issue 19).

The lab, the private PostgreSQL and RabbitMQ and the per-test deployment are test_site_workers.py's (its
``scale`` and ``deploy`` fixtures): h01-h03 at ``site1``, h04-h06 at ``site2``, each reachable only from its site's
worker host; the central (CLI, daemons) has no credentials for them.

- A daemon's drift check waiting on a site whose only worker is frozen (SIGSTOP) no longer holds the lock of every
  routed containment: a release of a host at another site, asked of the same daemon meanwhile, is done while the
  frozen site's read is still pending. Before: the release waited until that read was given up.
- A drift re-apply stopped (failpoint ``reapply-gated:stop``) after it took the action's gate and found no
  release, and a release of the same containment planned right then: the release's undo waits for the gate
  (``worker.gate_wait``), the re-apply finishes, then the undo — the host ends released, journal == nft, one
  re-apply and one undo. Before: the undo ran at once and the re-apply, continued, isolated the released host
  again while the journal said it was released.
- The same, the re-applier stopped past its lease: the undo waits one lease, takes the gate and releases; the
  continued re-applier's first transition is fenced, nothing sent. Before: the host was isolated again.
- The other order: a release stopped on its worker right after the undo reached the host (``after-undo:stop``);
  a drift read-back then reports the release under way, not drift, and a re-apply request does not re-apply.
  Before: the read-back journaled and audited the release as drift.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import tests.integration.test_site_workers as site_workers
from agent.store import Action, AuditOutbox
from connectors.ssh_linux.rules import TABLE
from tests.integration.cli.test_contain_cli import AGENT
from tests.integration.test_site_workers import (
    Deployment,
    audit_records,
    isolated,
    owner_pid,
    rows,
    site_reads,
    start_daemons,
    transitions,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

scale, deploy = site_workers.scale, site_workers.deploy  # that module's fixtures, for this module's tests


def stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP): state ``T`` in /proc/PID/stat (proc(5))."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@contextmanager
def continued_at_the_end(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """A process the test stops is continued however the test ends (the deployment then stops it by SIGTERM)."""
    try:
        yield
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)


def contain(d: Deployment, *hosts: str) -> None:
    res = d.agent("contain", *(a for h in hosts for a in ("--host", h)), "--yes", "-p", "capture_evidence=false",
                  "--json")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]


def isolate_row(d: Deployment, host: str) -> Action:
    [row] = [r for r in rows(d) if r.action == "isolate" and r.kind == "apply" and r.target == host]
    return row


def ask(d: Deployment, kind: str, row: Action) -> str:
    """Journal and queue one read of ``row`` for site1's workers, as a daemon's drift check does; its id."""
    from agent.store import Store
    from agent.workers.config import WorkersConfig
    from agent.workers.reads import SiteReads
    with d.scale.lab.enter("mgmt"):
        store = Store(d.url)
        reads = SiteReads(store, WorkersConfig(broker=d.scale.broker.url, sites=("site1",), lease=30),
                          "test:0", claim_within=20, finish_within=60)
        try:
            return reads.request("site1", kind, target=row.target, action=row.action, action_id=row.id,
                                 cause="test")
        finally:
            reads.close()
            store.close()


def lease_free(d: Deployment, action_id: str) -> bool:
    from agent.workers.lease import db_now

    def free(s: Any) -> bool:
        row = s.get(Action, action_id)
        return row is not None and (row.lease_until is None or row.lease_until < db_now(s))
    return bool(d.db()(free))


def read_of(d: Deployment, read_id: str) -> Any:
    return next(r for r in site_reads(d) if r.id == read_id)


def records(d: Deployment, event: str) -> list[dict[str, Any]]:
    """``event`` records of the workers, wherever they are now: queued in the outbox or drained into the chain."""
    queued = d.db()(lambda s: [r.record for r in s.scalars(select(AuditOutbox))])
    chained = audit_records(d.root / "central" / "audit") if (d.root / "central" / "audit").exists() else []
    seen, out = set(), []
    for r in [*queued, *chained]:
        key = (r.get("event"), r.get("event_ts"), r.get("action_id"), r.get("worker"))
        if r.get("event") == event and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def test_a_release_is_not_held_up_by_a_drift_check_waiting_on_a_frozen_site(deploy: Deployment):
    """h01 (site1) and h04 (site2) contained; a daemon checks drift every second (``drift_policy: reapply``).
    site1's only worker is frozen (SIGSTOP), so each drift pass waits for h01's read until it is given up
    (``workers.lease`` + ``ssh.connect_timeout`` = 8 s here; ≈ 115 s when a worker took it and froze). Meanwhile
    an alert asks the same daemon to release h04: the release is done, through site2's worker, while h01's read
    is still pending. Fails before: the pass held the lock of every routed containment (h04's too, and across
    daemons) until the read was given up, so the release only started after it."""
    d, lab = deploy, deploy.scale.lab
    frozen = d.worker("site1-a", "site1")
    d.worker("site2-a", "site2")
    contain(d, "h01", "h04")
    assert isolated(lab) == {"h01", "h04"}
    (d.root / "rules.yaml").write_text("rules:\n  - name: lift\n    match: {source: gen, rule_id: lift-*}\n"
                                       "    runbook: release-host\n")
    daemons = start_daemons(d, ("daemon-a",), "  reverify_interval: 1s\n  drift_policy: reapply\n")
    url = daemons["daemon-a"][1]
    h01 = isolate_row(d, "h01")
    wait_for(lambda: any(r.target == "h04" and r.state == "done" for r in site_reads(d)), 30,
             "the daemon's drift check to have read h04 through site2's worker")
    with continued_at_the_end(frozen):
        os.kill(frozen.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(frozen.pid), 10, "site1's worker to be stopped")
        wait_for(lambda: any(r.target == "h01" and r.state in ("queued", "running") for r in site_reads(d)), 30,
                 "a drift pass to wait on h01's read")  # queued, or taken by the worker just before it froze
        pending = next(r for r in site_reads(d) if r.target == "h01" and r.state in ("queued", "running"))
        asked = time.monotonic()
        with lab.enter("mgmt"):
            res = httpx.post(url + "/alerts/gen", json={"rule_id": "lift-1", "host": "h04", "severity": 90},
                             headers={"Authorization": "Bearer tok-123456789"}, timeout=10)
        assert res.status_code == 202, res.text

        def released() -> bool:
            return any(r.target == "h04" and r.kind == "undo" and r.state == "done" for r in rows(d)) \
                and "h04" not in isolated(lab)
        wait_for(released, 60, "h04's release through site2's worker")
        took = time.monotonic() - asked
        still = read_of(d, pending.id)
        assert still.state in ("queued", "running"), (
            f"h04's release took {took:.1f}s and finished only after h01's read was settled "
            f"({still.state}: {still.error}) — it waited for the drift pass")
        assert isolated(lab) == {"h01"}
        if still.state == "queued":  # given up in its time, naming the site (nobody of the site read it)
            wait_for(lambda: read_of(d, pending.id).state == "failed", 30, "h01's read to be given up")
            assert "no worker of site site1 took the drift re-apply of h01" in str(read_of(d, pending.id).error)
    [undo] = [r for r in rows(d) if r.target == "h04" and r.kind == "undo"]
    assert (undo.state, undo.site) == ("done", "site2")
    assert isolate_row(d, "h04").undone_at is not None and isolate_row(d, "h01").undone_at is None
    assert h01.state == "done" and "h01" in isolated(lab)


def test_a_release_planned_while_a_reapply_holds_the_gate_undoes_after_it(deploy: Deployment,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """h01 drifted (its table deleted behind the agent's back); a re-apply is asked of site1. Its worker stops
    (``reapply-gated:stop``) holding the action's gate, having found no release and journaled the drift, nothing
    sent yet. A release of h01 is planned right then; site1's other worker claims the undo and waits for the gate
    (``worker.gate_wait``) instead of undoing. The re-apply goes on (re-isolates), then the undo runs: h01 ends
    released, as the release asked — one re-apply, one undo, in that order, journal == nft. Fails before: the
    undo ran at once and the continued re-apply isolated the released host again (journal: undone)."""
    monkeypatch.setattr(site_workers, "LEASE", 30)  # the stopped worker's leases outlast the test's steps
    d, lab = deploy, deploy.scale.lab
    first = d.worker("site1-a", "site1", slots=1, AGENT_FAILPOINTS="reapply-gated:stop")
    contain(d, "h01")
    row = isolate_row(d, "h01")
    lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])  # drift
    wait_for(lambda: lease_free(d, row.id), 40, "nobody to hold h01's action (the contain's lease)")
    read_id = ask(d, "reapply", row)
    with continued_at_the_end(first):
        wait_for(lambda: stopped(first.pid), 60, "site1-a to stop holding the gate, about to re-apply")
        assert isolated(lab) == set()
        second = d.worker("site1-b", "site1")
        release = subprocess.Popen(["ip", "netns", "exec", d.scale.mgmt, AGENT, "release", "--host", "h01", "--yes",
                                    "--json", "--config", str(d.central)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=d.env(), stdin=subprocess.DEVNULL)
        try:
            def undo() -> Action | None:
                found = [r for r in rows(d) if r.kind == "undo" and r.target == "h01"]
                return found[0] if found else None
            def waits_or_done() -> bool:  # new code: it waits at the gate; before: it ran at once
                found = undo()
                return bool(records(d, "worker.gate_wait")) or (found is not None and found.state == "done")
            wait_for(waits_or_done, 60, "site1-b to take the undo")
            mine = undo()
            at_the_gate = mine.state if mine is not None else None  # intent: waiting for the gate, nothing sent
            os.kill(first.pid, signal.SIGCONT)
            out, err = release.communicate(timeout=180)
        finally:
            if release.poll() is None:
                release.kill()
                release.communicate(timeout=30)
    assert release.returncode == 0, (release.returncode, out[-2000:], err[-2000:])
    wait_for(lambda: read_of(d, read_id).state == "done", 60, "the re-apply's read to settle")
    after = isolate_row(d, "h01")
    assert isolated(lab) == set(), (
        f"h01 is isolated after its release (journal: undone at {after.undone_at}); the undo "
        f"{'waited' if at_the_gate == 'intent' else 'did not wait'} for the re-apply holding the gate")
    # the host ends released, and the journal says so; the undo waited at the gate, then ran after the re-apply
    assert at_the_gate == "intent", at_the_gate
    [waited] = records(d, "worker.gate_wait")
    assert (waited["undo_of"], owner_pid(waited["worker"])) == (row.id, second.pid)
    assert owner_pid(waited["holder"].split()[0]) == first.pid
    assert read_of(d, read_id).result["outcome"] == "done"
    assert after.undone_at is not None and after.state == "done" and after.lease_until is None
    [undone] = [r for r in rows(d) if r.kind == "undo" and r.target == "h01"]
    assert undone.state == "done" and owner_pid(undone.owner) == second.pid
    trans = transitions(d)
    reapplied = [t for t in trans if t.action_id == row.id and (t.from_state, t.to_state) == ("done", "applying")]
    assert len(reapplied) == 1
    reapply_done = [t.id for t in trans if t.action_id == row.id and t.to_state == "done"
                    and t.detail.startswith("re-applied after drift")]
    undo_sent = [t.id for t in trans if t.action_id == undone.id and t.to_state == "applying"]
    assert len(reapply_done) == 1 and len(undo_sent) == 1 and reapply_done[0] < undo_sent[0]


def test_a_drift_read_during_a_release_is_not_drift_and_is_not_reapplied(deploy: Deployment,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """h01's release is stopped on its worker right after the undo reached the host (``after-undo:stop``: nft
    table gone, the undo not journaled yet, the action's gate held). A read-back of h01 asked then reports the
    release under way — not drift: nothing journaled or audited as drift — and a re-apply asked then sends
    nothing. The undo then finishes: released, once. Fails before: the read-back journaled ``re-verified drift``
    and audited ``containment.drift`` for a host being released on purpose."""
    monkeypatch.setattr(site_workers, "LEASE", 30)
    d, lab = deploy, deploy.scale.lab
    releaser = d.worker("site1-b", "site1", slots=1, AGENT_FAILPOINTS="after-undo:stop")  # takes nothing more
    contain(d, "h01")
    row = isolate_row(d, "h01")
    release = subprocess.Popen(["ip", "netns", "exec", d.scale.mgmt, AGENT, "release", "--host", "h01", "--yes",
                                "--json", "--config", str(d.central)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=d.env(), stdin=subprocess.DEVNULL)
    with continued_at_the_end(releaser):
        try:
            wait_for(lambda: stopped(releaser.pid), 60, "site1-b to stop right after its undo reached h01")
            assert isolated(lab) == set()
            d.worker("site1-a", "site1")
            verify, reapply = ask(d, "verify", row), ask(d, "reapply", row)
            wait_for(lambda: {read_of(d, verify).state, read_of(d, reapply).state} == {"done"}, 60,
                     "site1-a to answer both reads")
            seen = {k: read_of(d, i).result for k, i in (("verify", verify), ("reapply", reapply))}
            assert seen["verify"]["state"] in ("gone", "held") and seen["verify"]["outcome"] == "skipped", seen
            assert seen["reapply"]["state"] in ("gone", "held"), seen
            assert not [t.detail for t in transitions(d) if t.action_id == row.id and "re-verified drift" in t.detail]
            assert not records(d, "containment.drift")
            assert isolated(lab) == set()
            os.kill(releaser.pid, signal.SIGCONT)
            out, err = release.communicate(timeout=180)
        finally:
            if release.poll() is None:
                release.kill()
                release.communicate(timeout=30)
    assert release.returncode == 0, (release.returncode, out[-2000:], err[-2000:])
    assert isolated(lab) == set()
    after = isolate_row(d, "h01")
    assert after.undone_at is not None
    assert not [t for t in transitions(d) if t.action_id == row.id and (t.from_state, t.to_state) == (
        "done", "applying")]
    assert [r.state for r in rows(d) if r.kind == "undo"] == ["done"]


def test_a_reapplier_frozen_past_its_lease_loses_the_gate_and_sends_nothing(deploy: Deployment):
    """As above, but the stopped re-applier stays stopped longer than its lease (3 s): the undo waits at the
    gate until that lease lapses, then takes the gate and releases h01 — a frozen worker holds a release up for
    one lease, not for ever. Continued, the re-applier finds the gate gone: its first transition is fenced
    (``LeaseLost``), nothing is sent, h01 stays released. Fails before: the undo did not wait, and the continued
    re-apply isolated the released host again."""
    d, lab = deploy, deploy.scale.lab
    first = d.worker("site1-a", "site1", slots=1, AGENT_FAILPOINTS="reapply-gated:stop")
    contain(d, "h01")
    row = isolate_row(d, "h01")
    lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])
    wait_for(lambda: lease_free(d, row.id), 40, "nobody to hold h01's action")
    ask(d, "reapply", row)
    with continued_at_the_end(first):
        wait_for(lambda: stopped(first.pid), 60, "site1-a to stop holding the gate, about to re-apply")
        second = d.worker("site1-b", "site1", slots=1)
        res = d.agent("release", "--host", "h01", "--yes", "--json")  # while site1-a stays stopped
        assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
        assert isolated(lab) == set()
        os.kill(first.pid, signal.SIGCONT)
        # site1-a (one slot) finishes its re-apply before it takes anything else: with site1-b gone, a read it
        # answers next is the barrier after which its re-apply attempt is over
        second.send_signal(signal.SIGTERM)
        second.wait(30)
        barrier = ask(d, "verify", row)
        wait_for(lambda: read_of(d, barrier).state == "done", 60, "site1-a to answer the next read")
        assert owner_pid(read_of(d, barrier).owner) == first.pid
        assert read_of(d, barrier).result["state"] == "gone"
    after = isolate_row(d, "h01")
    assert isolated(lab) == set(), f"h01 isolated again after its release (journal: undone at {after.undone_at})"
    assert after.undone_at is not None and after.state == "done"
    assert not [t for t in transitions(d) if t.action_id == row.id and (t.from_state, t.to_state) == (
        "done", "applying")], "the frozen re-applier sent its change after losing the gate"
    [waited] = records(d, "worker.gate_wait")  # the undo waited for the frozen re-applier's lease to lapse
    assert owner_pid(waited["worker"]) == second.pid and owner_pid(waited["holder"].split()[0]) == first.pid
    assert [(r.state, owner_pid(r.owner)) for r in rows(d) if r.kind == "undo"] == [("done", second.pid)]
