"""``audit verify | init-key | export`` — the audit subcommands, wired by the lead into ``agent audit ...``.

Why a separate tiny module: ``agent audit verify`` is what counsel's expert runs; it must start fast and work
from exported files alone, so it imports only the stdlib (plus ``cryptography`` when a key is given).

Exit codes: 0 verified / done; 5 verification failed (the ``agent`` command's NOT_VERIFIED); 2 usage or input
error (missing key, bad anchor, no such incident).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.audit.anchor import DEFAULT_MAX_UNSIGNED

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 5, 2

_DEFAULT_DIR = os.environ.get("AGENT_AUDIT_DIR", "var/audit")
_DEFAULT_KEY = os.environ.get("AGENT_AUDIT_KEY", "var/audit-signing.key")


def build_parser(prog: str = "audit") -> argparse.ArgumentParser:
    """The argparse tree; the lead may embed it as a sub-parser of ``agent``."""
    parser = argparse.ArgumentParser(prog=prog, description="Verify, sign and export the tamper-evident audit log.")
    sub = parser.add_subparsers(dest="command", required=True)
    ver = sub.add_parser("verify", help="check the hash chain, checkpoint signatures and a trust anchor offline")
    ver.add_argument("path", nargs="?", type=Path,
                     help="audit directory, export folder or export .zip (default: --dir)")
    ver.add_argument("--dir", type=Path, default=Path(_DEFAULT_DIR), help="audit directory (default %(default)s)")
    ver.add_argument("--public-key", type=Path, help="Ed25519 public key (.pub) to check checkpoint signatures "
                     "(an export's own key is used when not given)")
    ver.add_argument("--expect-key", metavar="FINGERPRINT",
                     help="trust anchor: the key fingerprint (ed25519:…) counsel received earlier")
    ver.add_argument("--anchor", metavar="SEQ:HASH|FILE",
                     help="trust anchor: a signed head counsel received earlier (`agent audit anchor` output)")
    ver.add_argument("--max-unsigned", type=int, default=DEFAULT_MAX_UNSIGNED, metavar="N",
                     help="with an anchor: fail when more than N records follow the last checkpoint "
                          "(default %(default)s, the writers' checkpoint interval)")
    ver.add_argument("--incident", metavar="ID", help="the log must hold this incident's opening record")
    ver.add_argument("--from", dest="from_seq", type=int, help="first seq to verify")
    ver.add_argument("--to", dest="to_seq", type=int, help="last seq to verify")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    anc = sub.add_parser("anchor", help="print the latest signed head + key fingerprint: give it to counsel now")
    anc.add_argument("--dir", type=Path, default=Path(_DEFAULT_DIR), help="audit directory (default %(default)s)")
    anc.add_argument("--json", action="store_true", help="machine-readable output (a file --anchor accepts)")
    key = sub.add_parser("init-key", help="create the Ed25519 checkpoint signing key (mode 0600) and its .pub")
    key.add_argument("--out", type=Path, default=Path(_DEFAULT_KEY), help="private key path (default %(default)s)")
    exp = sub.add_parser("export", help="folder or .zip with segments, head, public key, evidence and manifest")
    exp.add_argument("--incident", required=True, help="incident id")
    exp.add_argument("--out", type=Path, required=True, help="output directory, or a path ending in .zip")
    exp.add_argument("--dir", type=Path, default=Path(_DEFAULT_DIR), help="audit directory (default %(default)s)")
    exp.add_argument("--evidence-dir", type=Path, help="evidence root (files under <root>/<incident>/)")
    exp.add_argument("--public-key", type=Path, help="public key to include for the recipient")
    exp.add_argument("--signing-key", type=Path, help="the audit signing key: records the export in the log, "
                     "checkpoints it and signs the manifest")
    exp.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one audit subcommand; return the exit code (see module docstring)."""
    args = build_parser().parse_args(argv)
    handler = {"verify": _verify, "init-key": _init_key, "export": _export, "anchor": _anchor}[args.command]
    return handler(args)


def _verify(args: argparse.Namespace) -> int:
    from agent.audit.anchor import AnchorError, parse_anchor
    from agent.audit.keys import KeyError_
    from agent.audit.chain import verify

    target = args.path or args.dir
    try:
        anchor = parse_anchor(args.anchor, fingerprint=args.expect_key, max_unsigned=args.max_unsigned,
                              incident=args.incident)
        if (target / "MANIFEST.json").is_file() or (target.is_file() and target.suffix == ".zip"):
            from agent.audit.export import verify_export

            report = verify_export(target, public_key=args.public_key, anchor=anchor)
        else:
            report = verify(target, public_key=args.public_key, from_seq=args.from_seq, to_seq=args.to_seq,
                            anchor=anchor)
    except (KeyError_, AnchorError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return EXIT_OK if report.ok else EXIT_FAILED


def _anchor(args: argparse.Namespace) -> int:
    """The last checkpoint's signed head: what counsel keeps, out of the attacker's reach, to anchor later checks."""
    from agent.audit.reader import records

    last = None
    for record in records(args.dir):
        if record.get("event") == "audit.checkpoint":
            last = record
    if last is None:
        print(f"error: no signed checkpoint in {args.dir} (is audit_signing_key configured?)", file=sys.stderr)
        return EXIT_USAGE
    anchor = {"fingerprint": last.get("key_fingerprint"), "seq": last["covers_seq"], "hash": last["covers_hash"],
              "checkpoint_seq": last["seq"], "ts": last.get("ts")}
    if args.json:
        print(json.dumps(anchor, indent=2))
    else:
        print(f"key:    {anchor['fingerprint']}\nanchor: {anchor['seq']}:{anchor['hash']}\n"
              f"signed at {anchor['ts']} — send both lines to counsel now (mail, RFC 3161 timestamp or a "
              "transparency log); later: agent audit verify --expect-key KEY --anchor ANCHOR")
    return EXIT_OK


def _init_key(args: argparse.Namespace) -> int:
    from agent.audit.keys import KeyError_, generate_keypair

    try:
        public_path, fingerprint = generate_keypair(args.out)
    except KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"private key: {args.out} (mode 0600 — keep it on the agent host only)")
    print(f"public key:  {public_path} (give this to counsel / auditors)")
    print(f"fingerprint: {fingerprint}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from agent.audit.export import export_incident
    from agent.audit.keys import KeyError_

    log = None
    try:
        if args.signing_key is not None:
            from agent.audit.writer import AuditLog

            log = AuditLog(args.dir, signing_key=args.signing_key, fsync_interval=0, checkpoint_interval=0)
        result = export_incident(args.dir, args.incident, args.out, evidence_dir=args.evidence_dir,
                                 public_key=args.public_key, signing_key=args.signing_key, audit_log=log,
                                 actor=os.environ.get("AGENT_ACTOR") or os.environ.get("USER", ""))
    except (LookupError, OSError, KeyError_) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if log is not None:
            log.close()
    if args.json:
        print(json.dumps({"path": str(result.path), "segments": result.segments, "records": result.records,
                          "first_seq": result.first_seq, "last_seq": result.last_seq, "signed": result.signed,
                          "files": result.files}, indent=2))
    else:
        print(f"exported {result.records} records of {args.incident} (seq {result.first_seq}..{result.last_seq}, "
              f"{len(result.files)} files{', manifest signed' if result.signed else ''}) to {result.path}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
