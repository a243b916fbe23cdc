"""Reading the audit log back (for reports). Exports live in :mod:`agent.audit.export`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.audit.segments import list_segments

__all__ = ["records"]


def records(directory: Path, incident: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield records oldest first, optionally only those whose ``incident`` field equals ``incident``.

    Lines that do not parse (a torn final write) are skipped; use :func:`agent.audit.verify` to judge integrity.
    """
    needle = None if incident is None else json.dumps(incident, ensure_ascii=False).encode("utf-8")
    for path in list_segments(Path(directory)):
        with path.open("rb") as handle:
            for line in handle:
                if needle is not None and needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if incident is None or record.get("incident") == incident:
                    yield record
