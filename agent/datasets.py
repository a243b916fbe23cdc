"""Data sets: which personal data a system holds and how many people, per state, it concerns.

Why a data set and not a host: a replica, a backup server and the primary hold copies of the same records, and
the people in them must be counted once (lesson 14 in ARCHITECTURE.md). So counts belong to a data set. Two ways
to write one, one meaning:

- ``datasets.NAME: {data: [...], residents: {MA: 1225, NH: 12}}`` and ``dataset: NAME`` on every system holding it;
- on a single system, ``data`` + ``residents`` directly (a data set named after the system, or after its
  ``dataset:`` when the name is not declared under ``datasets:``).

``residents`` is always ``{STATE: count}``; ``null`` marks a state whose count is not known yet. Everything that
would make a count ambiguous is refused at load time with file, line and field: a state list (``[MA, NY]``, the
old form), counts given both under ``datasets`` and on a system, two systems giving different counts for one data
set, and the flat tag form (``tags: [residents:MA=12]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.validate import INVENTORY_NAME
from agent.yamlsrc import Node

__all__ = ["DataSet", "DataSets", "categories", "load_datasets", "resident_counts"]

_STATE = re.compile(r"[A-Z]{2}")
_TAG_FORMS = ("data:", "residents:")


@dataclass(frozen=True)
class DataSet:
    name: str
    data: tuple[str, ...] = ()
    residents: Mapping[str, int | None] = field(default_factory=dict)
    declared: bool = False  # under ``datasets:`` (else written on a system)
    where: str = ""  # the field that gave the counts, for error messages


@dataclass
class DataSets:
    """Declared data sets plus those written on systems, checked for one meaning per name."""

    sets: dict[str, DataSet] = field(default_factory=dict)

    def for_system(self, system: Node, name: str) -> DataSet | None:
        """The data set of inventory entry ``system`` (called ``name``), or None when it holds none."""
        ds_node = system.get("dataset")
        ds_name = ds_node.str_(pattern=INVENTORY_NAME, what="data set name") if ds_node else name
        own_data, own_residents = system.get("data"), system.get("residents")
        declared = self.sets.get(ds_name)
        if declared is not None and declared.declared:
            for own in (own_data, own_residents):
                if own is not None:
                    raise own.error(f"data set {ds_name!r} is declared under datasets: — its data and residents are "
                                    f"written there once, not on each system holding it")
            return declared
        if ds_node is not None and own_data is None and own_residents is None:
            known = ", ".join(sorted(n for n, d in self.sets.items() if d.declared)) or "none declared"
            raise ds_node.error(f"data set {ds_name!r} is not declared under datasets: (known: {known}); declare it "
                                f"there, or give data/residents on this system")
        if own_data is None and own_residents is None:
            return None
        found = DataSet(name=ds_name, data=categories(system.child("data")),
                        residents=resident_counts(system.child("residents")), where=system.field)
        if declared is not None and (declared.data, dict(declared.residents)) != (found.data, dict(found.residents)):
            raise system.error(f"data set {ds_name!r} is also described at {declared.where} with other data or "
                               f"residents; declare it once under datasets.{ds_name}")
        self.sets.setdefault(ds_name, found)
        return found


def load_datasets(node: Node) -> DataSets:
    out = DataSets()
    for name, child in node.items():
        if not isinstance(name, str) or not INVENTORY_NAME.fullmatch(name):
            raise child.error(f"{name!r} is not a valid data set name (letters, digits, '.', '_', '-')")
        child.mapping(allowed={"data", "residents", "description"})
        out.sets[name] = DataSet(name=name, data=categories(child.child("data")),
                                 residents=resident_counts(child.child("residents")), declared=True,
                                 where=child.field)
    return out


def categories(node: Node) -> tuple[str, ...]:
    """Data categories from the closed vocabulary; an unknown one would silently drop the rules that need it."""
    from agent.obligations import DATA_CATEGORIES

    out = []
    for element in node.elements():
        value = element.str_()
        if value not in DATA_CATEGORIES:
            raise element.error(f"unknown data category {value!r} (known: {', '.join(DATA_CATEGORIES)})")
        out.append(value)
    return tuple(out)


def resident_counts(node: Node) -> dict[str, int | None]:
    """``residents: {MA: 1225, NH: 12}`` — people whose records the data set holds, by state (``null`` = unknown)."""
    if node.value is None:
        return {}
    if isinstance(node.value, list):
        states = ", ".join(f"{s}: null" for s in node.value if isinstance(s, str)) or "MA: 1225"
        raise node.error(f"residents is a count per state, e.g. {{MA: 1225, NH: 12}}; a list of states is the old "
                         f"form — write {{{states}}} while the counts are not known")
    if not isinstance(node.value, dict):
        raise node.error("expected {STATE: count, ...} (e.g. {MA: 1225, NH: 12}; null = count unknown)")
    counts: dict[str, int | None] = {}
    for state, child in node.items():
        if not _STATE.fullmatch(str(state)):
            raise child.error(f"{state!r} is not a two-letter state code (e.g. MA)")
        counts[str(state)] = None if child.value is None else child.int_(minimum=0)
    return counts


def refuse_tag_forms(tags: Node) -> None:
    """``tags: [data:ssn, residents:MA=12]`` was an early way to describe data; it is refused, not half-read."""
    for element in tags.elements():
        text = element.value
        if isinstance(text, str) and text.startswith(_TAG_FORMS):
            field_name = text.split(":", 1)[0]
            raise element.error(f"tag {text!r}: write {field_name} as its own field (data: [ssn], residents: "
                                f"{{MA: 12}}) — tags only select hosts")
