"""Is any worker of a site connected? The broker's consumer count on the site's queue.

Why: the engine journals an action and queues it for its site, then waits on the journal. With no ``agent worker
--site S`` connected, nothing would ever claim it and the responder would wait ``workers.wait`` (15 min by
default) per step for an "in doubt" that is not even true — nothing was sent — while the message sat in the
queue for a worker started hours later to apply behind their back. The broker knows who consumes a queue:
AMQP 0-9-1 ``queue.declare`` with ``passive`` set declares nothing and answers ``declare-ok`` with the queue's
``consumer-count``, or closes the channel with 404 NOT_FOUND when the queue does not exist (no worker of the site
ever started, and nothing was ever queued for it) —
https://www.rabbitmq.com/amqp-0-9-1-reference.html#queue.declare and #queue.declare-ok. Every running Celery
worker of the site consumes its queue (agent/workers/worker.py ``serve``), so zero means nobody will claim.

The dispatcher asks at most once a second per site it is waiting on, on one connection of its own, and treats a
broker it cannot ask as "unknown" (a broker restart must not look like an absent site).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent.workers.config import queue_for

__all__ = ["SitePresence", "consumers"]


def consumers(connection: Any, site: str) -> int | None:
    """Consumers of ``site``'s queue now on an open kombu ``connection``: 0 when the queue does not exist, None
    when the broker could not be asked (the caller keeps no opinion then)."""
    from amqp.exceptions import NotFound
    try:
        channel = connection.channel()
    except Exception:  # noqa: BLE001 - connection lost: unknown
        return None
    try:
        _, _, count = channel.queue_declare(queue=queue_for(site), passive=True)
        return int(count)
    except NotFound:  # 404: no such queue — nobody ever consumed or published for this site
        return 0
    except Exception:  # noqa: BLE001 - connection lost mid-call: unknown
        return None
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001, S110 - a channel the broker closed (404) is already gone
            pass


@dataclass
class _Seen:
    zero_since: float | None = None  # monotonic time the count was first seen 0 (None: a consumer, or unknown)
    checked: float | None = None  # monotonic time of the last check (None: never)


@dataclass
class SitePresence:
    """How long each awaited site has been seen without any consumer, continuously.

    ``check(site)`` is called by the dispatcher's poller; ``absent_for(site)`` by each waiting action. A count we
    could not read, or a gap in checking longer than ``stale`` seconds (nobody waited on the site meanwhile),
    restarts the count: only an uninterrupted run of zeros means "no worker".
    """

    connect: Any  # () -> an open kombu connection
    every: float = 1.0
    stale: float = 5.0
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _conn: Any = None

    def check(self, site: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(site, _Seen())
        if seen.checked is not None and now - seen.checked < self.every:
            return
        if seen.checked is None or now - seen.checked > self.stale:
            seen.zero_since = None
        seen.checked = now
        count = self._count(site)
        if count == 0:
            seen.zero_since = seen.zero_since if seen.zero_since is not None else now
        else:
            seen.zero_since = None

    def absent_for(self, site: str, now: float | None = None) -> float:
        """Seconds ``site``'s queue has had no consumer, as far as the checks saw (0: one, or unknown)."""
        now = time.monotonic() if now is None else now
        seen = self._seen.get(site)
        if seen is None or seen.zero_since is None or seen.checked is None or now - seen.checked > self.stale:
            return 0.0
        return now - seen.zero_since

    def _count(self, site: str) -> int | None:
        try:
            if self._conn is None:
                self._conn = self.connect()
            got = consumers(self._conn, site)
        except Exception:  # noqa: BLE001 - broker unreachable: unknown
            got = None
        if got is None:
            self.close()  # reconnect next time
        return got

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection
                pass
