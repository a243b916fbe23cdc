"""CPU seconds of a daemon (by process: core, HTTP front, warm CLI server), of this process and of the machine.

Why: on a shared machine a slow run is explained by what else ran; the daemon's own CPU per alert is the steadier
figure to compare between checkouts.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CpuMeter", "machine_cpu", "process_cpu"]


def _ticks(path: str) -> float:
    fields = Path(path).read_text()
    fields = fields[fields.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def process_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid`` (the core) and its living descendants by role: the HTTP front, the warm CLI server."""
    out = {"core": _ticks(f"/proc/{pid}/stat")}
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                try:
                    cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
                    role = ("front" if b"agent.intake.front" in cmdline else
                            "warm" if b"agent.warm" in cmdline else "other")
                    out[role] = out.get(role, 0.0) + _ticks(f"/proc/{kid}/stat")
                except OSError:
                    continue
                todo.append(kid)
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8]) / os.sysconf("SC_CLK_TCK")
    return total - (values[3] + values[4]) / os.sysconf("SC_CLK_TCK"), total


class CpuMeter:
    """CPU used by the generator (this process), the daemon (by process) and everything else, between start() and
    stop()."""

    def __init__(self, daemon_pid: int) -> None:
        self.pid = daemon_pid

    def _sample(self) -> tuple[float, dict[str, float], float]:
        return sum(os.times()[:2]), process_cpu(self.pid), machine_cpu()[0]

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        (me0, procs0, busy0), (me1, procs1, busy1) = self._start, self._sample()
        parts = {role: procs1.get(role, 0.0) - procs0.get(role, 0.0) for role in procs1}
        daemon = sum(parts.values())
        return {"generator": me1 - me0, "daemon": daemon, "others": max(0.0, busy1 - busy0 - (me1 - me0) - daemon),
                **{f"daemon.{role}": v for role, v in parts.items()}}
