"""Target selection for host commands: the many ways a responder names hosts, resolved to inventory names.

An outbreak is rarely one host: the responder has an EDR export of 40 names, a tag (``outbreak``), a subnet or a
site. Every selector resolves against the inventory *before* anything is planned, so the plan lists exactly the
hosts that will be touched, and a typo fails with the closest inventory names instead of a bare "unknown host".
Nothing here connects anywhere; protected hosts are still refused later by the planner, all together.
"""

from __future__ import annotations

import difflib
import ipaddress
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import InputError
from agent.inventory import HostEntry, Inventory

__all__ = ["Selection", "TargetSelector", "suggest"]


@dataclass(frozen=True)
class Selection:
    """What the user asked for, before resolution (each list as given on the command line)."""

    hosts: Sequence[str] = ()  # --host, repeated or comma-separated
    tags: Sequence[str] = ()  # --tag
    sites: Sequence[str] = ()  # --site
    cidrs: Sequence[str] = ()  # --cidr
    files: Sequence[str] = ()  # --from-file (``-`` = standard input)

    def empty(self) -> bool:
        return not (self.hosts or self.tags or self.sites or self.cidrs or self.files)


@dataclass
class TargetSelector:
    """Resolves a :class:`Selection` against one inventory; remembers why each host was selected."""

    inventory: Inventory
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def resolve(self, selection: Selection) -> list[str]:
        """Inventory names (or addresses given explicitly) in the order first selected, without duplicates.

        Raises :class:`InputError` naming the selector and value that matched nothing, with suggestions.
        """
        if selection.empty():
            raise InputError("no target given: name hosts with --host, --tag, --site, --cidr or --from-file")
        for raw in selection.hosts:
            for name in _split(raw):
                self._add_named(name, f"--host {name}")
        for path in selection.files:
            for lineno, name in _read_names(path):
                self._add_named(name, f"{_label(path)}:{lineno}")
        for tag in _split_all(selection.tags):
            matched = [h for h in self.inventory.hosts.values() if tag in h.tags]
            if not matched:
                known = sorted({t for h in self.inventory.hosts.values() for t in h.tags})
                raise InputError(f"--tag {tag!r}: no inventory host carries this tag"
                                 f"{_did_you_mean(tag, known)} (known tags: {', '.join(known) or 'none'})")
            for entry in matched:
                self._add(entry.name, f"--tag {tag}")
        for site in _split_all(selection.sites):
            matched = [h for h in self.inventory.hosts.values() if _site(h) == site]
            if not matched:
                known = sorted({s for h in self.inventory.hosts.values() if (s := _site(h))})
                raise InputError(f"--site {site!r}: no inventory host is at this site"
                                 f"{_did_you_mean(site, known)} (known sites: {', '.join(known) or 'none'})")
            for entry in matched:
                self._add(entry.name, f"--site {site}")
        for raw in _split_all(selection.cidrs):
            try:
                net = ipaddress.ip_network(raw, strict=False)
            except ValueError:
                raise InputError(f"--cidr {raw!r}: not an IPv4/IPv6 network (e.g. 10.0.4.0/24)") from None
            matched = [h for h in self.inventory.hosts.values() if _in(h.address, net)]
            if not matched:
                raise InputError(f"--cidr {raw}: no inventory host has an address in this network")
            for entry in matched:
                self._add(entry.name, f"--cidr {raw}")
        return list(self.reasons)

    def _add_named(self, name: str, why: str) -> None:
        if name in self.inventory.hosts:
            self._add(name, why)
            return
        for entry in self.inventory.hosts.values():
            if entry.address == name:
                self._add(entry.name, why)
                return
        if _is_address(name):
            self._add(name, why)  # an address outside the inventory: the planner decides (and explains) what it is
            return
        raise InputError(f"{why}: host {name!r} is not in the inventory {self.inventory.path}"
                         f"{_did_you_mean(name, self.inventory.hosts)}")

    def _add(self, name: str, why: str) -> None:
        self.reasons.setdefault(name, []).append(why)


def suggest(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The closest known names (case-insensitive), best first: what a tired responder probably meant."""
    by_lower: dict[str, str] = {}
    for name in known:
        by_lower.setdefault(name.lower(), name)
    w = word.lower()
    close = difflib.get_close_matches(w, list(by_lower), n=n, cutoff=0.6)
    # swapped characters (web10 for web01) are the commonest slip under stress: rank them first
    close.sort(key=lambda k: 0 if len(k) == len(w) and sorted(k) == sorted(w) else 1)
    prefix = [by_lower[k] for k in sorted(by_lower) if k.startswith(w) and k not in close]
    return [by_lower[k] for k in close] + prefix[: max(0, n - len(close))]


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    hits = suggest(word, known)
    return f" — did you mean {' or '.join(repr(h) for h in hits)}?" if hits else ""


def _split(raw: str) -> list[str]:
    """``a,b , c`` → [a, b, c]; empty items are an error (a stray comma usually means a lost name)."""
    parts = [p.strip() for p in raw.split(",")]
    if any(not p for p in parts):
        raise InputError(f"--host {raw!r}: empty name in a comma-separated list")
    return parts


def _split_all(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        out.extend(p.strip() for p in raw.split(",") if p.strip())
    return out


def _read_names(path: str) -> list[tuple[int, str]]:
    """One name or address per line; ``#`` starts a comment; blank lines are skipped; ``-`` reads stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"--from-file {path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"--from-file {path}: not UTF-8 text (one host name or address per line)") from None
    out: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        first = name.split(",")[0].split()[0]  # EDR exports: "name,other columns" or "name  whitespace"
        out.append((lineno, first))
    if not out:
        raise InputError(f"--from-file {_label(path)}: no host names in it (one name or address per line)")
    return out


def _label(path: str) -> str:
    return "stdin" if path == "-" else path


def _site(entry: HostEntry) -> str:
    return str(getattr(entry, "site", "") or entry.options.get("site", "") or "")


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _in(address: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        return False
