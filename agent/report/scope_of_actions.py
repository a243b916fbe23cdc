"""The incident's scope as the report states it: systems, accounts and IPs the actions touched, data sets and counts.

Why a module of its own (STYLE #2): :mod:`agent.report.from_records` folds the audit records into a timeline and
action entries; turning those actions and the ``incident.scope`` snapshots into who and what was affected is a
separate job with its own rules (people counted once per data set, see :mod:`agent.report.scope`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from agent.report.model import IncidentReportData
from agent.report.scope import fold_scope, scope_from_tags, target_tags

__all__ = ["fill_scope"]

_IP_ARGS = ("ip", "ips", "address", "addresses", "cidr", "source_ip", "remote_ip")
_ACCOUNT_ARGS = ("account", "user", "username", "sam_account_name", "samaccountname")


def fill_scope(data: IncidentReportData, arguments: Mapping[str, Mapping[str, Any]],
           inventory_tags: Mapping[str, Mapping[str, Any]], mine: list[Mapping[str, Any]]) -> None:
    """Systems, accounts and IPs from the actions; data categories and counts from the scope snapshots.

    People are counted once per data set (see :mod:`agent.report.scope`), never once per action. Logs written
    before scope snapshots existed fall back to the inventory tags given, once per distinct target, and say so.
    """
    hosts: set[str] = set()
    accounts: set[str] = set()
    ips: set[str] = set()
    snapshots = [r for r in mine if r.get("event") == "incident.scope"]
    if not snapshots:
        legacy = {"event": "incident.scope", "seq": None, "cause": "current inventory (no snapshot in the log)",
                  **scope_from_tags(inventory_tags, [a.target for a in data.actions])}
        snapshots = [legacy]
        data.scope_note = ("The audit log holds no scope snapshot for this incident: data categories and counts "
                           "were read from the inventory as it is now.")
    scope = fold_scope([*snapshots, *(r for r in mine if r.get("event") == "incident.facts")])
    kinds = {name: row["kind"] for name, row in scope.systems.items()}
    for entry in data.actions:
        kind = kinds.get(entry.target) or target_tags(inventory_tags, entry.target)["kind"] or (
            "account" if "account" in entry.action else "host")
        (accounts if kind in ("account", "directory") and "account" in entry.action else hosts).add(entry.target)
        args = arguments.get(entry.action_id, {})
        for key in _IP_ARGS:
            for value in _as_list(args.get(key)):
                if _is_ip(value) and (key != "address" or "ip" in entry.action):
                    ips.add(value)
        for key in _ACCOUNT_ARGS:
            accounts.update(_as_list(args.get(key)))
    data.hosts, data.accounts, data.ips = sorted(hosts), sorted(accounts), sorted(ips)
    data.data_categories = sorted(set(scope.data_categories) | set(data.data_categories))
    data.resident_states = sorted(set(scope.resident_states) | set(data.resident_states))
    data.residents_by_state.update(scope.residents_by_state())
    data.count_sources = scope.count_sources()
    data.datasets = {name: {"data": v["data"], "residents": v["residents"], "audit_seq": v["seq"]}
                     for name, v in scope.datasets.items()}
    data.systems = {name: {"kind": v["kind"], "dataset": v["dataset"], "audit_seq": v["seq"]}
                    for name, v in scope.systems.items()}
    if data.total_affected is None and data.resident_states and \
            set(data.resident_states) <= set(data.residents_by_state):
        data.total_affected = sum(data.residents_by_state[s] for s in data.resident_states)
        data.total_source = "sum of the per-state counts (each data set counted once)"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set):
        return [str(v) for v in value]
    return [str(value)]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True
