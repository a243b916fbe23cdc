"""The dead-man timer can never undo the wrong containment (issue 14, findings 1, 2 and 4), on real lab hosts.

A crash is a real process dying (``os._exit`` in a child python between loading and confirming); concurrency is
real threads with their own SSH connections. The proof is always the host: its timers (processes in its mount
namespace), its ruleset and the probe matrix after waiting past the timer's delay.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from connectors.errors import ConnectorError, Rejected
from tests.integration.ssh_linux.helpers import Agent, nft_ruleset, rows, timers_in

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
DELAY = 5  # dead-man delay of these tests: a stale timer would fire within the test
ISOLATED = {"attacker->victim:8080": "blocked", "mgmt->victim:22": "open"}
OPEN = {"attacker->victim:8080": "open", "mgmt->victim:22": "open"}
CHECK = [("attacker", "victim", 8080), ("mgmt", "victim", 22)]

# Runs snapshot + apply in a child process that dies (os._exit) at the named point, after the ruleset is loaded
# and before the timer is confirmed: exactly a crashed confirm.
_CRASHER = r"""
import json, os, sys
from connectors.ssh_linux import SshLinuxConnector, confirm
from connectors.types import ConnectorContext, Credentials, Target
p = json.loads(sys.argv[1])
point = p["point"]
def die(*a, **k):
    os._exit(9)
if point == "before-confirm":
    confirm.FreshConfirmation.finish = die
else:
    from connectors.ssh_linux import state
    real = state.run_then_read
    def crash_after_readback(*a, **k):
        real(*a, **k)
        os._exit(9)
    import connectors.ssh_linux.isolate as iso
    iso.run_then_read = crash_after_readback
conn = SshLinuxConnector()
ctx = ConnectorContext(management_addresses=(p["mgmt"],), known_hosts=p["known_hosts"], connect_timeout=3,
                       command_timeout=15)
s = conn.open(Target(p["host"], "host", p["address"], "ssh_linux", options=p["options"]),
              Credentials(p["user"], private_key_path=p["key"]), ctx)
args = {"confirm_seconds": p["delay"], **p.get("args", {})}
snap = conn.snapshot(s, "isolate", args)
print(json.dumps(snap.data), flush=True)
conn.apply(s, "isolate", args, snap)
os._exit(3)  # not reached: the crash point is inside apply
"""


def crash_between_load_and_confirm(lab: Lab, point: str, args: dict[str, Any] | None = None, *, host: str = "victim",
                                   user: str = "root", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a contain that dies at ``point``; return its journaled snapshot (what the engine would have kept)."""
    params = {"point": point, "mgmt": lab.management_address, "known_hosts": str(lab.known_hosts),
              "key": str(lab.agent_key), "address": lab.hosts[host].address, "delay": DELAY,
              "args": args or {}, "host": host, "user": user, "options": options or {}}
    proc = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-mgmt", sys.executable, "-c", _CRASHER,
                           json.dumps(params)], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 9, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout.splitlines()[0]))


def probe(lab: Lab) -> dict[str, str]:
    return rows(lab, CHECK)


