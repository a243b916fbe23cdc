"""Table-driven: every payload of tests/corpus/alerts (copied from each sender's documentation and source; the
file's ``cite`` says where) normalises to the host, user, source IP, rule id and name, severity and event time
it names, through the same request checks the daemon's front runs (:func:`agent.intake.request.parse_alerts`).
Batches: one expected entry per alert, ``{"invalid": "<field>"}`` for an element recorded as invalid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.intake.auth import SourceAuth
from agent.intake.config import SourceConfig
from agent.intake.request import Source, parse_alerts
from agent.secrets import parse_ref

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "alerts"
CASES = sorted(p for p in CORPUS.glob("*.json"))
TOKEN = "corpus-token-0123"


def _load(path: Path) -> tuple[dict[str, Any], bytes]:
    spec = json.loads(path.read_text())
    body = (CORPUS / spec["body_file"]).read_bytes() if "body_file" in spec else json.dumps(spec["body"]).encode()
    return spec, body


def test_every_sender_is_in_the_corpus() -> None:
    formats = {json.loads(p.read_text())["format"] for p in CASES}
    assert formats == {"wazuh", "elastic", "splunk", "alertmanager", "suricata", "generic"}
    for p in CASES:
        assert json.loads(p.read_text())["cite"], p.name


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus_payload_normalises(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, body = _load(path)
    monkeypatch.setenv("CORPUS_TOKEN", TOKEN)
    ref = parse_ref("env:CORPUS_TOKEN", path.parent)
    auth = SourceAuth(SourceConfig(spec["format"], spec["format"], token=ref))
    parsed = parse_alerts(Source(spec["format"], spec["format"], auth),
                          {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}, body)
    assert len(parsed) == len(spec["expected"]), [p.alert for p in parsed]
    for p, want in zip(parsed, spec["expected"], strict=True):
        a = p.alert
        if "invalid" in want:
            assert a.invalid and a.invalid.startswith(want["invalid"]), a.invalid
            assert not a.actionable
            continue
        assert a.invalid is None, a.invalid
        got = {"host": a.host, "user": a.user, "source_ip": a.source_ip, "rule_id": a.rule_id,
               "rule_name": a.rule_name, "severity": a.severity,
               "event_time": a.event_time.isoformat() if a.event_time else None, "resolved": a.resolved}
        for key, value in want.items():
            assert got[key] == value, (key, got)
        assert a.actionable is not want.get("resolved", False)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_alerts_cross_the_front_link_unchanged(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the HTTP front pickles to the core (compact form, event time as epoch seconds) is what it parsed."""
    import pickle
    spec, body = _load(path)
    monkeypatch.setenv("CORPUS_TOKEN", TOKEN)
    auth = SourceAuth(SourceConfig(spec["format"], spec["format"], token=parse_ref("env:CORPUS_TOKEN", path.parent)))
    parsed = parse_alerts(Source(spec["format"], spec["format"], auth), {"authorization": f"Bearer {TOKEN}"}, body)
    assert [p.alert for p in pickle.loads(pickle.dumps(parsed))] == [p.alert for p in parsed]
