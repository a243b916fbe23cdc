"""docs/audit-format.md's reference verifier, extracted and run, agrees with agent.audit.verify."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.audit import AuditLog, verify
from agent.audit.canonical import encode_line
from agent.audit.keys import generate_keypair
from agent.audit.segments import list_segments

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit-format.md"


def _reference() -> Callable[..., str | None]:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- reference-verifier:start -->\s*```python\n(.*?)```\s*<!-- reference-verifier:end -->",
                      text, re.DOTALL)
    assert match, "reference verifier block missing from docs/audit-format.md"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOC), "exec"), namespace)
    return namespace["verify_dir"]  # type: ignore[no-any-return]


def _run_reference(directory: Path, public: Path | None) -> str | None:
    try:
        return _reference()(directory, public.read_bytes() if public else None)
    except (ValueError, KeyError, TypeError) as exc:  # malformed input is a failure too
        return f"error: {exc}"


def _edit(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[1].replace(b'"h1"', b'"hX"'), *lines[2:]]


def _delete(lines: list[bytes]) -> list[bytes]:
    return [*lines[:2], *lines[3:]]


def _swap(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


def _truncate(lines: list[bytes]) -> list[bytes]:
    return lines[:4]


def _resign_forgery(lines: list[bytes]) -> list[bytes]:
    rows = [json.loads(x) for x in lines]
    rows[1]["target"] = "innocent"
    out, prev = [], "0" * 64
    for seq, row in enumerate(rows, 1):
        body = {k: v for k, v in row.items() if k != "hash"}
        body["seq"], body["prev_hash"] = seq, prev
        if body["event"] == "audit.checkpoint":
            body["covers_seq"], body["covers_hash"] = seq - 1, prev
        line, prev = encode_line(body)
        out.append(line)
    return out


CASES: list[tuple[str, Callable[[list[bytes]], list[bytes]] | None, bool]] = [
    ("intact", None, True), ("edited", _edit, False), ("deleted", _delete, False),
    ("reordered", _swap, False), ("truncated", _truncate, False), ("rechained", _resign_forgery, False),
]


class TestReferenceVerifier:
    @pytest.mark.parametrize(("name", "tamper", "expect_ok"), CASES, ids=[c[0] for c in CASES])
    def test_doc_algorithm_matches_implementation(self, tmp_path: Path, name: str,
                                                  tamper: Callable[[list[bytes]], list[bytes]] | None,
                                                  expect_ok: bool) -> None:
        """Both verifiers accept the intact log and reject each tampered variant."""
        private = tmp_path / "k.key"
        public, _ = generate_keypair(private)
        directory = tmp_path / "audit"
        with AuditLog(directory, signing_key=private, checkpoint_every=4) as log:
            for i in range(10):
                log.record("action.transition", target=f"h{i}", note="ünïcode ✓")
        if tamper is not None:
            segment = list_segments(directory)[-1]
            segment.write_bytes(b"".join(tamper(segment.read_bytes().splitlines(keepends=True))))
        ours = verify(directory, public_key=public)
        theirs = _run_reference(directory, public)
        assert ours.ok is expect_ok, ours.render()
        assert (theirs is None) is expect_ok, theirs

    def test_reference_detects_wrong_key(self, tmp_path: Path) -> None:
        """The doc's verifier also rejects a log checked against another key."""
        private = tmp_path / "k.key"
        generate_keypair(private)
        other, _ = generate_keypair(tmp_path / "other.key")
        with AuditLog(tmp_path / "audit", signing_key=private) as log:
            log.record("x")
        assert _run_reference(tmp_path / "audit", other) == "seq 2: wrong key"
        assert not verify(tmp_path / "audit", public_key=other).ok
