"""An Active Directory directory at a site, contained through that site's worker against the real Samba DC
(issue 19: "each inventory host/device/directory names a ``site``; ``agent worker --site`` runs next to the
targets and holds their credentials").

The lab (``--hosts 1 --sites 1``) with its Samba AD DC on the LAN; PostgreSQL and RabbitMQ privately on mgmt, as
in tests/integration/test_site_workers.py (whose helpers this reuses, with tests/integration/deploy.py). The DC's
own firewall admits only site1's worker host ``wk1`` (an nftables input chain in the DC's namespace), so the
central CLI on mgmt has **no route to the DC**, and its inventory has **no directory credentials**: the worker's
configuration alone has them. What is shown, on the DC itself:

- no worker of the site running: a dry run notes the missing lookup; a real `disable-account` is refused (exit
  1, naming the site) with nothing journaled or queued. Fails before: the names went unchecked and the changes
  were queued for nobody (exit 4, in doubt), to apply whenever a worker came back;
- `disable-account "o'brien" --with-groups` from the central: the plan-time account lookup is a site read done
  by the worker (journaled once, named by it); every action of the command runs on that worker, site ``site1``;
  the DC shows ``userAccountControl``/``logonHours`` written exactly once (per-attribute replication versions,
  tests/integration/engine/ad_state.py) and the privileged membership gone; the one audit chain (written by the
  central) records the actions with site and worker and verifies with the deployment's key;
- an alias that only the DC knows belongs to a protected account, asked together with ``o'brien``: refused
  centrally (exit 3, "protected account") after the worker's lookup, nothing journaled, nothing written;
- `enable-account 'LAB\\o'brien'` (another spelling: the worker's lookup finds the same objectGUID the items
  were journaled by): through the worker, the account's exact userAccountControl, logonHours and memberships
  back, each attribute written exactly twice in all (change + undo).

Everything but the first point already worked: it is a regression guard (dropping the site lookup, or the
central refusal of what it finds, makes it fail: checked by breaking agent/identify.py locally).
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent.lab import Lab, labconfig, netns
from agent.lab.ad import DC_ADDRESS, stored_entry
from agent.lab.samba import SambaDC
from agent.lab.topology import fleet_names, namespace_name, worker_host
from tests.integration import deploy as fixtures
from tests.integration.engine.ad_state import HOURS, UAC, Writes, accounts, calibrate
from tests.integration.test_site_workers import (
    LEASE,
    Deployment,
    Scale,
    assert_chain_verifies,
    audit_records,
    owner_pid,
    rows,
    transitions,
)

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.samba]

SITE = "site1"
FLEET = fleet_names(1, 1)
OBRIEN = "o'brien"  # escape, don't forbid: a quote in the name the DC accepts (RFC 4515 filter, RFC 4514 DN)
KEEPER, KEEPER_ALIAS = "keeper", "vault.keeper@lab.test"  # protected; the central cannot tell the alias is it
GROUP = "Site-Ops"  # nested in Domain Admins: --with-groups takes o'brien's membership away, undo gives it back


def dc_admits_only(namespace: str, address: str) -> None:
    """The DC answers only ``address`` on its LAN leg (its own namespace's loopback, where the test's admin
    connection runs, stays open): nftables input chain, policy drop (nft(8) "CHAINS")."""
    rules = (f"table inet sitegate {{ chain input {{ type filter hook input priority 0; policy drop;\n"
             f"  iifname \"lo\" accept\n  ct state established,related accept\n  ip saddr {address} accept\n"
             "}\n}\n")
    subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=rules, text=True, check=True,
                   capture_output=True, env=netns._env())


@pytest.fixture(scope="module")
def site_ad() -> Iterator[tuple[Scale, SambaDC, Writes]]:
    if shutil.which("samba", path=netns.SBIN_PATH) is None or shutil.which("samba-tool") is None:
        pytest.skip("samba is not installed: run scripts/install-system.sh")
    made: list[tuple[SambaDC, Writes]] = []

    def with_dc(lab: Lab, stack: ExitStack) -> None:
        lab.up_ad()
        stack.callback(lab.down_ad)
        dc = SambaDC(namespace_name(lab.prefix, "dc"), DC_ADDRESS, lab.state_dir / "dc")
        stack.callback(dc.stop)  # closes its admin connection first (then down_ad removes the rest)
        writes = calibrate(dc, "sdcal")
        dc.create_user(OBRIEN, "Pw-obrien-9a!", logonHours=bytes([0xFF] * 20 + [0x0F]), userAccountControl=0x10200)
        dc.create_user(KEEPER, "Pw-keeper-9a!", userPrincipalName=KEEPER_ALIAS)
        dc.create_group(GROUP)
        dc.add_members("Domain Admins", [GROUP])
        dc.add_members(GROUP, [OBRIEN])
        dc_admits_only(dc.namespace, lab.hosts[worker_host(SITE)].address)
        made.append((dc, writes))
    with fixtures.site_lab("cad", hosts=len(FLEET), sites=1, pg_prefix="sitead-pg-", then=with_dc) as scale:
        [(dc, writes)] = made
        yield scale, dc, writes


def write_config(scale: Scale, root: Path, url: str, name: str, *, central: bool) -> Path:
    """agent.yaml + inventory.yaml (tests/integration/deploy.py): the lab's directory entry at ``site1`` (its
    options naming ``keeper`` protected); the central's without the site's credentials (the directory's among
    them), the worker's without the audit signing key (its records go to the central's one chain)."""
    lab = scale.lab
    entry = copy.deepcopy(stored_entry(lab.state_dir))
    assert entry is not None
    entry["site"] = SITE
    entry["options"]["protected_accounts"] = ["breakglass", KEEPER]
    inv = labconfig.inventory(lab.state_dir, entry, FLEET, lab.site_of())
    settings: dict[str, Any] = {}
    if central:  # waits lease + connect timeout for a site worker to take a read: no need for 5 s here
        settings["ssh"] = {**labconfig.agent_settings(lab.repo, root, lab.state_dir)["ssh"], "connect_timeout": 2}
    return fixtures.write_config(lab, root / name, inv, database=url, central=central, settings=settings,
                                 workers={"broker": scale.broker_url, "sites": [SITE], "lease": LEASE, "wait": 60})


@pytest.fixture
def deploy(site_ad: tuple[Scale, SambaDC, Writes], tmp_path: Path) -> Iterator[tuple[Deployment, SambaDC, Writes]]:
    scale, dc, writes = site_ad
    url = fixtures.create_database(scale.lab, scale.pg.url, f"ad{int(time.time())}")
    d = Deployment(scale, tmp_path, url, write_config(scale, tmp_path, url, "central", central=True))
    try:
        yield d, dc, writes
    finally:
        d.stop_all()


def start_worker(d: Deployment, name: str) -> subprocess.Popen[bytes]:
    """``agent worker --site site1`` on wk1 (the only host the DC answers), with the directory's credentials."""
    return d.start_worker(name, SITE, write_config(d.scale, d.root, d.url, name, central=False), slots=2)


