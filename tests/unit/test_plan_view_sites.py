"""The plan says which site's workers will run a step (agent/commands/act_view.py ``print_plan``): a responder on
the central must know that ``agent worker --site site1`` has to be up before answering yes — the central has no
credentials for those hosts and sends nothing to them itself."""

from __future__ import annotations

from types import SimpleNamespace as NS

from agent.commands.act_view import print_plan


def action(name: str, address: str, site: str | None) -> NS:
    spec = NS(mutating=True, reversible=True, undo_description="")
    return NS(step=NS(id="isolate"), action="isolate", connector="ssh_linux", spec=spec, summary=["drop all"],
              undo_of=None, preview=[], target=NS(name=name, address=address), entry=NS(site=site))


def plan(*actions: NS) -> NS:
    return NS(runbook=NS(name="isolate-host", irreversible_note=""), subjects=[a.target.name for a in actions],
              actions=list(actions), notes=[])


def test_routed_steps_name_the_site_workers(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    print_plan(plan(action("h01", "10.77.17.101", "site1"), action("h02", "10.77.17.102", "site1")), False,
               routed=frozenset({"site1", "site2"}))
    out = capsys.readouterr().out
    assert "run by: the workers of site site1 (`agent worker --site site1`), not this process" in out


def test_local_targets_and_sites_without_workers_say_nothing(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    print_plan(plan(action("web1", "10.0.0.5", None), action("db1", "10.0.0.6", "lyon")), False,
               routed=frozenset({"site1"}))
    assert "run by" not in capsys.readouterr().out