class TestCrashedConfirm:
    """Finding 1: the agent dies between loading the rules and confirming them."""

    @pytest.mark.parametrize("point", ["after-readback", "before-confirm"])
    def test_next_contain_confirms_and_the_timer_never_fires(self, agent: Agent, point: str) -> None:
        """The crashed run left the host isolated with its timer armed; verify says "not confirmed", the next
        contain cancels that timer (its owner is dead) — and after the delay the host is still isolated."""
        lab = agent.lab
        crash_between_load_and_confirm(lab, point)
        assert probe(lab) == ISOLATED
        assert len(timers_in(lab, "victim")) == 1, "the crashed run's timer should be armed"
        with agent.open("victim") as s:
            check = agent.conn.verify(s, "isolate", {})
            assert not check.in_effect and "NOT confirmed" in check.summary, check
            _, result, check = agent.isolate(s, {"confirm_seconds": DELAY})
            assert check.in_effect, check
            assert result.changed and "completed an unconfirmed isolation" in result.summary, result.summary
        assert timers_in(lab, "victim") == []
        time.sleep(DELAY + 1.5)
        assert probe(lab) == ISOLATED, "a stale dead-man timer lifted the isolation"
        with agent.open("victim") as s:
            assert agent.conn.verify(s, "isolate", {}).in_effect

    def test_reconcile_with_the_journaled_snapshot_adopts_its_own_timer(self, agent: Agent) -> None:
        """The engine's reconcile re-applies with the crashed action's journaled snapshot: its token names the
        timer as the action's own, so it is replaced and confirmed at once (no waiting for a lease)."""
        from connectors.types import Snapshot
        lab = agent.lab
        snap = crash_between_load_and_confirm(lab, "before-confirm")
        with agent.open("victim") as s:
            start = time.monotonic()
            result = agent.conn.apply(s, "isolate", {"confirm_seconds": DELAY}, Snapshot(snap))
            assert result.details["took_over"]["token"] == snap["token"]
            assert time.monotonic() - start < 5
            assert agent.conn.verify(s, "isolate", {}).in_effect
        time.sleep(DELAY + 1.5)
        assert probe(lab) == ISOLATED

    def test_release_after_a_crash_cancels_the_timer(self, agent: Agent) -> None:
        """Releasing a host whose containment was never confirmed removes the rules and the armed timer."""
        lab = agent.lab
        snap = crash_between_load_and_confirm(lab, "before-confirm")
        from connectors.types import Snapshot
        with agent.open("victim") as s:
            result, check = agent.release(s, Snapshot(snap))
            assert result.changed and not check.in_effect
        assert timers_in(lab, "victim") == [] and probe(lab) == OPEN


class TestConcurrentRuns:
    """Finding 2: several runs on one host at once — at most one timer, no containment undone by a stale one."""

    def _watch_timers(self, lab: Lab, stop: threading.Event, seen: list[int]) -> threading.Thread:
        def watch() -> None:
            while not stop.is_set():
                seen.append(len(timers_in(lab, "victim")))
                time.sleep(0.01)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        return t

    def _in_threads(self, agent: Agent, work: list[Any]) -> list[Any]:
        results: list[Any] = [None] * len(work)
        barrier = threading.Barrier(len(work))

        def run(i: int) -> None:
            with agent.lab.enter("mgmt"):
                try:
                    with agent.open("victim") as s:
                        barrier.wait(timeout=20)
                        results[i] = work[i](s)
                except (ConnectorError, threading.BrokenBarrierError) as exc:
                    results[i] = exc
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        return results

    @pytest.mark.parametrize("n", [2, 5])
    def test_concurrent_contains(self, agent: Agent, n: int) -> None:
        """n contains at once: every one ends isolated (one changed it, the others found it done), never more
        than one timer alive, none left, and the host is still isolated after the delay."""
        lab = agent.lab
        args = {"confirm_seconds": DELAY}
        seen: list[int] = []
        stop = threading.Event()
        watcher = self._watch_timers(lab, stop, seen)

        def contain(s: Any) -> Any:
            snap = agent.conn.snapshot(s, "isolate", args)
            return agent.conn.apply(s, "isolate", args, snap)
        try:
            results = self._in_threads(agent, [contain] * n)
        finally:
            stop.set()
            watcher.join()
        assert all(not isinstance(r, Exception) for r in results), results
        assert sum(1 for r in results if r.changed) >= 1
        assert max(seen) <= 1, f"{max(seen)} dead-man timers were alive at once"
        assert timers_in(lab, "victim") == []
        assert nft_ruleset(lab, "victim").count("table inet containment_agent") == 1
        time.sleep(DELAY + 1.5)
        assert probe(lab) == ISOLATED, "a stale dead-man timer lifted the isolation"

    def test_concurrent_contains_and_releases(self, agent: Agent) -> None:
        """Five operators contain and release one host at once, then a last contain: at most one timer alive at
        any moment, and the final containment survives past every timer's delay."""
        lab = agent.lab
        args = {"confirm_seconds": DELAY}

        def contain_release_contain(s: Any) -> Any:
            out = []
            for step in ("contain", "release", "contain"):
                snap = agent.conn.snapshot(s, "isolate", args)
                if step == "contain":
                    out.append(agent.conn.apply(s, "isolate", args, snap))
                else:
                    out.append(agent.conn.undo(s, "isolate", args, snap))
            return out
        seen: list[int] = []
        stop = threading.Event()
        watcher = self._watch_timers(lab, stop, seen)
        try:
            self._in_threads(agent, [contain_release_contain] * 5)
            with agent.open("victim") as s:  # the last word: contain
                agent.isolate(s, args)
        finally:
            stop.set()
            watcher.join()
        assert max(seen) <= 1, f"{max(seen)} dead-man timers were alive at once"
        assert wait_until(lambda: timers_in(lab, "victim") == [], timeout=3)
        time.sleep(DELAY + 1.5)
        assert probe(lab) == ISOLATED, "a stale dead-man timer lifted the isolation"