def site_reads(d: Deployment) -> list[Any]:
    from agent.workers.models import SiteRead
    return list(d.db()(lambda s: list(s.scalars(select(SiteRead).order_by(SiteRead.created_at)))))


def dc_reachable_from(d: Deployment, host: str) -> bool:
    """A TCP connect to the DC's LDAPS port from ``host``'s namespace (the DC is no lab host of Lab.probe)."""
    with d.scale.lab.enter(host), socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((DC_ADDRESS, 636)) == 0


def items(d: Deployment) -> list[Any]:
    from agent.store import ActionItem
    return list(d.db()(lambda s: list(s.scalars(select(ActionItem).order_by(ActionItem.id)))))


def test_directory_at_a_site_is_looked_up_disabled_and_restored_by_its_worker(
        deploy: tuple[Deployment, SambaDC, Writes]) -> None:
    d, dc, writes = deploy
    assert not dc_reachable_from(d, "mgmt") and dc_reachable_from(d, worker_host(SITE))
    before = accounts(dc, OBRIEN)[OBRIEN]
    assert before.groups and not before.uac & 2

    # no worker of the site yet: a dry run notes the missing lookup; a real run is refused, nothing journaled or
    # queued (fails before: the names went unchecked and the changes were queued for nobody, exit 4 in doubt,
    # to apply whenever a worker came back)
    res = d.agent("disable-account", OBRIEN, "--reason", "site drill", "--dry-run")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "no worker of site site1 took the account lookup of lab-ad" in res.stdout, res.stdout
    res = d.agent("disable-account", OBRIEN, "--reason", "site drill", "--yes")
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "refused: no worker of site site1 took the account lookup of lab-ad" in res.stderr, res.stderr
    assert "could not be checked against the protected ones" in res.stderr
    assert "nothing was journaled or sent; start `agent worker --site site1`" in res.stderr
    assert rows(d) == [] and accounts(dc, OBRIEN)[OBRIEN] == before

    worker = start_worker(d, "site1-a")
    # a protected account behind an alias only the DC knows: the worker's lookup finds it, the central refuses
    res = d.agent("disable-account", OBRIEN, KEEPER_ALIAS, "--reason", "site drill", "--yes")
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]  # 3: refused by a guard
    assert f"'{KEEPER_ALIAS}' (account '{KEEPER}' (CN={KEEPER},CN=Users,DC=lab,DC=test) is protected" in res.stderr
    assert res.stderr.rstrip().endswith("resolve(s) to a protected account; nothing was changed"), res.stderr
    [looked] = [r for r in site_reads(d) if r.state == "done"]
    assert (looked.kind, looked.target, owner_pid(looked.owner)) == ("identify", "lab-ad", worker.pid)
    assert rows(d) == [] and accounts(dc, OBRIEN)[OBRIEN] == before

    # the real one: looked up by the worker, every action run by it, the DC written exactly once
    res = d.agent("disable-account", OBRIEN, "--with-groups", "--reason", "site drill", "--yes", "--json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    looked = [r for r in site_reads(d) if r.state == "done"]
    assert [r.kind for r in looked] == ["identify"] * 2 and {owner_pid(r.owner) for r in looked} == {worker.pid}
    acts = rows(d)
    assert sorted(r.action for r in acts) == ["capture_evidence", "disable_account", "expire_sessions",
                                              "remove_privileged_groups"]
    assert {(r.state, r.site, owner_pid(r.owner)) for r in acts} == {("done", SITE, worker.pid)}
    # journaled by the account's objectGUID as the DC has it (the worker's lookup), not by its spelling
    assert {i.canonical for i in items(d) if i.kind == "account"} == {f"guid:{dc_guid(dc, OBRIEN)}"}
    now = accounts(dc, OBRIEN)[OBRIEN]
    assert now.uac == before.uac | 2 and now.hours == bytes(21) and not now.groups, now
    uac, hours = writes.expect(before, undone=False)
    assert (now.version(UAC) - before.version(UAC), now.version(HOURS) - before.version(HOURS)) == (uac, hours)
    applying = [t for t in transitions(d) if t.to_state == "applying" and t.from_state != "applying"]
    assert sorted(t.action_id for t in applying) == sorted(r.id for r in acts)  # each applied once
    chain = audit_records(d.root / "central" / "audit")
    assert not (d.root / "site1-a" / "audit").exists()
    for row in acts:
        mine = [r for r in chain if r.get("action_id") == row.id and r.get("worker")]
        assert {r["worker"] for r in mine} == {row.owner} and {r["site"] for r in mine} == {SITE}, row.action
        assert sum(1 for r in chain if r.get("action_id") == row.id and r["event"] == "action.done") == 1
    assert [r["worker"] for r in chain if r["event"] == "worker.resolved"] == [worker_owner(acts)] * 2
    assert_chain_verifies(d)

    # and back by another spelling of the name (looked up by the worker: the same objectGUID): the exact state,
    # through the worker, each attribute written exactly twice in all
    res = d.agent("enable-account", "LAB\\" + OBRIEN, "--reason", "site drill over", "--yes")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    undos = [r for r in rows(d) if r.kind == "undo"]
    assert len(undos) == 3 and {(r.state, r.site, owner_pid(r.owner)) for r in undos} == {("done", SITE, worker.pid)}
    end = accounts(dc, OBRIEN)[OBRIEN]
    assert end.state == before.state, (end, before)
    uac, hours = writes.expect(before, undone=True)
    assert (end.version(UAC) - before.version(UAC), end.version(HOURS) - before.version(HOURS)) == (uac, hours)
    assert_chain_verifies(d)


def worker_owner(acts: list[Any]) -> str:
    [owner] = {r.owner for r in acts}
    return str(owner)


def dc_guid(dc: SambaDC, name: str) -> str:
    import uuid
    conn = dc.admin_connection()
    conn.search(dc.dn_of(name), "(objectClass=user)", search_scope="BASE", attributes=["objectGUID"])
    return str(uuid.UUID(bytes_le=bytes(conn.response[0]["raw_attributes"]["objectGUID"][0])))
