"""Dedupe and blast-radius limits: the two guards that keep an alert storm from becoming an outage.

**Dedupe** — key ``(runbook, target)``. The first alert opens an incident and claims the key for
``dedupe_window`` (measured from that first alert); later alerts with the same key inside the window join
that incident with disposition ``deduped`` and nothing is re-applied. A key is given up early when its
incident is released (the containment is gone, so a new alert must be able to start again). The index lives
in memory because it is consulted in the webhook's request path; it is rebuilt from the database on start.

**Blast radius** — at most ``hosts`` distinct hosts isolated and ``accounts`` distinct accounts disabled
*automatically* per sliding ``window``. Decisions are taken by one dispatcher thread in arrival order and a
slot is reserved at decision time (before execution, whatever the outcome), so concurrency can never
overshoot. Plans beyond the limit become approval requests; approved plans still count against the window.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["BlastRadius", "DedupeIndex", "dedupe_key"]


def dedupe_key(policy: str, runbook: str) -> str:
    """The runbook part of a dedupe key. Dry-run rules rehearse in a key space of their own: a rehearsal
    coalesces repeated rehearsals, but never makes an alert under an ``auto``/``approve`` rule "deduped"."""
    return f"dry-run:{runbook}" if policy == "dry-run" else runbook


@dataclass
class _Claim:
    incident: str
    since: datetime


class DedupeIndex:
    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._claims: dict[tuple[str, str], _Claim] = {}
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, str], incident: str, now: datetime) -> tuple[str, bool]:
        """Return ``(incident, True)`` when ``key`` is new (claimed for ``incident``), else the holder's id."""
        with self._lock:
            held = self._claims.get(key)
            if held is not None and now - held.since < self.window:
                return held.incident, False
            self._claims[key] = _Claim(incident, now)
            if len(self._claims) > 10000:
                self._expire(now)
            return incident, True

    def release(self, key: tuple[str, str], incident: str) -> None:
        """Give ``key`` up (e.g. the claim could not be persisted)."""
        with self._lock:
            if key in self._claims and self._claims[key].incident == incident:
                del self._claims[key]

    def forget_incident(self, incident: str) -> None:
        """The incident was released: its keys no longer dedupe new alerts."""
        with self._lock:
            for key in [k for k, c in self._claims.items() if c.incident == incident]:
                del self._claims[key]

    def load(self, rows: Iterable[tuple[str, str, str, datetime]], now: datetime) -> None:
        """Rebuild from ``(runbook, target, incident, opened_at)`` rows, newest claim winning."""
        with self._lock:
            for runbook, target, incident, since in sorted(rows, key=lambda r: r[3]):
                if now - since < self.window:
                    self._claims[(runbook, target)] = _Claim(incident, since)

    def _expire(self, now: datetime) -> None:
        for key in [k for k, c in self._claims.items() if now - c.since >= self.window]:
            del self._claims[key]


class BlastRadius:
    def __init__(self, max_hosts: int, max_accounts: int, window: timedelta) -> None:
        self.limits = {"hosts": max_hosts, "accounts": max_accounts}
        self.window = window
        self._seen: dict[str, dict[str, datetime]] = {"hosts": {}, "accounts": {}}
        self._lock = threading.Lock()

    def _prune(self, now: datetime) -> None:
        for seen in self._seen.values():
            for name in [n for n, at in seen.items() if now - at >= self.window]:
                del seen[name]

    def check(self, wanted: dict[str, set[str]], now: datetime) -> str | None:
        """Why ``wanted`` (category → target names) would exceed a limit, or None (nothing is reserved)."""
        with self._lock:
            self._prune(now)
            for category, names in wanted.items():
                seen = self._seen[category]
                new = names - set(seen)
                if new and len(seen) + len(new) > self.limits[category]:
                    return (f"blast radius: {len(seen)} {category} already contained automatically in the last "
                            f"{_human(self.window)} (limit {self.limits[category]}); "
                            f"{', '.join(sorted(new))} needs approval")
            return None

    def reserve(self, wanted: dict[str, set[str]], now: datetime) -> None:
        """Count ``wanted`` against the window (called for automatic and approved executions alike)."""
        with self._lock:
            for category, names in wanted.items():
                for name in names:
                    self._seen[category].setdefault(name, now)

    def load(self, rows: Iterable[tuple[str, str, datetime]], now: datetime) -> None:
        """Rebuild from ``(category, name, created_at)`` rows of journaled actions (the category each action's
        connector declares: ``ActionSpec.blast``)."""
        for category, target, at in rows:
            if category in self._seen and now - at < self.window:
                with self._lock:
                    self._seen[category][target] = max(at, self._seen[category].get(target, at))

    def usage(self, now: datetime) -> dict[str, int]:
        with self._lock:
            self._prune(now)
            return {k: len(v) for k, v in self._seen.items()}


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
