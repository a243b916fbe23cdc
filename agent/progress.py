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
    """One line per target, updated in place on a terminal: its current step, phase and elapsed seconds.

    Never taller than the terminal (cursor movement cannot reach lines scrolled away): with more targets than
    rows, targets still working and those that failed are shown, the rest are counted on a last line.
    """

    def __init__(self, actions_per_target: dict[str, int], out: IO[str] | None = None,
                 height: int | None = None, width: int | None = None) -> None:
        import shutil

        size = shutil.get_terminal_size((120, 40))
        self.out = out or sys.stdout
        self.height = max(4, (height or size.lines) - 3)
        self.width = max(40, (width or size.columns) - 1)
        self._expected = dict(actions_per_target)
        self._rows: dict[str, _Row] = {t: _Row(t) for t in actions_per_target}
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
            row = self._rows.setdefault(t.target, _Row(t.target))
            now = time.monotonic()
            if row.started is None:
                row.started = now
            row.verb = f"undo {t.action}" if t.kind == "undo" else t.action
            row.phase = _PHASES.get(t.to_state, t.to_state)
            if t.to_state in _FINAL:
                row.finished_actions += 1
                row.worst = max(row.worst, _FINAL[t.to_state], key=_SEVERITY.index)
                if row.finished_actions >= self._expected.get(t.target, 1):
                    row.finished = now
                    row.phase = row.worst
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if any(r.started is not None and r.finished is None for r in self._rows.values()):
                    self._draw()

    def _draw(self) -> None:
        now = time.monotonic()
        rows = list(self._rows.values())
        shown = rows
        if len(rows) > self.height:
            busy = [r for r in rows if (r.started is not None and r.finished is None) or r.worst != "done"]
            shown = busy[: self.height - 1]
        lines = [r.line(now, self.width) for r in shown]
        if len(shown) < len(rows):
            rest = [r for r in rows if r not in shown]
            done = sum(1 for r in rest if r.finished is not None)
            lines.append(f"  … {len(rest)} more: {done} done, {len(rest) - done} waiting")
        up = f"\033[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "".join(f"\033[2K{line}\n" for line in lines)
                       + "".join("\033[2K\n" for _ in range(self._drawn - len(lines))))
        self.out.flush()
        self._drawn = max(self._drawn, len(lines))


_FINAL = {"done": "done", "failed": "failed", "in_doubt": "in doubt", "rolled_back": "rolled back"}
_SEVERITY = ["done", "rolled back", "in doubt", "failed"]


@dataclass
class _Row:
    target: str
    verb: str = ""
    phase: str = "waiting"
    started: float | None = None
    finished: float | None = None
    finished_actions: int = 0
    worst: str = "done"

    def line(self, now: float, width: int) -> str:
        elapsed = "" if self.started is None else f"{(self.finished or now) - self.started:5.1f} s"
        text = f"  {self.target:<16.16} {self.verb:<18.18} {self.phase:<22.22} {elapsed}"
        return text[:width]
