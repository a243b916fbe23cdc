"""An AD directory at a site: its worker SIGKILLed mid-action, the site's other worker takes over (issue 19:
"a lease whose worker died is taken over by another worker of the same site, which reconciles by reading the
target's real state ... No action is applied twice, none is lost").

The Linux hosts of a site have these cases (tests/integration/test_site_workers.py); here the target is the real
Samba AD DC that only the site's worker host reaches (the lab and helpers of test_site_directory.py: the central
CLI on mgmt has no route to the DC and no directory credentials). Every case kills a worker at a failpoint
(agent/failpoints.py), starts the site's next worker only after it died, and then proves on the DC itself:

- what the journal says is what the DC has (userAccountControl, logonHours, memberships, per account);
- each attribute was written exactly as often as one change (and one undo) writes it: the per-attribute
  ``replPropertyMetaData`` versions (tests/integration/engine/ad_state.py), and for a membership — a value of
  the group's linked attribute ``member``, which linked value replication keeps out of replPropertyMetaData —
  the value's own version ([MS-DRSR] LinkValueStamp ``dwVersion``; Samba stores it as the link's
  ``RMD_VERSION``, source4/dsdb/samdb/ldb_modules/repl_meta_data.c, read with ``ldbsearch --reveal
  --show-deactivated-link`` on the DC's sam.ldb). Measured here: 1 when added, +1 for each removal and re-add,
  nothing for an add of a value already there (entryAlreadyExists). So a membership the dead worker already
  removed (or re-added) and its successor did not write again shows exactly one step per change;
- one ``applying`` transition per action (the takeover reconciles, it does not start the action again);
- the deployment's one audit chain verifies with its key and trust anchor, and the counsel report counts each
  action once.

Cases: killed right after the disable reached the DC (``after-apply``); killed right after claiming the disable,
nothing sent (``worker-after-claim:2``); killed mid-way through a two-account disable (one account swapped, the
other not sent: ``ad-batch-sent:1:pause`` + ``ad-batch-answered:1``) and then mid-way through removing one of
them from two privileged groups (``ad-group-removed:1``); and the undo killed mid-way through re-adding those
memberships (``ad-group-restored:1``) and then through re-enabling the two accounts — it must end with exactly
the original groups and values.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from agent.lab.samba import SambaDC
from tests.integration.cli.test_contain_cli import AGENT
from tests.integration.engine.ad_state import HOURS, UAC, Account, Writes, accounts
from tests.integration.test_site_directory import (  # noqa: F401 - fixtures: the lab, DC and a fresh journal
    SITE,
    deploy,
    items,
    site_ad,
    write_config,
)
from tests.integration.test_site_workers import (
    Deployment,
    Scale,
    assert_chain_verifies,
    audit_records,
    owner_pid,
    rows,
    transitions,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.samba]

# accounts and groups of this module's cases (names the DC accepts with a quote: escape, don't forbid)
HARA, NEIL, DARCY, LEST = "o'hara", "o'neil", "d'arcy", "l'estrange"
GROUPS = {"Tk-Ops1": "Domain Admins", "Tk-Ops2": "Domain Admins", "Tk-OpsA": "Domain Admins",
          "Tk-OpsB": "Backup Operators"}
MEMBERS = {HARA: ["Tk-Ops1"], NEIL: ["Tk-Ops2"], DARCY: ["Tk-OpsA", "Tk-OpsB"], LEST: []}


@pytest.fixture(scope="module")
def lab_accounts(site_ad: tuple[Scale, SambaDC, Writes]) -> tuple[Scale, SambaDC, Writes]:  # noqa: F811
    """The module's accounts, each in its own groups nested in privileged ones (DARCY in two), on the one DC."""
    _scale, dc, _writes = site_ad
    for name, nested in GROUPS.items():
        dc.create_group(name)
        dc.add_members(nested, [name])
    for i, (name, groups) in enumerate(MEMBERS.items()):
        attrs: dict[str, Any] = {"logonHours": bytes([0xFF] * 20 + [0x0F])} if i % 2 == 0 else {}
        dc.create_user(name, f"Pw-{i}-takeover-9a!", **attrs)
        for group in groups:
            dc.add_members(group, [name])
    return site_ad


