"""Offline verification detects each kind of tampering with the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.audit import AuditLog, verify
from agent.audit.canonical import body_hash, encode_line
from agent.audit.cli import main as audit_main
from agent.audit.keys import generate_keypair, sign_checkpoint
from agent.audit.segments import list_segments


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private = tmp_path_factory.mktemp("keys") / "audit.key"
    public, _ = generate_keypair(private)
    return private, public


@pytest.fixture()
def log_dir(tmp_path: Path, keypair: tuple[Path, Path]) -> Path:
    """Twelve records with a checkpoint every 5 and one at close."""
    directory = tmp_path / "audit"
    with AuditLog(directory, signing_key=keypair[0], checkpoint_every=5) as log:
        for i in range(12):
            log.record("action.transition", incident="INC-1", i=i, target=f"host{i}")
    return directory


def _segment(directory: Path) -> Path:
    return list_segments(directory)[-1]


def _rewrite(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = _segment(directory)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def _rechain(rows: list[dict]) -> list[bytes]:
    """What a careful attacker does: recompute every seq, prev_hash and hash after a change."""
    out, prev = [], "0" * 64
    for seq, row in enumerate(rows, 1):
        body = {k: v for k, v in row.items() if k != "hash"}
        body["seq"], body["prev_hash"] = seq, prev
        if body["event"] == "audit.checkpoint":  # keeps the old signature: the attacker has no key
            body["covers_seq"], body["covers_hash"] = seq - 1, prev
        line, prev = encode_line(body)
        out.append(line)
    return out


class TestIntactLog:
    def test_clean_log_verifies_with_key(self, log_dir: Path, keypair: tuple[Path, Path]) -> None:
        """An untouched log passes, with every checkpoint's signature checked."""
        report = verify(log_dir, public_key=keypair[1])
        assert report.ok, report.render()
        assert report.records == 12 + 3  # 12 events + checkpoints after 5, 10 and at close
        assert report.checkpoints_verified == 3
        assert report.key_fingerprint and report.key_fingerprint.startswith("ed25519:")

    def test_range_verification(self, log_dir: Path, keypair: tuple[Path, Path]) -> None:
        """--from/--to verifies only that slice of the chain."""
        report = verify(log_dir, public_key=keypair[1], from_seq=4, to_seq=9)
        assert report.ok, report.render()
        assert (report.first_seq, report.last_seq, report.records) == (4, 9, 6)

    def test_empty_directory_fails(self, tmp_path: Path) -> None:
        """Verifying a directory with no segments is a failure, not a vacuous pass."""
        report = verify(tmp_path)
        assert not report.ok and "no audit segments" in report.first_error.reason  # type: ignore[union-attr]


