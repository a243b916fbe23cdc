"""The daemon's front↔core link per alert frame: the typed msgspec link vs the pickle link it replaced, same run.

One frame is what the HTTP front sends the core for one Wazuh alert (``AlertRequest`` with one parsed alert and its
route). Measured: encode (front side) and decode with type checks (core side) of agent/intake/wire.py, against the
old link — ``pickle.dumps`` of the alert's compact ``__reduce__`` form and a restricted unpickler that resolves
only the alert types (what the front and the core ran before, reproduced here as the baseline). Target: the typed
link costs no more than the pickle link (ratio ≤ 1).

    .venv/bin/python bench/front_link.py [--frames 20000] [--alerts-per-frame 1]
"""

from __future__ import annotations

import argparse
import io
import pickle
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.intake.model import NormalizedAlert
from agent.intake.request import Parsed
from agent.intake.wire import AlertRequest, core_reader, encode

_ALLOWED = {("agent.intake.request", "Parsed"), ("agent.intake.model", "NormalizedAlert"),
            ("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta"), (__name__, "_rebuild")}


class _OldAlert(NormalizedAlert):
    """The alert as the old link pickled it: compactly, the event time as epoch seconds (its ``__reduce__``)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        when = self.event_time.timestamp() if self.event_time is not None else None
        return (_rebuild, (self.source, self.rule_id, self.severity, self.host, self.user, self.source_ip,
                           self.title, self.tags, self.raw, self.actionable, self.rule_name, when, self.invalid,
                           self.resolved, self.key))


def _rebuild(*fields: Any) -> NormalizedAlert:
    when = fields[11]
    return NormalizedAlert(*fields[:11], datetime.fromtimestamp(when, UTC) if when is not None else None,
                           *fields[12:])


class _Restricted(pickle.Unpickler):
    """The old core's unpickler (pickle docs, "Restricting Globals")."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return super().find_class(module, name)


def sample(n: int) -> list[Parsed]:
    out = []
    for i in range(n):
        alert = NormalizedAlert("wazuh", "5712", 67, f"h{i:05d}", "alice", "203.0.113.7",
                                "sshd: brute force then success", ("sshd", "authentication_success"), {},
                                True, "sshd: brute force then success", datetime(2026, 11, 23, 3, 12, 44, tzinfo=UTC))
        raw = {"payload": {"timestamp": "2026-11-23T03:12:44.118+0000", "id": f"1795397564.{i}",
                           "rule": {"level": 10, "id": "5712", "description": "sshd: brute force then success",
                                    "groups": ["sshd", "authentication_success"]},
                           "agent": {"id": "003", "name": f"h{i:05d}"},
                           "data": {"srcip": "203.0.113.7", "dstuser": "alice"}, "location": "/var/log/auth.log"},
               "normalized": {}}
        out.append(Parsed(alert, raw, "ab" * 32))
    return out


def per_frame(fn: Any, frames: int) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(frames):
            fn()
        runs.append((time.perf_counter() - t0) / frames)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--alerts-per-frame", type=int, default=1)
    opts = parser.parse_args()
    parsed = sample(opts.alerts_per_frame)
    routes: list[tuple[str, str] | None] = [("bench", p.alert.host or "") for p in parsed]
    msg = AlertRequest(1, "wazuh", "127.0.0.1", 1.0, parsed, routes)
    old_parsed = [Parsed(_OldAlert(**vars(p.alert)), p.raw, p.digest) for p in parsed]
    old_msg = ("alert", 1, "wazuh", "127.0.0.1", 1.0, old_parsed, routes)
    frame, old_frame = encode(msg), pickle.dumps(old_msg, protocol=pickle.HIGHEST_PROTOCOL)
    reader = core_reader(lambda exc, rid: sys.exit(f"bench frame refused: {exc}"))
    assert reader.feed(frame) == [msg]

    new_enc = per_frame(lambda: encode(msg), opts.frames)
    new_dec = per_frame(lambda: reader.feed(frame), opts.frames)
    old_enc = per_frame(lambda: pickle.dumps(old_msg, protocol=pickle.HIGHEST_PROTOCOL), opts.frames)
    old_dec = per_frame(lambda: _Restricted(io.BytesIO(old_frame)).load(), opts.frames)
    print(f"front link, one frame of {opts.alerts_per_frame} Wazuh alert(s) "
          f"(msgspec {len(frame)} B, pickle {len(old_frame)} B):")
    print(f"  {'':<28}{'typed link':>12}{'pickle link':>13}{'ratio':>8}")
    for name, new, old in (("encode (front)", new_enc, old_enc), ("decode + checks (core)", new_dec, old_dec),
                           ("both", new_enc + new_dec, old_enc + old_dec)):
        print(f"  {name:<28}{new * 1e6:9.2f} µs{old * 1e6:10.2f} µs{new / old:7.2f}x")
    ok = new_enc + new_dec <= old_enc + old_dec
    print(f"target: typed link ≤ pickle link per frame — {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