@pytest.fixture
def site(lab_accounts: tuple[Scale, SambaDC, Writes], deploy: tuple[Deployment, SambaDC, Writes]  # noqa: F811
         ) -> Iterator[tuple[Deployment, SambaDC, Writes]]:
    yield deploy


# -- processes ---------------------------------------------------------------------------------------------------
def worker(d: Deployment, name: str, failpoints: str = "") -> subprocess.Popen[bytes]:
    """``agent worker --site site1`` on wk1 (the only host the DC answers), failpoints armed if given."""
    cfg = write_config(d.scale, d.root, d.url, name, central=False)
    return d.start_worker(name, SITE, cfg, slots=2, **({"AGENT_FAILPOINTS": failpoints} if failpoints else {}))


def killed(d: Deployment, name: str) -> None:
    proc = d.procs[name]
    wait_for(lambda: proc.poll() is not None, 90, f"the failpoint to kill {name}")
    assert proc.returncode == -signal.SIGKILL, d.log(name)[-3000:]


def cli(d: Deployment, *args: str) -> subprocess.Popen[str]:
    """The central CLI on mgmt, running while the test kills and starts workers."""
    return subprocess.Popen(["ip", "netns", "exec", d.scale.mgmt, AGENT, *args, "--config", str(d.central)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=d.env(),
                            stdin=subprocess.DEVNULL)


def finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, (proc.returncode, out[-3000:], err[-3000:])
    data: dict[str, Any] = json.loads(out)
    return data


# -- what the DC and the journal say -----------------------------------------------------------------------------
def link(dc: SambaDC, group: str, account: str) -> tuple[int, bool]:
    """(version, present) of ``account``'s value in ``group``'s ``member``: how many originating writes the
    value had (its LinkValueStamp, Samba's RMD_VERSION) and whether it is a member now (RMD_FLAGS 0; a removed
    value stays as a deactivated link). Read from the DC's own database (LDAP does not show it: Samba returns
    no msDS-ReplValueMetaData)."""
    res = subprocess.run(["ldbsearch", "-H", str(dc.state_dir / "private" / "sam.ldb"), "--reveal",
                          "--show-deactivated-link", "--extended-dn", "-b", dc.dn_of(group), "-s", "base", "member"],
                         capture_output=True, text=True, timeout=30, check=True)
    ldif = res.stdout.replace("\n ", "")  # LDIF continuation lines
    values = [line.split(":", 1)[1].strip() for line in ldif.splitlines() if line.startswith("member:")]
    [value] = [v for v in values if v.lower().endswith(dc.dn_of(account).lower())]
    fields = dict(re.findall(r"<(RMD_[A-Z_]+)=([^>]*)>", value))
    return int(fields["RMD_VERSION"]), fields["RMD_FLAGS"] == "0"


def group_dns(dc: SambaDC, name: str) -> frozenset[str]:
    return frozenset(dc.dn_of(g).lower() for g in MEMBERS[name])


def applied_once(d: Deployment) -> list[Any]:
    """Every action of the journal done, each that changed the DC with exactly one ``applying`` transition (from
    another state), none with two; every item done."""
    acts = rows(d)
    assert {(r.action, r.kind, r.state) for r in acts if r.state != "done"} == set()
    count: dict[str, int] = {}
    for t in transitions(d):
        if t.to_state == "applying" and t.from_state != "applying":
            count[t.action_id] = count.get(t.action_id, 0) + 1
    mutating = [r for r in acts if r.action != "capture_evidence"]
    # an action that changed nothing may never have been applied: taken over before it sent anything and found
    # already in effect (l'estrange's remove_privileged_groups: in no privileged group) — 0 or 1, never 2
    assert {(r.action, r.kind, r.subject): count.get(r.id, 0) for r in mutating} == {
        (r.action, r.kind, r.subject): 1 if r.changed or count.get(r.id, 0) else 0 for r in mutating}
    every = items(d)
    assert {(i.requested, i.state) for i in every if i.state != "done"} == set()  # per item too
    ids = {r.id for r in mutating if r.kind == "apply"}
    if any(r.kind == "undo" for r in acts):  # released: the journal says every change is undone, item by item
        assert {(r.action, r.subject) for r in mutating if r.kind == "apply" and r.changed and r.undone_at is None
                } == set()  # (one that changed nothing — l'estrange was in no privileged group — has no undo)
        assert {i.requested for i in every if i.action_id in ids and i.changed and i.undone_at is None} == set()
    return acts


def written_once(dc: SambaDC, writes: Writes, before: dict[str, Account], *, undone: bool) -> None:
    """userAccountControl, logonHours and memberships of each account: the state one change (and undo) leaves,
    written as often as one change (and undo) writes them — never again by a takeover."""
    now = accounts(dc, "")
    for name, was in before.items():
        end = now[name]
        if undone:
            assert end.state == was.state, (name, end, was)
        else:
            assert (end.uac, end.hours, end.groups) == (was.uac | 2, bytes(21), frozenset()), (name, end)
        uac, hours = writes.expect(was, undone=undone)
        assert (end.version(UAC) - was.version(UAC), end.version(HOURS) - was.version(HOURS)) == (uac, hours), name
        for group in MEMBERS[name]:  # added when the lab was built (1), removed once (2), re-added once (3)
            assert link(dc, group, name) == ((3, True) if undone else (2, False)), (name, group)


def taken_over(d: Deployment, action: str, survivor: subprocess.Popen[bytes], text: str) -> Any:
    """The one row of ``action`` the survivor settled, with ``text`` in its takeover's transition."""
    [row] = [r for r in rows(d) if r.action == action and r.kind == "apply"]
    assert owner_pid(row.owner) == survivor.pid, row.owner
    details = [t.detail for t in transitions(d) if t.action_id == row.id]
    assert any(text in t for t in details), details
    return row


def report_counts_single(d: Deployment, incident: str) -> None:
    """The chain verifies (drained first, with the key and anchor), the report counts each action once."""
    res = d.audit("verify")  # on the writer's host: appends what the workers queued first
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    assert_chain_verifies(d)
    out = d.root / "report.json"
    res = d.agent("report", "--incident", incident, "--format", "json", "-o", str(out))
    assert res.returncode == 0, res.stdout[-1500:] + res.stderr[-1500:]
    report = json.loads(out.read_text())
    acts = rows(d)
    assert len(report["actions"]) == len(acts) and {a["status"] for a in report["actions"]} == {"done"}
    for a in report["actions"]:
        changes = [h["change"] for h in a["history"]]
        assert sum(c.endswith("→ done") for c in changes) == 1, changes


# -- the cases ---------------------------------------------------------------------------------------------------
def test_worker_killed_after_the_disable_reached_the_dc_is_taken_over_not_written_again(
        site: tuple[Deployment, SambaDC, Writes]) -> None:
    """SIGKILL right after the disable's modify was answered, before its result was journaled: the site's next
    worker reads the DC, finds the account disabled and marks the action done without writing it again (the
    account's userAccountControl version does not move from the kill to the end); the undo then restores it —
    the takeover recorded that the action changed it."""
    d, dc, writes = site
    before = {HARA: accounts(dc, HARA)[HARA]}
    worker(d, "site1-a", "after-apply")
    run = cli(d, "disable-account", HARA, "--with-groups", "--reason", "takeover drill", "--yes", "--json")
    killed(d, "site1-a")
    at_kill = accounts(dc, HARA)[HARA]
    assert at_kill.uac == before[HARA].uac | 2 and at_kill.version(UAC) - before[HARA].version(UAC) == \
        writes.uac_change  # the dead worker's one write
    survivor = worker(d, "site1-b")
    result = finished(run)
    assert result["status"] == "done", result
    row = taken_over(d, "disable_account", survivor, "not re-applied")
    assert row.changed == 1  # the dead worker changed it: undo must restore it
    assert accounts(dc, HARA)[HARA].version(UAC) == at_kill.version(UAC)  # nothing written by the takeover
    applied_once(d)
    written_once(dc, writes, before, undone=False)
    res = d.agent("enable-account", HARA, "--reason", "drill over", "--yes")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    applied_once(d)
    written_once(dc, writes, before, undone=True)
    report_counts_single(d, result["incident"])


def test_worker_killed_after_claiming_the_disable_is_taken_over_and_applied_once(
        site: tuple[Deployment, SambaDC, Writes]) -> None:
    """SIGKILL right after the worker claimed the disable (its second claim: the evidence capture was the first),
    nothing sent: the next worker takes it over, reads the DC (enabled), snapshots and applies it exactly once."""
    d, dc, writes = site
    before = {NEIL: accounts(dc, NEIL)[NEIL]}
    worker(d, "site1-a", "worker-after-claim:2")
    run = cli(d, "disable-account", NEIL, "--with-groups", "--reason", "takeover drill", "--yes", "--json")
    killed(d, "site1-a")
    assert accounts(dc, NEIL)[NEIL] == before[NEIL]  # nothing sent
    [claimed] = [r for r in rows(d) if r.action == "disable_account"]
    assert claimed.state == "intent" and claimed.owner and owner_pid(claimed.owner) == d.procs["site1-a"].pid
    survivor = worker(d, "site1-b")
    result = finished(run)
    assert result["status"] == "done", result
    row = taken_over(d, "disable_account", survivor, "applied once")
    assert row.changed == 1
    applied_once(d)
    written_once(dc, writes, before, undone=False)
    res = d.agent("enable-account", NEIL, "--reason", "drill over", "--yes")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    applied_once(d)
    written_once(dc, writes, before, undone=True)
    report_counts_single(d, result["incident"])


def test_workers_killed_mid_batch_mid_groups_and_mid_undo_complete_only_what_is_missing(
        site: tuple[Deployment, SambaDC, Writes]) -> None:
    """Four workers of the site die in turn: mid-way through the two-account disable (d'arcy swapped, l'estrange
    not sent), mid-way through removing d'arcy from its two privileged groups (Tk-OpsA removed, Tk-OpsB not),
    mid-way through the undo re-adding them (Tk-OpsA back, Tk-OpsB not), and mid-way through re-enabling the
    two accounts (d'arcy back, l'estrange not). Each successor reads the DC and does only what is missing: per
    item (account) for the batches, per group for the memberships; the undo ends with exactly the original
    groups and values. Fails before: each taken-over undo was marked done as soon as its effect was gone (one
    group, one account back), the rest never restored."""
    d, dc, writes = site
    names = [DARCY, LEST]
    found = accounts(dc, "")
    before = {n: found[n] for n in names}
    assert before[DARCY].groups == group_dns(dc, DARCY) and not before[LEST].groups
    assert (link(dc, "Tk-OpsA", DARCY), link(dc, "Tk-OpsB", DARCY)) == ((1, True), (1, True))
    first = worker(d, "site1-a", "ad-batch-sent:1:pause,ad-batch-answered:1")
    run = cli(d, "disable-account", *names, "--with-groups", "--reason", "takeover drill", "--yes", "--json")
    killed(d, "site1-a")
    now = accounts(dc, "")
    assert (now[DARCY].uac, now[LEST].uac) == (before[DARCY].uac | 2, before[LEST].uac)  # one swapped, one not
    [batch] = [r for r in rows(d) if r.action == "disable_account"]
    assert batch.state == "applying" and {i.state for i in items(d) if i.action_id == batch.id} == {"intent"}

    second = worker(d, "site1-b", "ad-group-removed:1")
    killed(d, "site1-b")
    batch = taken_over(d, "disable_account", second, "applied once")
    mine = [i for i in items(d) if i.action_id == batch.id]
    assert [(i.requested, i.state, i.changed) for i in mine] == [(DARCY, "done", 1), (LEST, "done", 1)]
    now = accounts(dc, "")
    assert (now[DARCY].version(UAC), now[LEST].version(UAC)) == (
        before[DARCY].version(UAC) + writes.uac_change, before[LEST].version(UAC) + writes.uac_change)
    assert now[DARCY].groups == {dc.dn_of("Tk-OpsB").lower()}  # one group removed, the other not yet
    assert (link(dc, "Tk-OpsA", DARCY), link(dc, "Tk-OpsB", DARCY)) == ((2, False), (1, True))

    third = worker(d, "site1-c", "ad-group-restored:1")
    result = finished(run)
    assert result["status"] == "done", result
    [groups] = [r for r in rows(d) if r.action == "remove_privileged_groups" and r.subject == DARCY]
    assert owner_pid(groups.owner) == third.pid and groups.changed == 1
    # only the missing removal was sent: each membership written once
    assert (link(dc, "Tk-OpsA", DARCY), link(dc, "Tk-OpsB", DARCY)) == ((2, False), (2, False))
    applied_once(d)
    written_once(dc, writes, before, undone=False)

    undo = cli(d, "enable-account", *names, "--reason", "drill over", "--yes", "--json")
    killed(d, "site1-c")
    assert accounts(dc, DARCY)[DARCY].groups == {dc.dn_of("Tk-OpsA").lower()}  # one re-added, one not yet
    assert (link(dc, "Tk-OpsA", DARCY), link(dc, "Tk-OpsB", DARCY)) == ((3, True), (2, False))
    fourth = worker(d, "site1-d", "ad-batch-sent:1:pause,ad-batch-answered:1")
    killed(d, "site1-d")  # it completed the groups' undo, then died mid-way through re-enabling the two accounts
    [restore] = [r for r in rows(d) if r.action == "remove_privileged_groups" and r.kind == "undo"
                 and r.subject == DARCY]
    assert owner_pid(restore.owner) == fourth.pid and restore.state == "done"
    assert any("what was still missing was restored" in t.detail for t in transitions(d)
               if t.action_id == restore.id)
    assert accounts(dc, DARCY)[DARCY].groups == before[DARCY].groups  # exactly the original groups
    # the membership the dead worker re-added is not written again, the other is re-added once
    assert (link(dc, "Tk-OpsA", DARCY), link(dc, "Tk-OpsB", DARCY)) == ((3, True), (3, True))
    now = accounts(dc, "")
    assert (now[DARCY].uac, now[LEST].uac) == (before[DARCY].uac, before[LEST].uac | 2)  # one back, one not yet

    fifth = worker(d, "site1-e")
    res = finished(undo)
    assert res["status"] == "done", res
    [enable] = [r for r in rows(d) if r.action == "disable_account" and r.kind == "undo"]
    assert owner_pid(enable.owner) == fifth.pid and enable.state == "done"
    assert any("what was still missing was restored" in t.detail for t in transitions(d)
               if t.action_id == enable.id)  # not "done" because d'arcy was enabled: l'estrange too
    applied_once(d)
    written_once(dc, writes, before, undone=True)
    report_counts_single(d, result["incident"])
    # the one chain names each takeover: the action, the dead worker and its successor
    chain = audit_records(d.root / "central" / "audit")
    taken = {(r["action_id"], owner_pid(r["previous_owner"]), owner_pid(r["worker"])) for r in chain
             if r["event"] == "worker.claimed" and r["takeover"] and r.get("previous_owner")}
    assert {(batch.id, first.pid, second.pid), (groups.id, second.pid, third.pid),
            (restore.id, third.pid, fourth.pid), (enable.id, fourth.pid, fifth.pid)} <= taken, taken