class TestForeignNames:
    """Finding 4: a table or chain that merely has our name is someone else's: never replaced, never deleted."""

    def test_foreign_table_with_our_name_is_refused(self, agent: Agent) -> None:
        """A pre-existing ``inet containment_agent`` without our ownership mark refuses the contain, untouched."""
        lab = agent.lab
        lab.exec("victim", ["nft", "-f", "-"], input="table inet containment_agent {\n chain input {\n"
                 "  type filter hook input priority 0; policy accept;\n  tcp dport 9 counter\n }\n}\n")
        before = nft_ruleset(lab, "victim")
        with agent.open("victim") as s, pytest.raises(Rejected, match="not the agent's"):
            agent.isolate(s)
        assert nft_ruleset(lab, "victim") == before
        assert probe(lab) == OPEN

    def test_release_never_deletes_a_foreign_table(self, agent: Agent) -> None:
        """Release on a host where the name is held by a foreign table refuses and leaves it in place."""
        from connectors.types import Snapshot
        lab = agent.lab
        lab.exec("victim", ["nft", "add", "table", "inet", "containment_agent"])
        with agent.open("victim") as s, pytest.raises(Rejected, match="not the agent's"):
            agent.conn.undo(s, "isolate", {}, Snapshot({"tool": "nft", "ruleset": ""}))
        assert "table inet containment_agent" in nft_ruleset(lab, "victim")

    def test_other_tools_tables_survive_contain_and_release(self, agent: Agent) -> None:
        """A table called ``inet containment`` (another tool's, or a person's) is neither replaced nor deleted."""
        lab = agent.lab
        lab.exec("victim", ["nft", "-f", "-"], input="table inet containment {\n chain input {\n"
                 "  type filter hook input priority 0; policy accept;\n  tcp dport 9 counter\n }\n}\n")
        with agent.open("victim") as s:
            snap, _, check = agent.isolate(s)
            assert check.in_effect and probe(lab) == ISOLATED
            assert "tcp dport 9" in nft_ruleset(lab, "victim").split("table inet containment {")[1]
            agent.release(s, snap)
        assert "table inet containment {" in nft_ruleset(lab, "victim")
        assert probe(lab) == OPEN

    def test_user_chain_with_an_iptables_name_survives(self, agent: Agent) -> None:
        """On an iptables host a user chain called ``CONTAIN_IN`` survives contain + release; one called like
        ours (``CAGENT_IN``) without our marks refuses the contain."""
        lab = agent.lab
        lab.exec("legacy", ["iptables", "-N", "CONTAIN_IN"])
        lab.exec("legacy", ["iptables", "-A", "CONTAIN_IN", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"])
        with agent.open("legacy") as s:
            snap, _, check = agent.isolate(s)
            assert check.in_effect
            agent.release(s, snap)
        assert "-A CONTAIN_IN -p tcp -m tcp --dport 9 -j ACCEPT" in lab.exec("legacy", ["iptables-save"]).stdout
        lab.exec("legacy", ["iptables", "-N", "CAGENT_IN"])
        with agent.open("legacy") as s, pytest.raises(Rejected, match="not the agent's"):
            agent.isolate(s)
        assert ":CAGENT_IN" in lab.exec("legacy", ["iptables-save"]).stdout
