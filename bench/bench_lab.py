"""The practice lab a bench measures on: one already up (``--lab PREFIX``) or built for the run (``--build-lab``).

Why here: bench/cli_batch.py and bench/firewall_batch.py each carried the same dozen lines (use the running lab,
build it when asked, take down only a lab this run built, say why a part is skipped); one copy keeps the rule —
never take down a lab someone else is using — in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agent.lab import Lab

__all__ = ["bench_lab"]


@contextmanager
def bench_lab(prefix: str, build: bool, what: str) -> Iterator[Lab | None]:
    """The lab ``prefix``: used as it is when up; built when ``build`` (and then taken down after the block);
    otherwise None, with a line saying ``what`` is skipped and how to get a lab."""
    lab = Lab(prefix=prefix)
    built = False
    if build and not lab.is_up():
        lab.up(rebuild=True)
        built = True
    try:
        if not lab.is_up():
            print(f"lab {lab.prefix!r} is not up: {what} skipped (agent lab up, or --build-lab)")
            yield None
            return
        yield lab
    finally:
        if built:
            lab.down()
