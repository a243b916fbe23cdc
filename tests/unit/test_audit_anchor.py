"""Tamper suite: with a trust anchor every attack below exits 5; without one the verifier says what it cannot prove.

The log: incident INC-1, 60 records, a signed checkpoint every 10. Counsel received the anchor (`agent audit anchor
--json`: key fingerprint + the last signed head) when the incident was handed over. The attacker is an insider who
can write the files but does not hold the signing key (unless stated).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.audit import AuditLog, TrustAnchor, export_incident, verify, verify_export
from agent.audit.canonical import encode_line
from agent.audit.cli import main as audit_main
from agent.audit.keys import fingerprint, generate_keypair, load_private_key, public_raw, sign_checkpoint
from agent.audit.segments import list_segments
from agent.evidence import store_evidence

INC = "INC-1"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("keys")
    public, _ = generate_keypair(base / "audit.key")
    rogue_public, _ = generate_keypair(base / "rogue.key")
    return {"private": base / "audit.key", "public": public, "rogue": base / "rogue.key", "rogue_public": rogue_public}


@pytest.fixture()
def log(tmp_path: Path, keys: dict[str, Path]) -> dict[str, Any]:
    directory = tmp_path / "audit"
    with AuditLog(directory, signing_key=keys["private"], checkpoint_every=10, checkpoint_interval=0) as audit:
        audit.record("incident.opened", incident=INC, title="beacon", discovered_at="2026-11-20T14:05:00Z")
        store_evidence(tmp_path / "evidence", INC, "victim", {"ps.txt": "4242 beacon\n"}, audit, "alice",
                       "ssh_linux://victim (10.0.0.5)")
        for i in range(52):
            audit.record("action.transition", incident=INC, i=i, target=f"host{i % 4}")
    assert audit_main(["anchor", "--dir", str(directory), "--json"]) == 0
    return {"dir": directory, "evidence": tmp_path / "evidence", "base": tmp_path}


def _anchor(log: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    audit_main(["anchor", "--dir", str(log["dir"]), "--json"])
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _rows(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in list_segments(directory)[-1].read_bytes().splitlines()]


def _write(directory: Path, rows: list[dict[str, Any]], *, rechain_from: int = 0,
           signer: Any = None) -> None:
    """Write ``rows``; from index ``rechain_from`` on recompute seq/prev_hash/hash as a careful attacker would.

    Without ``signer`` (no key) the attacker must drop the checkpoints after the rewrite point (their signatures
    would fail); with one, they re-sign every checkpoint with it. audit.head is rewritten to the new end.
    """
    out: list[bytes] = []
    prev = rows[rechain_from - 1]["hash"] if rechain_from else "0" * 64
    for row in rows[:rechain_from]:
        out.append(encode_line({k: v for k, v in row.items() if k != "hash"})[0])
    seq = rows[rechain_from - 1]["seq"] if rechain_from else 0
    for row in rows[rechain_from:]:
        body = {k: v for k, v in row.items() if k != "hash"}
        if body["event"] == "audit.checkpoint":
            if signer is None:
                continue
            body["covers_seq"], body["covers_hash"] = seq, prev
            body["signature"] = sign_checkpoint(signer, seq, prev)
            body["key_fingerprint"] = fingerprint(public_raw(signer))
        seq += 1
        body["seq"], body["prev_hash"] = seq, prev
        line, prev = encode_line(body)
        out.append(line)
    list_segments(directory)[-1].write_bytes(b"".join(out))
    head = json.dumps({"seq": seq, "hash": prev}).encode().ljust(255) + b"\n"
    (directory / "audit.head").write_bytes(head)


def _cli(directory: Path, *extra: str) -> int:
    return audit_main(["verify", str(directory), *extra])


def _anchored(anchor: dict[str, Any], keys: dict[str, Path], public: Path | None = None) -> list[str]:
    return ["--public-key", str(public or keys["public"]), "--expect-key", anchor["fingerprint"],
            "--anchor", f"{anchor['seq']}:{anchor['hash']}"]


def test_intact_log_passes_with_the_anchor(log: dict[str, Any], keys: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The untouched log verifies against the anchor and says what that proves."""
    anchor = _anchor(log, capsys)
    assert _cli(log["dir"], *_anchored(anchor, keys)) == 0
    out = capsys.readouterr().out
    assert "proven: the signing key is the expected one" in out and "trust anchor: key ed25519:" in out


