"""Whether a site has a worker connected (agent/workers/presence.py): only an uninterrupted run of zero
consumers counts as "no worker"; a broker that cannot be asked, or a gap in checking, restarts the count — a
broker restart or a worker restarting must never look like an absent site."""

from __future__ import annotations

from typing import Any

from amqp.exceptions import NotFound

from agent.workers.presence import SitePresence, consumers


class Channel:
    def __init__(self, answer: Any) -> None:
        self.answer, self.closed = answer, False

    def queue_declare(self, *, queue: str, passive: bool) -> tuple[str, int, int]:
        assert passive and queue == "agent.site.boston"  # never declares a queue, only asks about it
        if isinstance(self.answer, Exception):
            raise self.answer
        return queue, 7, self.answer

    def close(self) -> None:
        self.closed = True


class Connection:
    def __init__(self, answers: list[Any]) -> None:
        self.answers, self.channels, self.released = answers, [], 0

    def channel(self) -> Channel:
        ch = Channel(self.answers.pop(0))
        self.channels.append(ch)
        return ch

    def release(self) -> None:
        self.released += 1


def test_consumer_count_from_a_passive_declare():
    conn = Connection([2, 0, NotFound("NOT_FOUND - no queue 'agent.site.boston'"), OSError("reset")])
    assert [consumers(conn, "boston") for _ in range(4)] == [2, 0, 0, None]
    assert all(ch.closed for ch in conn.channels)


def presence(answers: list[Any]) -> tuple[SitePresence, list[Connection]]:
    made: list[Connection] = []

    def connect() -> Connection:
        made.append(Connection(answers))
        return made[-1]
    return SitePresence(connect, every=1.0, stale=5.0), made


def test_absent_only_after_an_uninterrupted_run_of_zeros():
    p, _ = presence([0, 0, 1, 0, 0])
    p.check("boston", now=0)
    p.check("boston", now=0.5)  # rate-limited: not asked
    assert p.absent_for("boston", now=0.5) == 0.5
    p.check("boston", now=3)
    assert p.absent_for("boston", now=3) == 3
    p.check("boston", now=4)  # a worker connected
    assert p.absent_for("boston", now=4) == 0
    p.check("boston", now=5)
    p.check("boston", now=8)
    assert p.absent_for("boston", now=8) == 3  # counted from the first zero after the worker left


def test_unknown_and_gaps_restart_the_count():
    p, made = presence([0, OSError("broker restarting"), 0, 0, 0])
    p.check("boston", now=0)
    p.check("boston", now=2)  # broker could not be asked: unknown, reconnect next time
    assert p.absent_for("boston", now=2) == 0 and made[0].released == 1
    p.check("boston", now=3)
    p.check("boston", now=4)
    assert p.absent_for("boston", now=4) == 1
    p.check("boston", now=20)  # nobody waited on the site for a while: an old zero says nothing now
    assert p.absent_for("boston", now=20) == 0
    assert p.absent_for("boston", now=30) == 0  # not checked lately: no opinion
    assert p.absent_for("lyon", now=30) == 0  # never checked
