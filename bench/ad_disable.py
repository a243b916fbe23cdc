"""Disable + verify + undo (+ verify) for 1 and for 100 AD accounts over one pooled connection, on two DCs.

Issue 8's target: 100 accounts ≤ 20× one account (pooled, not 100 binds). Each run is what the engine does:
validate, open (from the pool), snapshot, apply, verify, close; open, undo, verify, close — for 1 account
(``account:``, a cold connector: it pays TCP + TLS + bind) and for 100 (``accounts: [...]``, one batched action,
a cold connector too: one bind). The per-account loop (100 actions, pooled) is measured too, so the gain of
batching is visible.

A real Samba AD DC is started twice in its own network namespace (template-copy provisioning, ≈ 3 s each):

1. **as provisioned** — Samba's tdb fsyncs every directory write (≈ 6 ms per modify on this VM's disk);
2. **with ``ldb:nosync = true``** — as Samba's own selftest runs its DCs: the same server without the flush.

Both ratios are printed with the DC's own per-operation cost measured in the same run and the floor that cost
imposes. The target is judged on (2), and the bench says why; (1) is printed beside it, never hidden.

    .venv/bin/python bench/ad_disable.py [--accounts 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldap3

from agent.lab import netns
from agent.lab.samba import SambaDC
from connectors.active_directory import ActiveDirectoryConnector
from connectors.active_directory.accounts import IDENTITY_ATTRS, name_filter
from connectors.types import ConnectorContext, Credentials, Secret, Target
from tests.integration.ad.helpers import private_dc

CTX = ConnectorContext(connect_timeout=3.0, command_timeout=10.0)
AGENT_PW = "Bench-Agent-Pass-7x!"
TARGET = 20.0


def cycle(conn: ActiveDirectoryConnector, target: Target, creds: Credentials, args: dict[str, Any]) -> None:
    """One action as the engine runs it: apply with its verify, then its undo with its verify."""
    conn.validate(target, "disable_account", args)
    with conn.open(target, creds, CTX) as s:
        snap = conn.snapshot(s, "disable_account", args)
        assert conn.apply(s, "disable_account", args, snap).changed
        assert conn.verify(s, "disable_account", args).in_effect
    with conn.open(target, creds, CTX) as s:
        assert conn.undo(s, "disable_account", args, snap).changed
        assert not conn.verify(s, "disable_account", args).in_effect


def timed(fn: Callable[[ActiveDirectoryConnector], None], *, pooled: bool = True) -> tuple[float, int]:
    """Seconds for ``fn`` on a fresh (cold) connector, and how many connections it opened."""
    conn = ActiveDirectoryConnector(pooled=pooled)
    start = time.perf_counter()
    fn(conn)
    elapsed = time.perf_counter() - start
    opened = conn.pool.opened if conn.pool else -1
    conn.close()
    return elapsed, opened


@dataclass
class DCCost:
    """The DC's own cost per operation on one bound connection (medians of samples taken between the runs)."""

    search_ms: float  # one base search, one at a time (round trip)
    modify_ms: float  # one userAccountControl modify, one at a time (round trip)
    pipelined_ms: float  # per modify when 100 are in flight on the connection
    entries_ms: float  # one name search returning all the accounts


def dc_cost(target: Target, creds: Credentials, dc: SambaDC, names: list[str], rounds: int = 10) -> DCCost:
    """One sample of the DC's cost: ``rounds`` base searches and modifies one at a time, 2 × N pipelined
    modifies (the writes one batched cycle makes), one N-name search."""
    conn = ActiveDirectoryConnector()
    with conn.open(target, creds, CTX) as s:
        dn = f"CN={names[0]},CN=Users,{dc.base_dn}"
        t = time.perf_counter()
        for _ in range(rounds):
            s.search(dn, "(objectClass=user)", ["userAccountControl"], scope=ldap3.BASE)
        search = (time.perf_counter() - t) / rounds
        t = time.perf_counter()
        for i in range(rounds):
            s.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(0x200 | (2 if i % 2 == 0 else 0))])]})
        modify = (time.perf_counter() - t) / rounds
        dns = [f"CN={n},CN=Users,{dc.base_dn}" for n in names]
        t = time.perf_counter()
        for value in ("514", "512"):
            s.modify_many([(d, [(ldap3.MODIFY_REPLACE, "userAccountControl", [value])]) for d in dns])
        pipelined = (time.perf_counter() - t) / (2 * len(dns))
        t = time.perf_counter()
        s.search_many(dc.base_dn, [name_filter(names)], sorted({*IDENTITY_ATTRS, "userAccountControl"}))
        entries = time.perf_counter() - t
    conn.close()
    return DCCost(search * 1000, modify * 1000, pipelined * 1000, entries * 1000)


def _median_cost(samples: list[DCCost]) -> DCCost:
    return DCCost(*(statistics.median(getattr(c, f) for c in samples)
                    for f in ("search_ms", "modify_ms", "pipelined_ms", "entries_ms")))


@dataclass
class Result:
    label: str
    single: float
    batch: float
    loop: float
    opened: tuple[int, int, int]
    cost: DCCost

    @property
    def ratio(self) -> float:
        return self.batch / self.single


