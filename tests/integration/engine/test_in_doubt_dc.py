"""The real Samba AD DC stopped in the middle of a 100-account `disable-account`: in doubt, never failed.

Issue 12 found actions recorded `failed` after their modify had been sent, never verified again, and an
`enable-account` of all 100 that reported done while accounts stayed disabled. Here the DC is stopped after the
batch's snapshot was journaled and before its apply completes (a pause failpoint gives the window), then started:
the run says partial (exit 4) and `status` lists the action as in doubt; the next run verifies first and
completes it once from the journaled snapshot; `enable-account` of all 100 restores every account's recorded
userAccountControl and logonHours, read back from the DC.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from agent.lab.ad import DC_ADDRESS
from agent.lab.samba import SambaDC
from agent.lab.topology import namespace_name
from tests.integration.engine.runs import Runner, private_config, wait_until

pytestmark = [pytest.mark.root, pytest.mark.samba, pytest.mark.slow]
N = 100


@pytest.fixture
def ad_run(clean_lab: Lab, tmp_path: Path) -> Iterator[tuple[Runner, SambaDC]]:
    clean_lab.up_ad()
    dc = SambaDC(namespace_name(clean_lab.prefix, "dc"), DC_ADDRESS, clean_lab.state_dir / "dc")
    try:
        yield Runner(clean_lab, private_config(clean_lab, tmp_path), "cold"), dc
    finally:
        dc.stop()  # the DC this test restarted is its child: stop (and reap) it before the lab tears down
        clean_lab.down_ad()
        clean_lab.write_config()


def accounts(dc: SambaDC, names: list[str]) -> dict[str, tuple[int, object]]:
    out = {}
    for name in names:
        entry = dc.read(name, ["userAccountControl", "logonHours"])
        hours = entry.get("logonHours")  # without schema ldap3 hands back valid UTF-8 (all zero bytes) as str
        raw = (hours[0] if isinstance(hours[0], bytes) else hours[0].encode()) if hours else None
        out[name] = (int(entry["userAccountControl"][0]), raw)
    return out


class TestDCStoppedMidBatch:
    def test_in_doubt_then_verified_then_every_account_restored(self, ad_run: tuple[Runner, SambaDC]):
        """DC stopped mid-action → in doubt (exit 4); started → next run completes it once; enable restores all."""
        run, dc = ad_run
        names = [f"idb{i:03d}" for i in range(N)]
        for i, name in enumerate(names):  # a few with logon hours of their own, so restoring them is visible
            dc.create_user(name, f"Pw-{name}-9a!", **({"logonHours": bytes([0xFF] * 21)} if i % 10 == 0 else {}))
        before = accounts(dc, names)
        stopper = threading.Thread(target=lambda: (wait_until(
            lambda: (run.cfg.parent / "agent.db").exists() and "applying" in _states(run), timeout=170,
            what="the batch to be about to apply"), dc.stop()))
        stopper.start()
        res = run("disable-account", *names, "--reason", "dc outage test", "--yes",
                  "--json", env={"AGENT_FAILPOINTS": "before-apply:pause"}, timeout=180)
        stopper.join(timeout=60)
        outcomes = json.loads(res.stdout)["outcomes"] if res.stdout.startswith("{") else []
        brief = [(o["step"], o["state"], o["summary"][:160], sorted({i["state"] for i in o["items"]}))
                 for o in outcomes if o["step"] != "evidence"]
        assert res.returncode == 4, (res.returncode, brief, res.stderr[-2000:])
        disable = [o for o in outcomes if o["step"] == "disable"]
        assert [o["state"] for o in disable] == ["in_doubt"], brief  # one action for 100
        assert {i["state"] for i in disable[0]["items"]} == {"in_doubt"}  # each account may have been changed
        in_doubt = run.status()["in_doubt"]
        assert "disable_account" in [a["action"] for a in in_doubt]
        dc.start()
        # the next start verifies first, then completes the batch once from its journaled snapshot
        res = run("sweep", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.count("(in doubt): done") == len(in_doubt), res.stdout
        assert run.status()["in_doubt"] == []
        # the journal equals the DC: exactly the accounts whose disable is done are disabled
        active = [a for a in run.status()["active"] if a["action"] == "disable_account"]
        done = {i["requested"] for a in active for i in a["items"] if i["state"] == "done"}
        assert done == set(names), _trail(run)
        after = accounts(dc, names)
        assert {n for n, (uac, _) in after.items() if uac & 2} == done
        res = run("enable-account", *names, "--yes", "--json", timeout=180)
        assert res.returncode == 0, res.stdout + res.stderr
        assert accounts(dc, names) == before
        assert [a for a in run.status()["active"] if a["action"] == "disable_account"] == []


def _states(run: Runner) -> str:
    import sqlite3
    try:
        with sqlite3.connect(run.cfg.parent / "agent.db", timeout=5) as db:
            return " ".join(r[0] for r in db.execute("SELECT state FROM actions WHERE action='disable_account'"))
    except sqlite3.Error:
        return ""


def _trail(run: Runner) -> str:
    incidents = json.loads(run("incidents", "list", "--json").stdout)
    out = []
    for inc in incidents:
        shown = json.loads(run("incidents", "show", inc["id"], "--json").stdout)
        for a in shown["actions"]:
            if a["action"] == "disable_account":
                out.append(f"{a['kind']} {a['state']} changed={a['changed']} undone={a['undone_at']}: "
                           + " | ".join(f"{t['from']}->{t['to']} {t['detail'][:150]}" for t in a["transitions"]))
    return "\n".join(out)
