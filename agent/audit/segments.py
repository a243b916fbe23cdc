"""Low-level segment file access shared by the writer, the verifier and the reader.

Why separate: finding the last committed record (the chain head) cheaply and deciding what a torn tail is must
be the same code everywhere, or the writer and the verifier would disagree after a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.audit.canonical import is_segment_name

__all__ = ["TailState", "list_segments", "tail_state"]

_CHUNK = 64 * 1024


def list_segments(directory: Path) -> list[Path]:
    """All ``audit-YYYY-MM-DD.jsonl`` files in ``directory``, oldest first (names sort chronologically)."""
    try:
        names = [name for name in os.listdir(directory) if is_segment_name(name)]
    except FileNotFoundError:
        return []
    return [directory / name for name in sorted(names)]


class TailState:
    """Where a segment's committed data ends and what its last committed line is.

    A record is *committed* once its terminating newline is in the file; bytes after the last newline are a
    torn write (the writer died mid-``write``) and were never part of the chain.
    """

    __slots__ = ("committed_size", "last_line", "torn_bytes")

    def __init__(self, committed_size: int, torn_bytes: int, last_line: bytes | None) -> None:
        self.committed_size = committed_size
        self.torn_bytes = torn_bytes
        self.last_line = last_line


def tail_state(fd: int, size: int) -> TailState:
    """Read backwards from ``size`` to find the last committed line without reading the whole file."""
    if size == 0:
        return TailState(0, 0, None)
    buffer = b""
    position = size
    newline_end = -1  # offset just after the last newline
    while position > 0:
        step = min(_CHUNK, position)
        position -= step
        buffer = os.pread(fd, step, position) + buffer
        idx = buffer.rfind(b"\n")
        if idx >= 0:
            newline_end = position + idx + 1
            break
    if newline_end < 0:
        return TailState(0, size, None)
    torn = size - newline_end
    # Now find the newline before the last committed line.
    line_end_in_buffer = newline_end - position
    start_idx = buffer.rfind(b"\n", 0, line_end_in_buffer - 1)
    while start_idx < 0 and position > 0:
        step = min(_CHUNK, position)
        position -= step
        buffer = os.pread(fd, step, position) + buffer
        line_end_in_buffer = newline_end - position
        start_idx = buffer.rfind(b"\n", 0, line_end_in_buffer - 1)
    line_start_in_buffer = start_idx + 1
    return TailState(newline_end, torn, buffer[line_start_in_buffer:line_end_in_buffer])