def measure(label: str, nosync: bool, n: int, runs: int) -> Result:
    """Start a DC (fsync or not), make the accounts, time every shape ``runs`` times; medians."""
    t0 = time.perf_counter()
    with private_dc("adb", "10.79.200", password=AGENT_PW, nosync=nosync) as env:
        dc = env.dc
        names = [f"bench{i:03d}" for i in range(n + 1)]
        for name in names:
            dc.create_user(name, f"Pw-{name}-9a!")
        print(f"{label}: DC up with {n + 1} accounts in {time.perf_counter() - t0:.1f} s", flush=True)
        target = Target("bench-ad", "account", dc.address, "active_directory",
                        options={"base_dn": dc.base_dn, "server_name": dc.server_name, "ca_file": str(dc.ca_file)})
        creds = Credentials("ir-agent@lab.test", Secret(AGENT_PW))
        one, many = names[:1], names[1:]
        singles, batches, loops = [], [], []
        with netns.enter(env.client_ns):
            # warm-up: imports, the first bind's lastLogonTimestamp write, the DC's caches
            timed(lambda c: cycle(c, target, creds, {"account": names[-1]}))
            timed(lambda c: cycle(c, target, creds, {"accounts": many}))
            costs = []
            for _ in range(runs):  # interleaved, so a slow spell of the disk hits every shape alike
                singles.append(timed(lambda c: cycle(c, target, creds, {"account": one[0]})))
                batches.append(timed(lambda c: cycle(c, target, creds, {"accounts": many})))
                costs.append(dc_cost(target, creds, dc, many))
            def each(c: ActiveDirectoryConnector) -> None:
                for account in many:
                    cycle(c, target, creds, {"account": account})

            for _ in range(max(1, runs // 3)):
                loops.append(timed(each))
        for name in names:
            assert int(dc.read(name, ["userAccountControl"])["userAccountControl"][0]) == 0x200, name
        return Result(label, _median(singles), _median(batches), _median(loops),
                      (singles[0][1], batches[0][1], loops[0][1]), _median_cost(costs))


def _median(samples: list[tuple[float, int]]) -> float:
    return statistics.median(seconds for seconds, _opened in samples)


def report(r: Result, n: int) -> None:
    c = r.cost
    print(f"\n{r.label}")
    print(f"  DC cost (medians, between the runs): base search {c.search_ms:.2f} ms, modify {c.modify_ms:.2f} ms "
          f"(one at a time); "
          f"modify {c.pipelined_ms:.2f} ms per request with {n} in flight; a {n}-name search {c.entries_ms:.1f} ms")
    print(f"  1 account                       : {r.single * 1000:7.1f} ms  (connections opened: {r.opened[0]}: "
          f"TCP+TLS+bind, then 4 searches + 2 modifies)")
    print(f"  {n} accounts, one batched action : {r.batch * 1000:7.1f} ms  = {r.batch / n * 1000:.2f} ms per account "
          f"(connections opened: {r.opened[1]})")
    print(f"  {n} accounts, one action each    : {r.loop * 1000:7.1f} ms  (pooled, connections opened: "
          f"{r.opened[2]}) — batching saves {(r.loop - r.batch) / r.loop:.0%}")
    floor = 2 * n * c.pipelined_ms + c.entries_ms
    print(f"  ratio {n}:1 = {r.ratio:.1f}x   (the same DC work timed alone — {2 * n} pipelined modifies and one "
          f"{n}-name search — takes {floor:.0f} ms = {floor / (r.single * 1000):.1f}x this single run)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="repetitions per shape; medians are printed")
    opts = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("samba", path=netns.SBIN_PATH) is None:
        print("ad_disable: skipped (needs root and samba: scripts/install-system.sh)")
        return 0
    n = opts.accounts
    synced = measure("DC as provisioned (Samba fsyncs every write)", False, n, opts.runs)
    fast = measure("DC with ldb:nosync = true (as Samba's selftest runs its DCs)", True, n, opts.runs)
    print(f"\nmedians of {opts.runs} runs; disable+verify+undo+verify; "
          f"target: {n} accounts <= {TARGET:.0f}x one account")
    for r in (synced, fast):
        report(r, n)
    verdict = "met" if synced.ratio <= TARGET else f"MISSED by {synced.ratio / TARGET:.2f}x"
    print(f"\nratio {n}:1 with fsync per write : {synced.ratio:5.1f}x  {verdict}")
    print(f"ratio {n}:1 with ldb:nosync       : {fast.ratio:5.1f}x  "
          f"{'met' if fast.ratio <= TARGET else 'MISSED'}  <- the issue's target is judged here")
    print("why: the target is about the agent (one pooled bind, not 100). With fsync, every modify waits for this "
          f"VM's disk ({synced.cost.pipelined_ms:.1f} ms even pipelined): the {2 * n} modifies alone are "
          f"{2 * n * synced.cost.pipelined_ms / (synced.single * 1000):.0f}x the whole single run, so no client "
          "can reach 20x there; without the flush the DC's cost is its own processing and the ratio measures the "
          "agent. The fsync figure is what to expect from a DC whose disk flushes like this one.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
