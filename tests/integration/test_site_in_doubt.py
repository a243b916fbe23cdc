"""An action in doubt at a worker site is re-checked on the daemon's retry schedule (issue 19), not only when the
site's own sweep comes round.

The lab, PostgreSQL, RabbitMQ and deployment helpers of tests/integration/test_site_workers.py (a 6-host fleet
over two sites, only each site's worker host reaching its hosts, the central with no fleet credentials). The
site's worker runs with a long lease (``SLOW_LEASE``): its sweep re-checks what is in doubt only every ten rounds
of ``lease / 2`` — 110 s apart here — so anything settled sooner was settled by the daemon's schedule
(``daemon.retry_interval: 2s``, doubled per attempt).

How an action is left in doubt at the site, for real: the worker pauses before its verify (failpoint
``before-verify:pause``), and meanwhile its own host refuses every TCP packet to h01 (an nftables ``reject with
tcp reset`` in the worker host's output chain: the isolation itself was loaded and confirmed, but the worker's
read-back — and every read after it — is refused), so the run ends ``in_doubt``. The cut is lifted later (or
not), and the test watches the journal, the one audit chain and h01's nftables.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from agent.lab import Lab
from agent.lab.topology import worker_host
from tests.integration import test_site_workers as site_workers
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

scale = site_workers.scale  # the fixtures (lab, PostgreSQL, RabbitMQ; a fresh database per test), reused
deploy = site_workers.deploy

SLOW_LEASE = 20  # the worker's sweep re-checks in-doubt actions 10 s after it starts, then every 100 s
RETRY = "  retry_interval: 2s\n"  # the daemon's: attempt n waits 2 s × 2^(n-1)


@contextmanager
def cut_off(lab: Lab, site: str, host: str) -> Iterator[None]:
    """Every TCP packet from ``site``'s worker host to ``host`` is answered by a reset (nft(8): ``reject with tcp
    reset`` in the output hook): a connect is refused at once and an open session breaks on its next packet —
    the worker's reads of ``host`` fail fast, and nothing on ``host`` itself is touched."""
    wk = worker_host(site)
    address = lab.hosts[host].address
    lab.exec(wk, ["nft", "-f", "-"], input=(
        "table inet cutoff {\n  chain output {\n    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {address} meta l4proto tcp reject with tcp reset\n  }}\n}}\n"))
    try:
        yield
    finally:
        lab.exec(wk, ["nft", "delete", "table", "inet", "cutoff"], check=False)


def in_doubt_at_site(d: Deployment, host: str) -> tuple[Any, Any]:
    """Contain ``host`` from the central CLI (TTL 10 min) and leave it in doubt at its site (module docstring);
    returns the action row and the running cut-off, which the caller must close."""
    lab = d.scale.lab
    cut = cut_off(lab, "site1", host)
    with ThreadPoolExecutor(1) as pool:
        contain = pool.submit(d.agent, "contain", "--host", host, "--yes", "-p", "capture_evidence=false",
                              "--ttl", "10m", "--json")
        wait_for(lambda: any(r.action == "isolate" and r.state == "verifying" for r in rows(d)), 60,
                 f"{host}'s isolation to reach verify (paused there)")
        cut.__enter__()
        res = contain.result(timeout=120)
    assert res.returncode == 4, res.stdout[-1500:] + res.stderr[-1500:]  # partial: in doubt
    [row] = [r for r in rows(d) if r.action == "isolate"]
    assert row.state == "in_doubt", (row.state, row.error)
    return row, cut


def chain(d: Deployment, event: str, action_id: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(d.root / "central" / "audit")
            if r["event"] == event and r.get("action_id") == action_id]


def applying(d: Deployment, action_id: str) -> int:
    return sum(1 for t in transitions(d) if t.action_id == action_id and t.to_state == "applying"
               and t.from_state != "applying")