class TestTampering:
    def test_edited_field(self, log_dir: Path, keypair: tuple[Path, Path]) -> None:
        """Changing a value in place is reported as an edited record at that line."""
        _rewrite(log_dir, lambda ls: [ls[0], ls[1].replace(b'"host1"', b'"hostX"'), *ls[2:]])
        report = verify(log_dir, public_key=keypair[1])
        assert not report.ok
        assert report.first_error.seq == 2 and report.first_error.line == 2  # type: ignore[union-attr]
        assert "record edited" in report.first_error.reason  # type: ignore[union-attr]

    def test_deleted_record(self, log_dir: Path) -> None:
        """Removing a line breaks the link from the next record."""
        _rewrite(log_dir, lambda ls: [*ls[:3], *ls[4:]])
        report = verify(log_dir)
        assert not report.ok and report.first_error.seq == 5  # type: ignore[union-attr]
        assert "record deleted or reordered" in report.first_error.reason  # type: ignore[union-attr]

    def test_reordered_records(self, log_dir: Path) -> None:
        """Swapping two lines is detected at the first out-of-place record."""
        _rewrite(log_dir, lambda ls: [ls[0], ls[2], ls[1], *ls[3:]])
        report = verify(log_dir)
        assert not report.ok and report.first_error.line == 2  # type: ignore[union-attr]
        assert "deleted or reordered" in report.first_error.reason  # type: ignore[union-attr]

    def test_seq_gap(self, log_dir: Path) -> None:
        """A renumbered record whose hashes were recomputed still shows a seq gap."""
        def renumber(lines: list[bytes]) -> list[bytes]:
            row = json.loads(lines[5])
            row["seq"] = 99
            line, _ = encode_line({k: v for k, v in row.items() if k != "hash"})
            return [*lines[:5], line]
        _rewrite(log_dir, renumber)
        report = verify(log_dir)
        assert not report.ok and "seq gap" in report.first_error.reason  # type: ignore[union-attr]

    def test_truncated_segment_mid_line(self, log_dir: Path) -> None:
        """Cutting the file short (whole records gone, last one half) is reported as a truncated segment."""
        path = _segment(log_dir)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        report = verify(log_dir)
        assert not report.ok and "truncated segment" in report.first_error.reason  # type: ignore[union-attr]

    def test_truncated_line_in_older_segment(self, log_dir: Path) -> None:
        """A non-final segment that ends mid-record is a truncated line."""
        seg = _segment(log_dir)
        lines = seg.read_bytes().splitlines(keepends=True)
        older = log_dir / "audit-2000-01-01.jsonl"
        older.write_bytes(b"".join(lines[:3]) + lines[3][:40])
        seg.write_bytes(b"".join(lines[4:]))
        report = verify(log_dir)
        assert not report.ok and "truncated line" in report.first_error.reason  # type: ignore[union-attr]
        assert report.first_error.file == older.name  # type: ignore[union-attr]

    def test_rechained_forgery_fails_signature(self, log_dir: Path, keypair: tuple[Path, Path]) -> None:
        """An attacker who edits a record and recomputes every hash is caught by the first checkpoint."""
        rows = [json.loads(x) for x in _segment(log_dir).read_bytes().splitlines()]
        rows[1]["target"] = "innocent"
        _rewrite(log_dir, lambda ls: _rechain(rows))
        (log_dir / "audit.head").unlink()
        assert verify(log_dir).ok  # the chain alone cannot tell
        report = verify(log_dir, public_key=keypair[1])
        assert not report.ok and report.first_error.seq == 6  # type: ignore[union-attr]
        assert "checkpoint signature invalid" in report.first_error.reason  # type: ignore[union-attr]

    def test_checkpoint_not_covering_previous_record(self, log_dir: Path) -> None:
        """A rechained log whose checkpoints were left untouched fails even without the public key."""
        rows = [json.loads(x) for x in _segment(log_dir).read_bytes().splitlines()]
        del rows[2]
        prev, out = "0" * 64, []
        for seq, row in enumerate(rows, 1):
            body = {k: v for k, v in row.items() if k != "hash"}
            body["seq"], body["prev_hash"] = seq, prev
            line, prev = encode_line(body)
            out.append(line)
        _rewrite(log_dir, lambda ls: out)
        (log_dir / "audit.head").unlink()
        report = verify(log_dir)
        assert not report.ok and report.first_error.reason.startswith("checkpoint does not cover")  # type: ignore[union-attr]

    def test_forged_checkpoint(self, log_dir: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
        """A checkpoint re-signed with another key over the rewritten chain is a wrong-key / invalid signature."""
        rogue_private = tmp_path / "rogue.key"
        generate_keypair(rogue_private)
        from agent.audit.keys import fingerprint, load_private_key, public_raw

        rogue = load_private_key(rogue_private)
        rows = [json.loads(x) for x in _segment(log_dir).read_bytes().splitlines()]
        rows[1]["target"] = "innocent"
        prev, out = "0" * 64, []
        for seq, row in enumerate(rows, 1):
            body = {k: v for k, v in row.items() if k != "hash"}
            body["seq"], body["prev_hash"] = seq, prev
            if body["event"] == "audit.checkpoint":
                body["covers_seq"], body["covers_hash"] = seq - 1, prev
                body["signature"] = sign_checkpoint(rogue, seq - 1, prev)
            line, prev = encode_line(body)
            out.append(line)
        _rewrite(log_dir, lambda ls: out)
        (log_dir / "audit.head").unlink()
        report = verify(log_dir, public_key=keypair[1])
        assert not report.ok and "checkpoint signature invalid" in report.first_error.reason  # type: ignore[union-attr]
        # ...and if the forger also claims their own fingerprint, the verifier says "wrong key".
        rows2 = [json.loads(x) for x in out]
        for row in rows2:
            if row["event"] == "audit.checkpoint":
                row["key_fingerprint"] = fingerprint(public_raw(rogue))
        _rewrite(log_dir, lambda ls: [encode_line({k: v for k, v in r.items() if k != "hash"})[0] for r in rows2])
        report = verify(log_dir, public_key=keypair[1])
        assert not report.ok and report.first_error.reason.startswith("wrong key")  # type: ignore[union-attr]

    def test_wrong_key(self, log_dir: Path, tmp_path: Path) -> None:
        """Verifying an intact log with someone else's public key fails with 'wrong key'."""
        other_public, _ = generate_keypair(tmp_path / "other.key")
        report = verify(log_dir, public_key=other_public)
        assert not report.ok and report.first_error.reason.startswith("wrong key")  # type: ignore[union-attr]

    def test_reencoded_record(self, log_dir: Path) -> None:
        """Re-serialising a line with different whitespace (same content) is flagged as non-canonical."""
        def reencode(lines: list[bytes]) -> list[bytes]:
            row = json.loads(lines[2])
            return [*lines[:2], (json.dumps(row) + "\n").encode(), *lines[3:]]
        _rewrite(log_dir, reencode)
        report = verify(log_dir)
        assert not report.ok and "canonical form" in report.first_error.reason  # type: ignore[union-attr]

    def test_body_hash_is_over_record_without_hash(self, log_dir: Path) -> None:
        """The documented hash rule holds for every stored record."""
        for line in _segment(log_dir).read_bytes().splitlines():
            row = json.loads(line)
            assert body_hash({k: v for k, v in row.items() if k != "hash"}) == row["hash"]


class TestCli:
    def test_verify_exit_codes(self, log_dir: Path, keypair: tuple[Path, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
        """`audit verify` exits 0 on a good log and 5 (the agent's NOT_VERIFIED) after tampering, naming why."""
        assert audit_main(["verify", "--dir", str(log_dir), "--public-key", str(keypair[1])]) == 0
        assert "OK" in capsys.readouterr().out
        _rewrite(log_dir, lambda ls: [ls[0], ls[1].replace(b'"host1"', b'"hostX"'), *ls[2:]])
        assert audit_main(["verify", "--dir", str(log_dir), "--json"]) == 5
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and "record edited" in out["first_error"]["reason"]

    def test_init_key_mode_and_refuses_overwrite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """init-key writes a 0600 private key and a .pub, prints the fingerprint, and never overwrites."""
        key = tmp_path / "k" / "audit.key"
        assert audit_main(["init-key", "--out", str(key)]) == 0
        assert key.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "k" / "audit.key.pub").exists()
        assert "ed25519:" in capsys.readouterr().out
        assert audit_main(["init-key", "--out", str(key)]) == 2

    def test_cli_import_is_light(self) -> None:
        """Running `audit verify` without a key loads neither structlog nor cryptography (fast start)."""
        import subprocess
        import sys

        code = ("import sys, os, tempfile, contextlib, agent.audit.cli as c\n"
                "with contextlib.redirect_stdout(open(os.devnull, 'w')):\n"
                "    c.main(['verify', '--dir', tempfile.mkdtemp()])\n"
                "print('structlog' in sys.modules, 'cryptography' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[2]).stdout.split()
        assert out == ["False", "False"]


CORPUS: list[dict] = [  # type: ignore[type-arg]
    {"b": 1, "a": [True, False, None], "é": "naïve — ünïcode 🚀", "ctl": "tab\tnl\nquote\"back\\slash\x01"},
    {"floats": [0.1, -0.0, 1e16, 1.5e-300, 123456789.123456789, float("nan"), float("inf")],
     "ints": [0, -1, 2**70, -(2**63)], "nested": {"z": {"y": [{"x": "", "w": []}]}, "a": {}}},
    {"keys need escaping": {"\"": 1, "\n": 2, "\u2028": 3, "a\u0000b": 4}, "o'brien": "a(b)c", "": ""},
    # ASCII only (written through the ASCII form): short escapes, DEL (raw in the canonical form, \u007f in the
    # ASCII one), a literal backslash before "u", an escaped control character
    {"preview": "priv() { \"$@\"; }; printf '%s\\n' \"$rs\" <<'EOF'\n\ttable inet x\r\x08\x0c", "n": [1, 2.5, None]},
    {"del": "a\x7fb", "backslash-u": "C:\\users\\u1", "ctl": "\x1f", "k\x7f": 1},
]


class TestCanonicalEncoder:

    @pytest.mark.parametrize("body", CORPUS)
    def test_same_bytes_as_json_dumps(self, body: dict) -> None:  # type: ignore[type-arg]
        """The reused C encoder writes exactly what docs/audit-format.md's json.dumps rule writes."""
        from agent.audit.canonical import canonical

        expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert canonical(body) == expected
        assert canonical(body) == canonical(json.loads(expected))  # stable across a round trip

    def test_generated_bodies_same_bytes_as_json_dumps(self) -> None:
        """Either path of canonical() (ASCII form first, Unicode form when an escape is needed) writes json.dumps's
        bytes, whatever mix of ASCII, escapes, DEL, control and non-ASCII characters the strings hold."""
        import random

        from agent.audit.canonical import canonical

        rng = random.Random(3)
        alphabet = ["a", "Z", " ", "\"", "\\", "\\u", "u", "\n", "\t", "\r", "\x08", "\x0c", "\x00", "\x1f", "\x7f",
                    "é", "\u2028", "🚀", "{", ":", ","]

        def text() -> str:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        for _ in range(3000):
            body = {text(): text() for _ in range(rng.randint(1, 4))} | {"l": [text(), rng.random(), None]}
            expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            assert canonical(body) == expected, body

    def test_unserialisable_value_is_a_type_error(self) -> None:
        """Like json.dumps: a value JSON cannot hold is a TypeError naming its type, not silent output."""
        from agent.audit.canonical import canonical

        with pytest.raises(TypeError, match="set"):
            canonical({"a": {1, 2}})

    def test_trailing_bytes_after_the_object_are_malformed(self, log_dir: Path) -> None:
        """Two objects on one line (or junk after the record) are refused as malformed, not half-read."""
        _rewrite(log_dir, lambda ls: [ls[0], ls[1][:-1] + b' {"x":1}\n', *ls[2:]])
        report = verify(log_dir)
        assert not report.ok and "malformed" in report.first_error.reason  # type: ignore[union-attr]
