"""A site with no worker connected: the responder learns it in seconds, and nothing is sent later behind their back.

Found trying the product as a stranger (issue 19): ``agent contain --host h01`` from the central, with no ``agent
worker --site site1`` running, printed nothing for ten minutes (``workers.wait``) per step, then reported each
step *in doubt* — although nothing had been sent, and a worker started an hour later would still have applied
the queued isolation. Now the engine asks the broker whether anyone consumes the site's queue (AMQP 0-9-1
``queue.declare`` with ``passive``: its ``declare-ok`` carries the queue's consumer count,
https://www.rabbitmq.com/amqp-0-9-1-reference.html#queue.declare). When nobody has for ``workers.no_worker_after``
seconds:

- an action no worker ever claimed is claimed by the engine (the same compare-and-swap a worker would win) and
  journaled **failed — nothing was sent**, naming the site and the command that starts its worker; a worker that
  connects later finds it settled and drops the message (never applied behind the responder's back);
- an action whose worker died holding it may have reached its target: reported **in doubt** at once (not after
  ``workers.wait``), naming the dead worker; the site's next worker reads the target and settles it.

Runs on the same real lab, PostgreSQL and RabbitMQ as tests/integration/test_site_workers.py.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.integration import test_site_workers as site_workers
from tests.integration.test_site_workers import FLEET, SITES, Deployment, isolated, rows, transitions, wait_for

scale = site_workers.scale  # the module's lab, PostgreSQL and RabbitMQ (fixtures)
deploy = site_workers.deploy

pytestmark = [pytest.mark.root, pytest.mark.slow]

GRACE = 6  # workers.no_worker_after in these tests (default 30)
# h01's allow-list names a DNS name, pinned by a site1 worker at plan time: with no site1 worker the whole command
# is refused before anything is journaled (test_site_workers.py) — the hosts here are the ones that plan centrally
HOSTS = [h for h in FLEET if h != "h01"]
SITE1 = [h for h in SITES["site1"] if h != "h01"]


def with_grace(d: Deployment) -> None:
    text = d.central.read_text()
    assert "  wait: " in text
    d.central.write_text(text.replace("  wait: ", f"  no_worker_after: {GRACE}\n  wait: ", 1))


def contain(d: Deployment, *args: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    res = d.agent("contain", *args, "--yes", "--json", "--reason", "site without a worker", timeout=200)
    took = time.monotonic() - started
    assert res.stdout.strip(), res.stderr[-2000:]
    return res.returncode, json.loads(res.stdout), took


def test_no_worker_at_the_site_fails_fast_and_nothing_is_sent_later(deploy: Deployment):
    """site2 has its worker, site1 none: site2's hosts are isolated; site1's actions fail within the grace with
    "nothing was sent", naming the site; a site1 worker started afterwards applies none of them."""
    d = deploy
    with_grace(d)
    d.worker("site2-a", "site2")
    code, out, took = contain(d, "--host", ",".join(HOSTS), "--count", str(len(HOSTS)), "-p",
                              "capture_evidence=false")
    assert code == 4, out  # partial: site2 contained, site1 not
    assert took < 60, f"took {took:.0f}s: waited for workers.wait (120 s) instead of the grace"
    acts = {r.target: r for r in rows(d) if r.action == "isolate"}
    for host in SITE1:
        row = acts[host]
        assert row.state == "failed", (host, row.state, row.error)
        assert row.error_kind == "unreachable"
        assert "no worker of site site1" in (row.error or "") and "agent worker --site site1" in (row.error or "")
        assert "nothing was sent" in (row.error or "")
    assert {acts[h].state for h in SITES["site2"]} == {"done"}
    assert isolated(d.scale.lab) == set(SITES["site2"])
    # the worker the responder starts now must not apply what they were told failed
    late = d.worker("site1-late", "site1")
    time.sleep(8)  # a few sweeps and deliveries of whatever is in the queue
    assert late.poll() is None, d.log("site1-late")
    assert isolated(d.scale.lab) == set(SITES["site2"])
    assert not [t for t in transitions(d) if t.action_id in {acts[h].id for h in SITE1}
                and t.to_state == "applying"]


def test_every_worker_of_a_site_dies_mid_run_in_doubt_early_then_settled(deploy: Deployment):
    """site1's only worker is SIGKILLed right after its first apply: what it held is in doubt at once (it may
    have reached the host), what it never claimed failed with nothing sent — within the grace, not after
    ``workers.wait``; site1's next worker settles the in-doubt one from the host (not applied twice) and applies
    none of the failed ones."""
    d = deploy
    with_grace(d)
    doomed = d.worker("site1-a", "site1", slots=1, AGENT_FAILPOINTS="after-apply")
    d.worker("site2-a", "site2")
    code, out, took = contain(d, "--host", ",".join(HOSTS), "--count", str(len(HOSTS)), "-p",
                              "capture_evidence=false")
    assert doomed.poll() == -signal.SIGKILL, d.log("site1-a")
    assert code == 4, out
    assert took < 60, f"took {took:.0f}s"
    acts = {r.target: r for r in rows(d) if r.action == "isolate"}
    held = [h for h in SITE1 if acts[h].owner and acts[h].owner.split(":")[1] == str(doomed.pid)]
    assert len(held) == 1, {h: (acts[h].owner, acts[h].state) for h in SITE1}
    by_target = {a["target"]: a for a in out["outcomes"] if a["action"] == "isolate"}
    assert by_target[held[0]]["state"] == "in_doubt", by_target[held[0]]
    assert "site1" in by_target[held[0]]["summary"] and "agent worker --site site1" in by_target[held[0]]["summary"]
    never = [h for h in SITE1 if h not in held]
    assert {acts[h].state for h in never} == {"failed"}
    assert all("nothing was sent" in (acts[h].error or "") for h in never)
    survivor = d.worker("site1-b", "site1")
    wait_for(lambda: {r.target: r.state for r in rows(d) if r.action == "isolate"}[held[0]] == "done", 60,
             "site1's next worker to settle the action its dead site-mate held")
    time.sleep(4)
    assert survivor.poll() is None
    assert isolated(d.scale.lab) == set(SITES["site2"]) | set(held)
    applying = [t for t in transitions(d) if t.action_id == acts[held[0]].id and t.to_state == "applying"
                and t.from_state != "applying"]
    assert len(applying) == 1, [(t.from_state, t.to_state, t.detail) for t in transitions(d)
                                if t.action_id == acts[held[0]].id]
    assert not [t for t in transitions(d) if t.action_id in {acts[h].id for h in never} and t.to_state == "applying"]
