"""``audit verify | init-key | export`` — the audit subcommands, wired by the lead into ``agent audit ...``.

Why a separate tiny module: ``agent audit verify`` is what counsel's expert runs; it must start fast and work
from exported files alone, so it imports only the stdlib (plus ``cryptography`` when a key is given).

Exit codes: 0 verified / done; 1 verification failed; 2 usage or input error (missing key, no such incident).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_DEFAULT_DIR = os.environ.get("AGENT_AUDIT_DIR", "var/audit")
_DEFAULT_KEY = os.environ.get("AGENT_AUDIT_KEY", "var/audit-signing.key")


def build_parser(prog: str = "audit") -> argparse.ArgumentParser:
    """The argparse tree; the lead may embed it as a sub-parser of ``agent``."""
    parser = argparse.ArgumentParser(prog=prog, description="Verify, sign and export the tamper-evident audit log.")
    sub = parser.add_subparsers(dest="command", required=True)
    ver = sub.add_parser("verify", help="check the hash chain and checkpoint signatures offline")
    ver.add_argument("--dir", type=Path, default=Path(_DEFAULT_DIR), help="audit directory (default %(default)s)")
    ver.add_argument("--public-key", type=Path, help="Ed25519 public key (.pub) to check checkpoint signatures")
    ver.add_argument("--from", dest="from_seq", type=int, help="first seq to verify")
    ver.add_argument("--to", dest="to_seq", type=int, help="last seq to verify")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    key = sub.add_parser("init-key", help="create the Ed25519 checkpoint signing key (mode 0600) and its .pub")
    key.add_argument("--out", type=Path, default=Path(_DEFAULT_KEY), help="private key path (default %(default)s)")
    exp = sub.add_parser("export", help="folder or .zip with segments, head, public key, evidence and manifest")
    exp.add_argument("--incident", required=True, help="incident id")
    exp.add_argument("--out", type=Path, required=True, help="output directory, or a path ending in .zip")
    exp.add_argument("--dir", type=Path, default=Path(_DEFAULT_DIR), help="audit directory (default %(default)s)")
    exp.add_argument("--evidence-dir", type=Path, help="evidence root (files under <root>/<incident>/)")
    exp.add_argument("--public-key", type=Path, help="public key to include for the recipient")
    exp.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one audit subcommand; return the exit code (see module docstring)."""
    args = build_parser().parse_args(argv)
    handler = {"verify": _verify, "init-key": _init_key, "export": _export}[args.command]
    return handler(args)


def _verify(args: argparse.Namespace) -> int:
    from agent.audit.keys import KeyError_
    from agent.audit.verify import verify

    try:
        report = verify(args.dir, public_key=args.public_key, from_seq=args.from_seq, to_seq=args.to_seq)
    except KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return EXIT_OK if report.ok else EXIT_FAILED


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
    from agent.audit.reader import export_incident

    try:
        result = export_incident(args.dir, args.incident, args.out, evidence_dir=args.evidence_dir,
                                 public_key=args.public_key)
    except (LookupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"path": str(result.path), "segments": result.segments, "records": result.records,
                          "files": result.files}, indent=2))
    else:
        print(f"exported {result.records} records of {args.incident} ({len(result.segments)} segment(s), "
              f"{len(result.files)} files) to {result.path}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
