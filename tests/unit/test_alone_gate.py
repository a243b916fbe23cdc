"""tests/alone.py: an ``alone`` test waits for the running test, and no new test starts while it waits or runs."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from pathlib import Path

from tests.alone import Gate


def test_alone_waits_for_the_running_test_and_new_tests_queue_behind_it(tmp_path: Path) -> None:
    events: list[str] = []
    running = threading.Event()
    alone_waiting = threading.Event()

    def ordinary(name: str, gate: Gate, hold: float) -> None:
        with closing(gate), gate.enter(alone=False):
            events.append(f"{name} start")
            running.set()
            time.sleep(hold)
            events.append(f"{name} end")

    def alone(gate: Gate) -> None:
        alone_waiting.set()
        with closing(gate), gate.enter(alone=True):
            events.append("alone start")
            time.sleep(0.3)
            events.append("alone end")

    first = threading.Thread(target=ordinary, args=("first", Gate(tmp_path), 0.5))
    first.start()
    assert running.wait(5)
    waiter = threading.Thread(target=alone, args=(Gate(tmp_path),))
    waiter.start()
    assert alone_waiting.wait(5)
    time.sleep(0.1)  # the alone test now waits on the room, holding the turnstile
    later = threading.Thread(target=ordinary, args=("later", Gate(tmp_path), 0.0))
    later.start()
    for thread in (first, waiter, later):
        thread.join(10)
    assert events == ["first start", "first end", "alone start", "alone end", "later start", "later end"]


def test_ordinary_tests_share_the_room(tmp_path: Path) -> None:
    with closing(Gate(tmp_path)) as a, closing(Gate(tmp_path)) as b, a.enter(alone=False), b.enter(alone=False):
        pass  # a second ordinary test enters while the first runs (no deadlock, no wait)