def test_in_doubt_at_a_site_is_settled_on_the_daemons_retry_schedule(deploy: Deployment):
    """Unreadable: each attempt of the daemon's schedule asks the site's worker, which reads h01 (refused) and
    leaves it in doubt — audited ``recheck.done`` (outcome in_doubt) and rescheduled 4 s, then 8 s later
    (retry_interval × 2^(n-1)), never failed. Readable again: the next attempt settles it — done, "not
    re-applied", one ``applying`` transition in all, h01's nftables isolated — within a few retry intervals,
    long before the worker's own sweep would have come round, and its TTL release is scheduled. Fails before:
    the daemon skipped in-doubt actions at worker sites (nothing re-checked until the worker's sweep)."""
    d, lab = deploy, deploy.scale.lab
    worker = d.worker("site1-a", "site1", lease=SLOW_LEASE, AGENT_FAILPOINTS="before-verify:pause")
    started = time.monotonic()
    start_daemons(d, ("daemon-a",), RETRY)
    time.sleep(max(0.0, started + SLOW_LEASE / 2 + 2 - time.monotonic()))  # past the worker's first sweep
    row, cut = in_doubt_at_site(d, "h01")
    try:
        wait_for(lambda: len(chain(d, "recheck.done", row.id)) >= 2, 40, "two re-checks while h01 is unreadable")
        first, second = chain(d, "recheck.done", row.id)[:2]
        assert [(r["attempt"], r["outcome"], r["site"], r["retry_in"]) for r in (first, second)] == [
            (1, "in_doubt", "site1", 4), (2, "in_doubt", "site1", 8)], (first, second)
        assert all(owner_pid(r["worker"]) == worker.pid for r in (first, second))
        gap = (datetime.fromisoformat(second["ts"]) - datetime.fromisoformat(first["ts"])).total_seconds()
        assert gap >= 4 - 0.5, gap  # the backoff, not the sweep cadence
        assert [r.state for r in rows(d) if r.id == row.id] == ["in_doubt"]
    finally:
        cut.__exit__(None, None, None)
    lifted = time.monotonic()
    wait_for(lambda: [r.state for r in rows(d) if r.id == row.id] == ["done"], 30,
             "the daemon's next attempt to settle h01")
    assert time.monotonic() - lifted < 30 and time.monotonic() - started < SLOW_LEASE * 5  # not the sweep's turn
    trans = [t for t in transitions(d) if t.action_id == row.id]
    assert not any(t.to_state == "failed" for t in trans)
    assert "not re-applied" in trans[-1].detail, trans[-1].detail
    assert applying(d, row.id) == 1 and isolated(lab) == {"h01"}
    settles = [r for r in site_reads(d) if r.kind == "settle"]
    assert len(settles) >= 3 and all(r.state == "done" and r.action_id == row.id for r in settles)
    wait_for(lambda: any(r["outcome"] == "done" for r in chain(d, "recheck.done", row.id)), 10,
             "recheck.done (done) in the chain")
    done = next(r for r in chain(d, "recheck.done", row.id) if r["outcome"] == "done")
    assert done["attempt"] == 3 and "retry_in" not in done and owner_pid(done["worker"]) == worker.pid
    # one chain: the worker's own records of the reconciliation are there, and the daemon did not restate them
    reconciled = chain(d, "reconcile.start", row.id)
    assert len(reconciled) == 3 and all(owner_pid(r["worker"]) == worker.pid for r in reconciled), reconciled
    jobs = d.db()(lambda s: [j for (j,) in s.execute(__import__("sqlalchemy").text(
        "SELECT id FROM scheduler_jobs"))])
    assert f"ttl:{row.id}" in jobs and f"recheck:{row.id}" not in jobs, jobs


