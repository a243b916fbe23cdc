"""Human and JSON output for the CLI. Plain text tables: fast to import, readable over SSH and in tickets."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from agent.runctx import colour_enabled

__all__ = ["color", "emit_json", "err", "table", "terminal_width"]

_CODES = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}


def color(text: str, name: str) -> str:
    """``text`` in colour ``name`` when this run's standard output is a terminal (decided per call, not import)."""
    return f"\033[{_CODES[name]}m{text}\033[0m" if colour_enabled() else text


def state_color(state: str) -> str:
    return color(state, {"done": "green", "failed": "red", "skipped": "yellow", "open": "yellow",
                         "contained": "red", "released": "green", "pending": "yellow", "partial": "yellow",
                         "in_doubt": "yellow"}.get(state, "bold"))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int | None = None) -> str:
    """Columns padded to their widest cell. With ``width`` (the terminal's columns) no line is wider: the widest
    column is narrowed until the table fits, and cells too long for it are cut with "…" (a wrapped table
    cannot be read at a glance)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(_visible(row[i]) for row in cells) for i in range(len(headers))]
    if width is not None:
        widths = _fit(widths, width)
        cells = [[c if _visible(c) <= widths[i] else _clip(c, widths[i]) for i, c in enumerate(row)]
                 for row in cells]
    lines = []
    for n, row in enumerate(cells):
        text = "  ".join(c + " " * (widths[i] - _visible(c)) for i, c in enumerate(row)).rstrip()
        lines.append(color(text, "bold") if n == 0 else text)
    return "\n".join(lines)


def terminal_width() -> int:
    """Columns of this run's terminal (``COLUMNS`` first, as POSIX says), 120 when it is not a terminal."""
    import shutil
    return shutil.get_terminal_size((120, 24)).columns


def _fit(widths: list[int], width: int, floor: int = 8) -> list[int]:
    out = list(widths)
    while sum(out) + 2 * (len(out) - 1) > width:
        widest = max(range(len(out)), key=lambda i: out[i])
        if out[widest] <= floor:
            break
        out[widest] -= 1
    return out


def _clip(text: str, width: int) -> str:
    import re
    plain = re.sub(r"\033\[[0-9;]*m", "", text)  # colour codes are dropped from a cut cell
    return plain[: max(width - 1, 0)] + "…"


def _visible(text: str) -> int:
    import re
    return len(re.sub(r"\033\[[0-9;]*m", "", text))


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def err(message: str) -> None:
    sys.stderr.write(color("error: ", "red") + message + "\n")
