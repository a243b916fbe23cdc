"""Talk to a device through the netmiko driver's channel: type several lines ahead, split the answers.

Why not ``send_command`` per line: it sleeps 25-50 ms per command while waiting, so a 200-address batch spent
most of its time asleep. Here the lines go out in one write (as netmiko's own ``send_config_set`` does), the
channel is polled every 2 ms, and each line's answer is cut out between its echo and the next line's echo; the
last answer ends at ``prompt``. A session that dies or stalls mid-chunk raises :class:`PartialAnswer` carrying
the answers that did arrive complete, so the caller can journal exactly which lines the device accepted.
"""

from __future__ import annotations

import re
import time
from typing import Any

__all__ = ["PartialAnswer", "channel_closed", "exchange", "split_answers"]


class PartialAnswer(Exception):
    """The device stopped answering mid-chunk; ``answers`` holds the complete answers received before."""

    def __init__(self, answers: list[str], message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.answers = answers
        self.cause = cause


def channel_closed(conn: Any) -> bool:
    """The driver's SSH channel was closed by the device (netmiko keeps it in ``remote_conn``)."""
    return bool(getattr(getattr(conn, "remote_conn", None), "closed", False))


def split_answers(buf: str, lines: list[str], prompt: str, partial: bool = False) -> list[str] | None:
    """Answers per line once every echo and the final prompt are in ``buf``; with ``partial``, the complete
    answers so far (each ends where the next echo starts)."""
    starts: list[tuple[int, int]] = []
    pos = 0
    for line in lines:
        at = buf.find(line.strip(), pos)
        if at < 0:
            break
        starts.append((at, at + len(line.strip())))
        pos = starts[-1][1]
    answers = [buf[end:starts[i + 1][0]] for i, (_, end) in enumerate(starts[:-1])]
    if len(starts) == len(lines) and re.search(prompt, buf[starts[-1][1]:]):
        return answers + [buf[starts[-1][1]:]]
    return answers if partial else None


def exchange(conn: Any, lines: list[str], prompt: str, timeout: float) -> list[str]:
    """Write ``lines`` and return one answer per line (the device's echo excluded, its prompt included)."""
    conn.write_channel("".join(line + conn.RETURN for line in lines))
    deadline = time.monotonic() + timeout * max(1.0, len(lines) / 20)
    buf = ""
    text = ""
    while True:
        try:
            buf += conn.read_channel()
        except Exception as exc:
            raise PartialAnswer(split_answers(text, lines, prompt, partial=True) or [], str(exc), exc) from exc
        text = buf.replace("\r\n", "\n").replace("\r", "")
        outs = split_answers(text, lines, prompt)
        if outs is not None:
            return outs
        if channel_closed(conn):
            done = split_answers(text, lines, prompt, partial=True) or []
            raise PartialAnswer(done, "session closed by the device", EOFError("session closed by the device"))
        if time.monotonic() > deadline:
            done = split_answers(text, lines, prompt, partial=True) or []
            raise PartialAnswer(done, f"no answer to {lines[len(done)]!r} within {timeout:.0f}s")
        time.sleep(0.002)
