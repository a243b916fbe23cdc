"""The front↔core link carries typed, versioned messages; the core never runs what the front sends.

pickle's documentation ("Restricting Globals"): unpickling data from an untrusted source can call any importable
callable. The front process parses hostile HTTP; if it were compromised, a pickle link would let it make the
core call code. The link is MessagePack of the msgspec structs in :mod:`agent.intake.wire`, type-checked on
receipt: a pickle, an unknown kind or a mistyped field is refused with an error naming it, audited, answered
500 when its request number can be read, and the core goes on with the next frame.
"""

from __future__ import annotations

import os
import pickle
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.intake.auth import AuthState, SourceAuth, signed_headers
from agent.intake.model import NormalizedAlert
from agent.intake.relay import Relay
from agent.intake.request import IntakeRejected, Parsed, Source
from agent.intake.rules import HostTags, Rule, RuleSet
from agent.intake.wire import (
    FROM_CORE,
    VERSION,
    AlertRequest,
    Answer,
    Config,
    FrontConfig,
    LinkError,
    RejectRequest,
    core_reader,
    encode,
)


class _Evil:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


class _Audit:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


class _Service:
    """What the relay needs for rejections: the audit log and the rejection counter."""

    def __init__(self) -> None:
        self.audit = _Audit()
        self.rejected: list[tuple[str, int, str, int]] = []

    def reject(self, source: str, exc: IntakeRejected, client: str, size: int) -> None:
        self.rejected.append((source, exc.status, client, size))


class _Transport:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


def relay() -> tuple[Relay, _Service, _Transport]:
    svc, transport = _Service(), _Transport()
    r = Relay(svc, api=None)  # type: ignore[arg-type]
    r._transport = transport  # type: ignore[assignment]
    return r, svc, transport


def answers(data: bytes) -> list[Any]:
    out, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from("!I", data, pos)
        out.append(FROM_CORE.decode(data[pos + 4:pos + 4 + size]))
        pos += 4 + size
    return out


GOOD = encode(RejectRequest(9, "wazuh", 401, "unauthenticated", "bad signature", "127.0.0.1", 12))


def test_a_pickle_frame_is_refused_unread_and_the_core_goes_on(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(("alert", 1, "wazuh", "127.0.0.1", 0.0, [_Evil(marker)], [None]))
    r, svc, transport = relay()
    r.data_received(frame(evil) + GOOD)
    assert not marker.exists()
    (event, fields), = svc.audit.events
    assert event == "link.refused" and "is a pickle" in fields["error"]
    assert answers(transport.data) == [Answer(9, 401, {"detail": "bad signature"})]  # the next frame still served
    assert svc.rejected == [("wazuh", 401, "127.0.0.1", 12)]


def test_an_unknown_kind_is_refused_naming_it_and_its_request_answered() -> None:
    r, svc, transport = relay()
    r.data_received(frame(msgspec.msgpack.encode(["exec", 3, "os.system", "id"])) + GOOD)
    (event, fields), = svc.audit.events
    assert event == "link.refused" and "kind 'exec'" in fields["error"] and fields["rid"] == 3
    first, second = answers(transport.data)
    assert first.rid == 3 and first.status == 500 and second.rid == 9


def test_a_mistyped_field_is_refused_with_where_it_is() -> None:
    alert = {"source": "wazuh", "rule_id": "5712", "severity": "eighty", "host": "web01"}  # severity is text
    bad = ["alert", 4, "wazuh", "127.0.0.1", 0.0, [[alert, {}, "d"]], [None]]
    r, svc, transport = relay()
    r.data_received(frame(msgspec.msgpack.encode(bad)))
    (_, fields), = svc.audit.events
    assert "Expected `int`, got `str`" in fields["error"] and "$[5][0][0].severity" in fields["error"]
    assert answers(transport.data)[0].rid == 4


def test_a_truncated_stream_waits_and_an_absurd_length_is_a_link_error() -> None:
    reader = core_reader(lambda exc, rid: pytest.fail(str(exc)))
    assert reader.feed(GOOD[:7]) == []
    assert reader.feed(GOOD[7:]) == [RejectRequest(9, "wazuh", 401, "unauthenticated", "bad signature",
                                                   "127.0.0.1", 12)]
    with pytest.raises(LinkError, match="stream is corrupt"):
        reader.feed(struct.pack("!I", 2**31))


def test_alerts_cross_the_link_typed() -> None:
    alert = NormalizedAlert(source="wazuh", rule_id="5712", severity=80, host="web01", user="o'brien",
                            source_ip=None, title="brute force", tags=("a",), raw={"a": [1, 2]}, actionable=True,
                            rule_name="r", event_time=datetime(2026, 12, 4, 19, 0, tzinfo=UTC))
    msg = AlertRequest(7, "wazuh", "10.0.0.1", 1.5, [Parsed(alert, {"payload": {"x": 1}}, "ab" * 32)],
                       [("isolate", "web01")])
    (got,) = core_reader(lambda exc, rid: pytest.fail(str(exc))).feed(encode(msg))
    assert got == msg and got.parsed[0].alert == alert


def test_the_configuration_crosses_typed_and_secrets_stay_out_of_its_repr() -> None:
    state = AuthState("wazuh", b"s3cret-hmac", None, 300.0, True, False)
    assert "s3cret" not in repr(state)
    rule = Rule("brute", "isolate-host", "host", policy="auto", sources=("wazuh",), min_severity=50,
                params={"capture_evidence": False}, ttl=timedelta(hours=1))
    hosts = HostTags.from_maps({"web01": ("prod",)}, {"10.1.0.5": ("prod",)})
    cfg = FrontConfig({"wazuh": Source("wazuh", "wazuh", SourceAuth.restore(state))}, 1024, RuleSet([rule]), hosts)
    (decoded,) = msgspec.msgpack.Decoder(Config).decode(encode(cfg.message())[4:]),
    back = FrontConfig.from_message(decoded)
    assert back.rules.rules == [rule] and back.hosts("10.1.0.5") == ("prod",)
    body = b'{"x":1}'
    headers = {k.lower(): v for k, v in signed_headers(b"s3cret-hmac", body).items()}
    assert back.sources["wazuh"].auth.check(headers, body) == "hmac"


def test_a_front_of_another_version_is_refused() -> None:
    cfg = FrontConfig({}, 1024, RuleSet([]), HostTags.from_maps({}, {}))
    other = msgspec.structs.replace(cfg.message(), version=VERSION + 1)
    with pytest.raises(LinkError, match=f"link version {VERSION + 1}"):
        FrontConfig.from_message(other)
