"""Live progress of a run: a board on a terminal, NDJSON events for scripts, from the journal's own transitions.

Progress is read from :class:`~agent.journal.Journal` observers, i.e. from the transitions that were just
committed, so what the responder watches is what the journal (and later counsel) will say — never a separate
guess. The board redraws one line per action in place on a TTY; elsewhere nothing is redrawn (plain result lines
are printed by the command as before). ``--events`` writes one JSON object per transition (NDJSON) for scripts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

__all__ = ["EventStream", "ProgressBoard", "Transition"]

_PHASES = {"intent": "planned", "snapshotted": "snapshot taken", "applying": "applying", "verifying": "verifying",
           "done": "done", "failed": "failed", "in_doubt": "in doubt — verifying", "rolled_back": "rolled back"}


@dataclass(frozen=True)
class Transition:
    """What observers receive: one committed state change of one action."""

    incident: str
    action_id: str
    target: str
    step: str
    action: str
    kind: str
    from_state: str
    to_state: str
    detail: str


class EventStream:
    """One JSON object per line, flushed at once (a script reading a pipe sees each transition as it happens)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "elapsed_s": round(time.monotonic() - self._t0, 3), **fields}
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def __call__(self, t: Transition) -> None:
        self.emit("transition", incident=t.incident, action_id=t.action_id, target=t.target, step=t.step,
                  action=t.action, kind=t.kind, from_state=t.from_state, to_state=t.to_state, detail=t.detail)


class ProgressBoard:
    """One line per action, updated in place on a terminal: target, step, phase, elapsed seconds."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._rows: dict[str, list[Any]] = {}  # action id -> [target, step, phase, started, finished]
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self) -> None:
        """Redraw once a second so elapsed times move while a slow host answers."""
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            self._draw()

    def __call__(self, t: Transition) -> None:
        with self._lock:
            row = self._rows.get(t.action_id)
            now = time.monotonic()
            if row is None:
                verb = f"undo {t.action}" if t.kind == "undo" else t.action
                row = self._rows[t.action_id] = [t.target, verb, "", now, None]
            row[2] = _PHASES.get(t.to_state, t.to_state)
            if t.to_state in ("done", "failed", "in_doubt", "rolled_back"):
                row[4] = now
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if any(r[4] is None for r in self._rows.values()):
                    self._draw()

    def _draw(self) -> None:
        if not self._rows:
            return
        now = time.monotonic()
        lines = []
        for target, verb, phase, started, finished in self._rows.values():
            elapsed = (finished or now) - started
            lines.append(f"  {target:<16.16} {verb:<18.18} {phase:<22} {elapsed:5.1f} s")
        up = f"\033[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "".join(f"\033[2K{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)