def test_in_doubt_at_a_site_found_lifted_is_applied_once_from_its_journaled_snapshot(deploy: Deployment):
    """The isolation left in doubt was lifted meanwhile (as an operator, or a dead-man timer, would): the daemon's
    next attempt has the site's worker read h01, find it absent and apply it once more — from the snapshot
    journaled before the first apply, never a new one (a snapshot of a changed host would make the release
    restore the wrong thing) — then verify it: done, two ``applying`` transitions in all (the first run's and
    this one), one snapshot, h01 isolated. Fails before: nothing re-checked it until the worker's sweep."""
    from connectors.ssh_linux.rules import TABLE
    d, lab = deploy, deploy.scale.lab
    d.worker("site1-a", "site1", lease=SLOW_LEASE, AGENT_FAILPOINTS="before-verify:pause")
    started = time.monotonic()
    start_daemons(d, ("daemon-a",), RETRY)
    time.sleep(max(0.0, started + SLOW_LEASE / 2 + 2 - time.monotonic()))  # past the worker's first sweep
    row, cut = in_doubt_at_site(d, "h01")
    try:
        lab.exec("h01", ["nft", "delete", "table", *TABLE.split()])
        assert isolated(lab) == set()
    finally:
        cut.__exit__(None, None, None)
    wait_for(lambda: [r.state for r in rows(d) if r.id == row.id] == ["done"], 40,
             "the daemon's next attempt to settle h01")
    assert time.monotonic() - started < SLOW_LEASE * 5  # not the sweep's turn
    trans = [t for t in transitions(d) if t.action_id == row.id]
    assert any("the change was not in effect; applied once" in t.detail for t in trans), [t.detail for t in trans]
    assert applying(d, row.id) == 2 and sum(1 for t in trans if t.to_state == "snapshotted") == 1
    assert not any(t.to_state == "failed" for t in trans)
    [after] = [r for r in rows(d) if r.id == row.id]
    assert after.snapshot == row.snapshot and isolated(lab) == {"h01"}
    wait_for(lambda: any(r["outcome"] == "done" for r in chain(d, "recheck.done", row.id)), 10,
             "recheck.done (done) in the chain")


def test_in_doubt_at_a_site_without_a_live_worker_is_rescheduled_never_failed(deploy: Deployment):
    """No worker of the site alive: each attempt is audited ``recheck.unanswered`` naming the site (nobody took
    the re-check), and rescheduled with the same backoff; the action stays in doubt, never failed. A worker
    back, together with two more re-check requests sent at once (as a second daemon and a redelivery would)
    and its own sweep: the claim lets exactly one of them settle it — done once, applied once."""
    d, lab = deploy, deploy.scale.lab
    worker = d.worker("site1-a", "site1", lease=SLOW_LEASE, AGENT_FAILPOINTS="before-verify:pause")
    start_daemons(d, ("daemon-a",), RETRY)
    row, cut = in_doubt_at_site(d, "h01")
    cut.__exit__(None, None, None)  # readable again, but nobody of the site is there to read it
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    wait_for(lambda: len(chain(d, "recheck.unanswered", row.id)) >= 2, 60, "two unanswered re-checks")
    first, second = chain(d, "recheck.unanswered", row.id)[:2]
    assert second["attempt"] == first["attempt"] + 1 and second["retry_in"] == 2 * first["retry_in"]
    for r in (first, second):
        assert r["site"] == "site1" and "no worker of site site1 took the in-doubt re-check of h01" in r["error"]
    assert [r.state for r in rows(d) if r.id == row.id] == ["in_doubt"]
    assert not any(t.to_state == "failed" for t in transitions(d) if t.action_id == row.id)
    # a worker of the site back (its sweep re-checks what is in doubt as it starts) and, at the same moment, two
    # more re-check requests — as a second daemon firing and a redelivery would: one claim wins, one settle
    before = len(chain(d, "reconcile.start", row.id))
    d.worker("site1-b", "site1")
    d.worker("site1-c", "site1")
    outcomes = extra_settles(d, row.id, 2)
    assert all(o.ok for o in outcomes), outcomes
    assert {str(o.result.get("outcome")) for o in outcomes} <= {"done", "held", "settled"}, outcomes
    wait_for(lambda: [r.state for r in rows(d) if r.id == row.id] == ["done"], 60, "h01 settled")
    time.sleep(3)  # the daemon's next attempt, the sweeps: nothing more happens to it
    trans = [t for t in transitions(d) if t.action_id == row.id]
    assert sum(1 for t in trans if t.to_state == "done") == 1 and "not re-applied" in trans[-1].detail
    assert applying(d, row.id) == 1 and isolated(lab) == {"h01"}
    res = d.audit("verify")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    assert len(chain(d, "reconcile.start", row.id)) == before + 1


