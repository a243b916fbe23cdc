"""Incident scope as recorded in the audit log: which systems, which data sets, how many people in which state.

Why snapshots and not the inventory: the notification checklist must rest on the facts as they stood when the
incident was handled. The engine writes an ``incident.scope`` record (see :func:`snapshot_scope`) when a plan for
the incident is made, and ``agent incidents facts`` writes one when counsel adds or corrects facts; the report
folds those records (:func:`fold_scope`) and never reads today's inventory, so editing the inventory afterwards
changes nothing.

Why data sets: people are counted once per *data set*, never per action or per system. A host isolated, then
released, is one system; two hosts holding copies of the same customer table (``dataset: crm`` on both) are one
data set. Counts of different data sets are added (the same person in two data sets is counted twice — stated in
the report as an upper bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.report.vocabulary import check_categories

__all__ = ["Scope", "fold_scope", "scope_from_tags", "snapshot_scope", "system_scope", "target_tags"]


@dataclass
class Scope:
    """The incident's scope folded from every ``incident.scope`` record (first definition of a data set wins)."""

    systems: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {kind, dataset, seq}
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {data, residents, seq, source}
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # state -> {count, source, confidence, seq}
    snapshots: list[int] = field(default_factory=list)  # seqs of the records folded

    @property
    def data_categories(self) -> list[str]:
        return sorted({c for d in self.datasets.values() for c in d["data"]})

    @property
    def resident_states(self) -> list[str]:
        return sorted({s for d in self.datasets.values() for s in d["residents"]} | set(self.overrides))

    def residents_by_state(self) -> dict[str, int]:
        """Known counts: per state the sum over distinct data sets, unless counsel recorded a count for the state.

        Data sets whose count is unknown add nothing; :meth:`count_sources` then says the number is a lower bound.
        """
        out: dict[str, int] = {}
        for state in self.resident_states:
            if state in self.overrides:
                out[state] = int(self.overrides[state]["count"])
                continue
            counts = [d["residents"][state] for d in self.datasets.values() if state in d["residents"]]
            if any(c is not None for c in counts):
                out[state] = sum(c for c in counts if c is not None)
        return out

    def count_sources(self) -> dict[str, str]:
        """Per state: where its number comes from (shown beside each count in the report)."""
        out: dict[str, str] = {}
        for state in self.resident_states:
            if state in self.overrides:
                o = self.overrides[state]
                out[state] = f"recorded by {o['source']} (audit seq {o['seq']}; confidence {o['confidence']})"
                continue
            sets = sorted(d for d, v in self.datasets.items() if state in v["residents"])
            unknown = [d for d in sets if self.datasets[d]["residents"][state] is None]
            out[state] = "inventory snapshot, data set(s) " + ", ".join(sets) + (
                f" (at least: count unknown for {', '.join(unknown)})" if unknown else "")
        return out


def system_scope(name: str, kind: str, data: Iterable[str], residents: Mapping[str, int | None] | Iterable[str],
                 dataset: str | None = None) -> dict[str, Any]:
    """One system's row in an ``incident.scope`` record (the JSON shape documented in docs/audit-format.md)."""
    if isinstance(residents, Mapping):
        counts = {str(k): (None if v is None else int(v)) for k, v in residents.items()}
    else:
        counts = {str(state): None for state in residents}
    return {"name": name, "kind": kind, "dataset": dataset or name, "data": sorted(set(data)), "residents": counts}


def snapshot_scope(entries: Iterable[Any]) -> dict[str, Any]:
    """Fields of an ``incident.scope`` record for inventory entries (``HostEntry``-like objects), each once.

    Reads ``name``, ``kind``, ``data``, ``resident_counts`` (``{state: count}``; else ``residents``, a state
    list) and ``dataset``. Devices and directories hold no personal data of their own and are listed without.
    """
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = str(entry.name)
        if name in seen:
            continue
        seen[name] = system_scope(name, str(getattr(entry, "kind", "host")), getattr(entry, "data", ()) or (),
                                  getattr(entry, "resident_counts", None) or getattr(entry, "residents", ()) or (),
                                  getattr(entry, "dataset", None))
    return {"systems": list(seen.values())}


def scope_from_tags(inventory_tags: Mapping[str, Mapping[str, Any]], targets: Iterable[str]) -> dict[str, Any]:
    """Fallback for logs written before scope snapshots existed: one row per distinct target from tags."""
    rows = []
    for name in dict.fromkeys(targets):
        tags = target_tags(inventory_tags, name)
        rows.append(system_scope(name, str(tags["kind"] or "host"), tags["data"], tags["residents"]))
    return {"systems": rows}


def fold_scope(records: Iterable[Mapping[str, Any]]) -> Scope:
    """Fold ``incident.scope`` and ``incident.facts`` records (oldest first) into one :class:`Scope`."""
    scope = Scope()
    for record in records:
        event = record.get("event")
        seq = record.get("seq")
        if event == "incident.scope":
            scope.snapshots.append(int(seq or 0))
            for row in record.get("systems") or ():
                name = str(row["name"])
                dataset = str(row.get("dataset") or name)
                scope.systems.setdefault(name, {"kind": row.get("kind", "host"), "dataset": dataset, "seq": seq})
                if dataset not in scope.datasets and (row.get("data") or row.get("residents")):
                    scope.datasets[dataset] = {"data": list(row.get("data") or ()),
                                               "residents": dict(row.get("residents") or {}), "seq": seq,
                                               "source": str(record.get("cause") or "snapshot")}
        elif event == "incident.facts":
            for state, count in (record.get("residents") or {}).items():
                who = str(record.get("recorded_by") or record.get("actor") or "unknown")
                scope.overrides[str(state)] = {"count": int(count), "seq": seq,
                                               "source": who + (f" — {record['source']}" if record.get("source")
                                                                else ""),
                                               "confidence": str(record.get("confidence") or "stated")}
            extra = record.get("data_categories") or ()
            if extra:
                check_categories(extra, where="incident facts")
                ds = scope.datasets.setdefault("(facts)", {"data": [], "residents": {}, "seq": seq,
                                                           "source": "facts"})
                ds["data"] = sorted(set(ds["data"]) | set(extra))
    return scope


def target_tags(inventory_tags: Mapping[str, Mapping[str, Any]], target: str) -> dict[str, Any]:
    """Normalise one target's inventory tags to ``{"kind", "data": set, "residents": {state: count|None}}``.

    Accepts either structured keys (``data``, ``residents`` as list or mapping, ``kind``) or a flat ``tags``
    list such as ``["data:ssn", "residents:MA", "residents:WA=700"]``.
    """
    raw = inventory_tags.get(target) or {}
    data: set[str] = set(raw.get("data") or ())
    residents: dict[str, int | None] = {}
    declared = raw.get("residents") or {}
    if isinstance(declared, Mapping):
        residents.update({str(k): (int(v) if v is not None else None) for k, v in declared.items()})
    else:
        residents.update({str(state): None for state in declared})
    for tag in raw.get("tags") or ():
        key, _, value = str(tag).partition(":")
        if key == "data" and value:
            data.add(value)
        elif key == "residents" and value:
            state, _, count = value.partition("=")
            residents[state] = int(count) if count.isdigit() else residents.get(state)
    return {"kind": raw.get("kind"), "data": data, "residents": residents, "address": raw.get("address")}