def test_without_anchor_the_limits_are_stated(log: dict[str, Any], keys: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without an anchor the output says plainly what is NOT proven."""
    assert _cli(log["dir"], "--public-key", str(keys["public"])) == 0
    out = capsys.readouterr().out
    assert "trust anchor: NONE" in out and "NOT proven: without a trust anchor" in out


def _tamper_cases() -> dict[str, Callable[[dict[str, Any], dict[str, Path]], list[str] | None]]:
    """Each case tampers with the log and returns extra CLI args (None: the anchored defaults)."""

    def truncation(log: dict[str, Any], keys: dict[str, Path]) -> None:
        _write(log["dir"], _rows(log["dir"])[:-25], rechain_from=len(_rows(log["dir"])) - 25)

    def reordering(log: dict[str, Any], keys: dict[str, Path]) -> None:
        segment = list_segments(log["dir"])[-1]
        lines = segment.read_bytes().splitlines(keepends=True)
        lines[20], lines[21] = lines[21], lines[20]
        segment.write_bytes(b"".join(lines))

    def key_swap(log: dict[str, Any], keys: dict[str, Path]) -> list[str]:
        rows = _rows(log["dir"])
        rows[3]["target"] = "innocent"
        _write(log["dir"], rows, rechain_from=3, signer=load_private_key(keys["rogue"]))
        return ["--public-key", str(keys["rogue_public"])]

    def checkpoint_deletion(log: dict[str, Any], keys: dict[str, Path]) -> None:
        rows = _rows(log["dir"])
        cut = next(i for i, r in enumerate(rows) if r["event"] == "audit.checkpoint" and r["seq"] > 30)
        _write(log["dir"], rows, rechain_from=cut)  # every checkpoint from seq 30 on removed, chain re-linked

    def prefix_cut(log: dict[str, Any], keys: dict[str, Path]) -> None:
        segment = list_segments(log["dir"])[-1]
        segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[36:]))

    def chain_rewrite_from_earlier_record(log: dict[str, Any], keys: dict[str, Path]) -> None:
        rows = _rows(log["dir"])
        rows[14]["target"] = "innocent"  # the insider has no key: later checkpoints go, the chain is re-linked
        _write(log["dir"], rows, rechain_from=14)

    def chain_rewrite_padded_past_the_anchor(log: dict[str, Any], keys: dict[str, Path]) -> None:
        rows = _rows(log["dir"])
        rows[14]["target"] = "innocent"
        filler = [{**rows[-2], "i": 1000 + n} for n in range(10)]  # more records, so the log reaches the anchor
        _write(log["dir"], [*rows, *filler], rechain_from=14)

    def evidence_edit(log: dict[str, Any], keys: dict[str, Path]) -> list[str]:
        out = log["base"] / "export"
        export_incident(log["dir"], INC, out, evidence_dir=log["evidence"], signing_key=keys["private"])
        victim = next((out / "evidence").rglob("ps.txt"))
        victim.chmod(0o644)
        victim.write_text("1 init\n")
        log["dir"] = out
        return []

    return {f.__name__: f for f in (truncation, reordering, key_swap, checkpoint_deletion, prefix_cut,
                                    chain_rewrite_from_earlier_record, chain_rewrite_padded_past_the_anchor,
                                    evidence_edit)}


REASONS = {"truncation": "log ends before the anchor", "reordering": "deleted or reordered",
           "key_swap": "key swap", "checkpoint_deletion": "log ends before the anchor", "prefix_cut": "prefix cut",
           "chain_rewrite_from_earlier_record": "log ends before the anchor",
           "chain_rewrite_padded_past_the_anchor": "another hash (chain rewritten",
           "evidence_edit": "differs from the SHA-256"}


CASES = _tamper_cases()


@pytest.mark.parametrize("case", list(CASES))
def test_tamper_exits_5_with_the_anchor(case: str, log: dict[str, Any], keys: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Every attack fails verification (exit 5) once the anchor counsel received earlier is given."""
    anchor = _anchor(log, capsys)
    extra = CASES[case](log, keys)
    args = _anchored(anchor, keys)
    if extra:
        args = [*extra, *args[2:]] if extra[0] == "--public-key" else [*extra, *args]
    code = _cli(log["dir"], *args)
    out = capsys.readouterr()
    assert code == 5, out.out + out.err
    first_error = next(line for line in out.out.splitlines() if line.startswith("first error"))
    assert REASONS[case] in first_error, first_error


def test_the_issue_case_passed_before_anchors(log: dict[str, Any], keys: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The insider's rewrite verifies with --public-key alone (chain + signatures are consistent) — which is why
    the anchor exists — and the output then says what is not proven."""
    CASES["chain_rewrite_from_earlier_record"](log, keys)
    report = verify(log["dir"], public_key=keys["public"])
    assert report.ok and report.unsigned_after_checkpoint > 30
    assert any("not signed" in line for line in report.not_proven)


def test_unsigned_tail_beyond_the_stated_limit(log: dict[str, Any], keys: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """More unsigned records after the last checkpoint than --max-unsigned is a failure."""
    anchor = _anchor(log, capsys)
    with AuditLog(log["dir"], actor="x") as unsigned:  # a writer without the key appends 12 records
        for i in range(12):
            unsigned.record("note", incident=INC, i=i)
    assert _cli(log["dir"], *_anchored(anchor, keys), "--max-unsigned", "20") == 0
    assert _cli(log["dir"], *_anchored(anchor, keys), "--max-unsigned", "5") == 5
    assert "too many records after the last signed checkpoint" in capsys.readouterr().out


def test_incident_export_without_its_opening_record(log: dict[str, Any], keys: dict[str, Path]) -> None:
    """An export whose first records (incident.opened) were cut fails, however consistent the rest is."""
    out = log["base"] / "export"
    export_incident(log["dir"], INC, out, evidence_dir=log["evidence"], signing_key=keys["private"])
    assert verify_export(out).ok
    segment = next((out / "audit").glob("audit-*.jsonl"))
    segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[5:]))
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert not verify_export(out).ok  # the manifest hash catches it; recompute it as an attacker would:
    import hashlib
    manifest["sha256"][f"audit/{segment.name}"] = hashlib.sha256(segment.read_bytes()).hexdigest()
    (out / "MANIFEST.json").write_text(json.dumps(manifest))
    (out / "MANIFEST.sig").unlink()
    (out / "audit-signing-key.pub").unlink()
    report = verify_export(out, public_key=keys["public"], anchor=TrustAnchor())
    assert not report.ok and "opening record" in str(report.first_error)


def test_zip_export_then_verify_with_the_anchor(log: dict[str, Any], keys: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`export --out x.zip` (recorded, checkpointed, signed) then `verify x.zip` with the anchor: exit 0."""
    anchor = _anchor(log, capsys)
    zip_path = log["base"] / "inc1.zip"
    assert audit_main(["export", "--incident", INC, "--out", str(zip_path), "--dir", str(log["dir"]),
                       "--evidence-dir", str(log["evidence"]), "--signing-key", str(keys["private"])]) == 0
    capsys.readouterr()
    anchored = ["--expect-key", anchor["fingerprint"], "--anchor", f"{anchor['seq']}:{anchor['hash']}"]
    assert _cli(zip_path, *anchored) == 0
    out = capsys.readouterr().out
    assert "every evidence file matches" in out and "manifest was signed" in out
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        text = b"".join(archive.read(n) for n in names if n.startswith("audit/"))
        manifest = json.loads(archive.read("MANIFEST.json"))
    assert "audit-signing-key.pub" in names and "MANIFEST.sig" in names
    assert any(n.startswith("evidence/victim/") for n in names)
    assert b'"event":"audit.exported"' in text  # the export is in the log it exports, signed
    assert manifest["signed_to_the_end"] is True
    assert list(_rows(log["dir"]))[-1]["event"] == "audit.checkpoint"


def test_export_starts_at_the_incident(tmp_path: Path, keys: dict[str, Path]) -> None:
    """Records of an earlier incident are not carried; the export ends at the checkpoint signing the last record."""
    with AuditLog(tmp_path / "audit", signing_key=keys["private"], checkpoint_every=4) as audit:
        for i in range(6):
            audit.record("incident.opened" if i == 0 else "note", incident="INC-EARLIER", secret_ish=f"x{i}")
        audit.record("incident.opened", incident=INC, title="ours")
        audit.record("action.done", incident=INC, target="victim")
        result = export_incident(tmp_path / "audit", INC, tmp_path / "out", signing_key=keys["private"],
                                 audit_log=audit, actor="alice")
    text = b"".join(p.read_bytes() for p in (tmp_path / "out" / "audit").glob("audit-*.jsonl"))
    assert b"INC-EARLIER" not in text
    rows = [json.loads(x) for x in text.splitlines()]
    assert rows[0]["event"] == "incident.opened" and rows[0]["incident"] == INC
    assert rows[-1]["event"] == "audit.checkpoint" and rows[-2]["event"] == "audit.exported"
    assert rows[-2]["exported_by"] == "alice"
    assert (result.first_seq, result.last_seq) == (rows[0]["seq"], rows[-1]["seq"])
    assert verify_export(tmp_path / "out").ok


DOC_VERIFIER = Path(__file__).resolve().parents[2] / "docs" / "verify_export.py"


def _independent(export: Path, *args: str, cwd: Path) -> tuple[int, str]:
    """Run docs/verify_export.py as a third party would: isolated interpreter, not inside the repository."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-I", str(DOC_VERIFIER), str(export), *args], capture_output=True,
                          text=True, cwd=cwd, check=False, timeout=60)
    return done.returncode, done.stdout + done.stderr


def _export_tampers() -> dict[str, Callable[[Path, dict[str, Path]], None]]:
    def intact(out: Path, keys: dict[str, Path]) -> None:
        return None

    def evidence_edit(out: Path, keys: dict[str, Path]) -> None:
        victim = next((out / "evidence").rglob("ps.txt"))
        victim.chmod(0o644)
        victim.write_text("1 init\n")
        _fix_manifest(out)

    def prefix_cut(out: Path, keys: dict[str, Path]) -> None:
        segment = next((out / "audit").glob("audit-*.jsonl"))
        segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[3:]))
        _fix_manifest(out)

    def chain_rewrite(out: Path, keys: dict[str, Path]) -> None:
        audit_dir = out / "audit"
        rows = _rows(audit_dir)
        rows[14]["target"] = "innocent"
        filler = [{**rows[-3], "i": 1000 + n} for n in range(12)]
        _write(audit_dir, [*rows, *filler], rechain_from=14)
        (audit_dir / "audit.head").unlink()
        _fix_manifest(out)

    def key_swap(out: Path, keys: dict[str, Path]) -> None:
        rogue = load_private_key(keys["rogue"])
        rows = _rows(out / "audit")
        rows[3]["target"] = "innocent"
        _write(out / "audit", rows, rechain_from=3, signer=rogue)
        (out / "audit" / "audit.head").unlink()
        (out / "audit-signing-key.pub").write_bytes(keys["rogue_public"].read_bytes())
        _fix_manifest(out, signer=rogue)

    return {f.__name__: f for f in (intact, evidence_edit, prefix_cut, chain_rewrite, key_swap)}


def _fix_manifest(out: Path, signer: Any = None) -> None:
    """The attacker recomputes the manifest's hashes (and re-signs it if they have a key; else drops the sig)."""
    import base64
    import hashlib

    from agent.audit.export import MANIFEST_DOMAIN

    manifest = json.loads((out / "MANIFEST.json").read_text())
    manifest["sha256"] = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                          for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("MANIFEST.json",
                                                                                              "MANIFEST.sig")}
    data = json.dumps(manifest).encode()
    (out / "MANIFEST.json").write_bytes(data)
    if signer is not None:
        (out / "MANIFEST.sig").write_text(base64.b64encode(signer.sign(MANIFEST_DOMAIN + data)).decode())
    else:
        (out / "MANIFEST.sig").unlink(missing_ok=True)


EXPORT_TAMPERS = _export_tampers()


@pytest.mark.parametrize("case", list(EXPORT_TAMPERS))
def test_independent_verifier_in_docs(case: str, log: dict[str, Any], keys: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """docs/verify_export.py (no agent import) accepts the intact export and rejects each tampered one, like the
    agent's own `audit verify` on the same files."""
    anchor = _anchor(log, capsys)
    out = log["base"] / "export"
    export_incident(log["dir"], INC, out, evidence_dir=log["evidence"], signing_key=keys["private"])
    EXPORT_TAMPERS[case](out, keys)
    args = ["--expect-key", anchor["fingerprint"], "--anchor", f"{anchor['seq']}:{anchor['hash']}"]
    code, text = _independent(out, *args, cwd=tmp_path)
    ours = _cli(out, *args)
    capsys.readouterr()
    expected = 0 if case == "intact" else 5
    assert (code, ours) == (expected, expected), text
    if case == "intact":
        assert "OK" in text and "proven: unchanged and signed up to the anchor" in text


def test_independent_verifier_openssl_path(log: dict[str, Any], keys: dict[str, Path]) -> None:
    """The openssl fallback (no `cryptography` installed) checks the same signatures."""
    import importlib.util
    import shutil as sh

    if sh.which("openssl") is None:
        pytest.skip("openssl not installed")
    spec = importlib.util.spec_from_file_location("verify_export_doc", DOC_VERIFIER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    signer = load_private_key(keys["private"])
    pem = keys["public"].read_bytes()
    assert module._openssl_ok(pem, signer.sign(b"message"), b"message")
    assert not module._openssl_ok(pem, signer.sign(b"message"), b"messagE")
    assert module.raw_public_key(pem) == public_raw(signer)


@pytest.fixture()
def interleaved(tmp_path: Path, keys: dict[str, Path]) -> Path:
    """INC-1 and a confidential INC-OTHER (another client of the same deployment) written in turns."""
    directory = tmp_path / "audit"
    with AuditLog(directory, signing_key=keys["private"], checkpoint_every=7) as audit:
        audit.record("incident.opened", incident=INC, title="ours")
        for i in range(5):
            audit.record("action.done", incident="INC-OTHER", target="other-client-db", secret_ish=f"CLIENT-B-{i}")
            audit.record("action.done", incident=INC, target="victim", i=i)
        audit.record("scheduler.tick")  # a record of no incident
        audit.record("action.done", incident=INC, target="victim", i=99)
    return directory


def test_export_withholds_other_incidents_records(interleaved: Path, keys: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Other incidents' records are stubs in the export: no content, links verify, both verifiers accept."""
    out = tmp_path / "export"
    export_incident(interleaved, INC, out, signing_key=keys["private"])
    text = b"".join(p.read_bytes() for p in (out / "audit").glob("audit-*.jsonl"))
    assert b"INC-OTHER" not in text and b"CLIENT-B" not in text and b"other-client-db" not in text
    assert text.count(b'"withheld":true') == 6  # five INC-OTHER records and the incident-less one
    report = verify_export(out)
    assert report.ok and report.withheld == 6, report.render()
    code, shown = _independent(out, cwd=tmp_path)
    assert code == 0 and "6 record(s) of other incidents withheld" in shown, shown
    assert not verify(out / "audit").ok  # stubs are for exports only: the same files as a "log" fail


def test_a_record_of_the_incident_itself_cannot_be_withheld(interleaved: Path, keys: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """Hiding one of the incident's own records behind a stub (say an action.failed) is caught by its tag."""
    from agent.audit.canonical import withheld_line

    out = tmp_path / "export"
    export_incident(interleaved, INC, out, signing_key=keys["private"])
    segment = next((out / "audit").glob("audit-*.jsonl"))
    lines = segment.read_bytes().splitlines(keepends=True)
    index = next(i for i, ln in enumerate(lines) if b'"i":2' in ln)
    row = json.loads(lines[index])
    stored = row.pop("hash")
    lines[index] = withheld_line(row, stored)
    segment.write_bytes(b"".join(lines))
    _fix_manifest(out, signer=load_private_key(keys["private"]))
    report = verify_export(out)
    assert not report.ok and "record of the exported incident itself was withheld" in str(report.first_error)
    code, shown = _independent(out, cwd=tmp_path)
    assert code == 5 and "itself was withheld" in shown
    # ...and lying about the tag breaks the record's hash
    stub = json.loads(lines[index])
    stub["incident_tag"] = "0" * 64
    body = {k: v for k, v in stub.items() if k != "hash"}
    from agent.audit.canonical import canonical

    lines[index] = canonical(body)[:-1] + b',"hash":"' + stub["hash"].encode() + b'"}\n'
    segment.write_bytes(b"".join(lines))
    _fix_manifest(out, signer=load_private_key(keys["private"]))
    report = verify_export(out)
    assert not report.ok and "record edited" in str(report.first_error)