def extra_settles(d: Deployment, action_id: str, n: int) -> list[Any]:
    """``n`` in-doubt re-check requests for ``action_id`` sent at once to site1, as another daemon would."""
    from agent.store import Store
    from agent.workers.config import WorkersConfig
    from agent.workers.reads import SiteReads
    from tests.integration.test_site_workers import LEASE
    with d.scale.lab.enter("mgmt"):
        store = Store(d.url)
        reads = SiteReads(store, WorkersConfig(broker=d.scale.broker.url, sites=("site1",), lease=LEASE),
                          "test:0", claim_within=30, finish_within=60)
        try:
            ids = [reads.request("site1", "settle", target="h01", action="isolate", action_id=action_id,
                                 cause="test") for _ in range(n)]
            return reads.wait(ids)
        finally:
            reads.close()
            store.close()


def test_a_worker_killed_right_after_claiming_an_in_doubt_action_is_taken_over_once(deploy: Deployment):
    """The one worker of the site that claims the in-doubt action (for the daemon's request or its own sweep) is
    SIGKILLed right after its claim committed (failpoint ``worker-after-claim``): nothing was read or sent. Its
    claim is in the chain; once its lease lapses another worker of the site takes the action over — for the
    daemon's next attempt or its own sweep — and settles it once: done, not re-applied, one ``applying``
    transition, h01 isolated, the chain verifies."""
    d, lab = deploy, deploy.scale.lab
    first = d.worker("site1-a", "site1", lease=SLOW_LEASE, AGENT_FAILPOINTS="before-verify:pause")
    start_daemons(d, ("daemon-a",), RETRY)
    row, cut = in_doubt_at_site(d, "h01")
    first.send_signal(signal.SIGKILL)  # before the daemon's first attempt (retry_interval after it noticed)
    first.wait(10)
    cut.__exit__(None, None, None)
    doomed = d.worker("site1-b", "site1", lease=SLOW_LEASE, AGENT_FAILPOINTS="worker-after-claim")
    wait_for(lambda: doomed.poll() is not None, 60, "site1-b to claim h01's action and die")
    assert doomed.returncode == -signal.SIGKILL
    wait_for(lambda: any(owner_pid(r["worker"]) == doomed.pid and r["state"] == "in_doubt"
                         for r in chain(d, "worker.claimed", row.id)), 15, "site1-b's claim in the chain")
    assert [r.state for r in rows(d) if r.id == row.id] == ["in_doubt"]
    rescuer = d.worker("site1-c", "site1")
    wait_for(lambda: [r.state for r in rows(d) if r.id == row.id] == ["done"], 90,
             "another worker of the site to take it over and settle it")
    trans = [t for t in transitions(d) if t.action_id == row.id]
    assert sum(1 for t in trans if t.to_state == "done") == 1 and "not re-applied" in trans[-1].detail
    assert applying(d, row.id) == 1 and isolated(lab) == {"h01"}
    wait_for(lambda: len(chain(d, "reconcile.start", row.id)) >= 1, 15, "the reconciliation in the chain")
    started = chain(d, "reconcile.start", row.id)
    assert [owner_pid(r["worker"]) for r in started] == [rescuer.pid], started
    res = d.audit("verify")
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
