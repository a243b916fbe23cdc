"""The core never lets its front process run code: frames from the front may name only alert types.

pickle's documentation ("Restricting Globals"): unpickling data from an untrusted source can call any importable
callable. The front process parses hostile HTTP; if it were compromised, an unrestricted ``pickle.loads`` in the
core would run whatever it sent. Frames from the front are loaded with a restricted unpickler.
"""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.intake.model import NormalizedAlert
from agent.intake.wire import ALERT, FrameReader, encode


class _Evil:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def test_a_frame_naming_a_callable_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match=r"posix\.mkdir is not allowed"):
        FrameReader(from_front=True).feed(encode((ALERT, 1, "wazuh", "127.0.0.1", 0.0, [_Evil(marker)], [None])))
    assert not marker.exists()


def test_alerts_still_cross_the_link() -> None:
    alert = NormalizedAlert(source="wazuh", rule_id="5712", severity=80, host="web01", user=None, source_ip=None,
                            title="brute force", tags=(), raw={"a": [1, 2]}, actionable=True, rule_name="r",
                            event_time=datetime(2026, 12, 4, 19, 0, tzinfo=UTC))
    (message,) = FrameReader(from_front=True).feed(encode((ALERT, 7, "wazuh", "10.0.0.1", 1.5, [alert], [None])))
    assert message[0] == ALERT and message[5][0] == alert
