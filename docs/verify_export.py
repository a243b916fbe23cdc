#!/usr/bin/env python3
"""Independent verifier for a containment-agent incident export — written from docs/audit-format.md alone.

Needs only Python 3.9+ and, for the Ed25519 signatures, either the ``cryptography`` package or the ``openssl``
command (OpenSSL 3). It does not import the agent. Run it on an export folder or zip:

    python3 verify_export.py EXPORT.zip --expect-key ed25519:<64 hex> --anchor <seq>:<64 hex>

The key fingerprint and the anchor are what counsel received earlier, out of band (``agent audit anchor``).
Exit status 0 = verified against the anchor; 5 = verification failed; 2 = usage error. Without --expect-key and
--anchor it still checks everything it can and prints what is NOT proven.
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

CHECKPOINT_DOMAIN = "containment-agent/audit-checkpoint/v1\n"
MANIFEST_DOMAIN = b"containment-agent/export-manifest/v1\n"


class Failed(Exception):
    pass


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def raw_public_key(pem):
    """The 32 raw bytes of an Ed25519 SubjectPublicKeyInfo PEM (fixed 12-byte DER prefix, RFC 8410)."""
    lines = [x for x in pem.decode("ascii").splitlines() if x and not x.startswith("-----")]
    der = base64.b64decode("".join(lines))
    if len(der) != 44 or der[:12] != bytes.fromhex("302a300506032b6570032100"):
        raise Failed("public key is not an Ed25519 SubjectPublicKeyInfo PEM")
    return der[12:]


def ed25519_ok(pem, signature, message):
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        return _openssl_ok(pem, signature, message)
    try:
        load_pem_public_key(pem).verify(signature, message)
        return True
    except Exception:  # noqa: BLE001 - any failure to verify means "not verified"
        return False


def _openssl_ok(pem, signature, message):
    folder = tempfile.mkdtemp()
    try:
        paths = {}
        for name, data in (("key.pem", pem), ("sig", signature), ("msg", message)):
            paths[name] = os.path.join(folder, name)
            with open(paths[name], "wb") as handle:
                handle.write(data)
        done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"], "-rawin",
                               "-in", paths["msg"], "-sigfile", paths["sig"]], capture_output=True, check=False)
        return done.returncode == 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STUB_KEYS = {"body_sha256", "incident_tag", "prev_hash", "seq", "v", "withheld"}


def chain_hash(seq, prev_hash, tag, body_sha256):
    """Hash rule of version-2 records (docs/audit-format.md)."""
    text = f"containment-agent/audit-record/v2\n{seq}\n{prev_hash}\n{tag}\n{body_sha256}\n"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_chain(audit_dir, pem, fingerprint, incident):
    """Steps 1-5 of the documented algorithm; returns the facts the anchor checks need."""
    names = sorted(n for n in os.listdir(audit_dir) if n.startswith("audit-") and n.endswith(".jsonl"))
    if not names:
        raise Failed("no audit segments")
    state = {"first": None, "last": None, "hashes": {}, "signed_to": None, "unsigned": 0, "opened": set(),
             "evidence": [], "withheld": 0, "our_tag": hashlib.sha256(incident.encode()).hexdigest()}
    prev_hash = None
    for name in names:
        with open(os.path.join(audit_dir, name), "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        if lines[-1]:
            raise Failed(f"{name}: truncated line")
        for line in lines[:-1]:
            record = json.loads(line)
            stored = record.pop("hash")
            seq = record["seq"]
            body = canonical(record)
            if record.get("v") == 2 and record.get("withheld") is True:  # another incident's record, withheld
                if set(record) != STUB_KEYS:
                    raise Failed(f"seq {seq}: malformed stub")
                if record["incident_tag"] == state["our_tag"]:
                    raise Failed(f"seq {seq}: a record of the exported incident itself was withheld")
                expected = chain_hash(seq, record["prev_hash"], record["incident_tag"], record["body_sha256"])
                state["withheld"] += 1
            elif record.get("v") == 2:
                tag = hashlib.sha256(record["incident"].encode()).hexdigest() if isinstance(
                    record.get("incident"), str) else "-"
                expected = chain_hash(seq, record["prev_hash"], tag, hashlib.sha256(body).hexdigest())
            else:
                expected = hashlib.sha256(body).hexdigest()
            if expected != stored:
                raise Failed(f"seq {seq}: hash mismatch (record edited)")
            if body[:-1] + b',"hash":"' + stored.encode() + b'"}' != line:
                raise Failed(f"seq {seq}: not canonical")
            if prev_hash is None:
                if seq == 1 and record["prev_hash"] != "0" * 64:
                    raise Failed("bad genesis")
                state["first"] = seq
            else:
                if record["prev_hash"] != prev_hash:
                    raise Failed(f"seq {seq}: prev_hash mismatch (record deleted or reordered)")
                if seq != state["last"] + 1:
                    raise Failed(f"seq {seq}: seq gap")
            if record.get("event") == "audit.checkpoint":
                if record["covers_seq"] != seq - 1 or record["covers_hash"] != record["prev_hash"]:
                    raise Failed(f"seq {seq}: forged checkpoint")
                if pem is not None:
                    if record["key_fingerprint"] != fingerprint:
                        raise Failed(f"seq {seq}: checkpoint signed by another key")
                    message = f"{CHECKPOINT_DOMAIN}{seq - 1}\n{record['prev_hash']}\n".encode("ascii")
                    if not ed25519_ok(pem, base64.b64decode(record["signature"]), message):
                        raise Failed(f"seq {seq}: checkpoint signature invalid")
                    state["signed_to"], state["unsigned"] = seq - 1, 0
            else:
                state["unsigned"] += 1
            if record.get("event") == "incident.opened":
                state["opened"].add(record.get("incident"))
            if record.get("event") == "evidence.stored":
                state["evidence"].append(record)
            state["hashes"][seq] = stored
            state["last"], prev_hash = seq, stored
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="export folder or .zip")
    parser.add_argument("--expect-key", help="ed25519:<hex> fingerprint received earlier")
    parser.add_argument("--anchor", help="<seq>:<hash> received earlier")
    parser.add_argument("--max-unsigned", type=int, default=1000)
    args = parser.parse_args(argv)
    root, cleanup = args.export, None
    if os.path.isfile(root):
        cleanup = root = tempfile.mkdtemp()
        with zipfile.ZipFile(args.export) as archive:
            if any(n.startswith("/") or ".." in n.split("/") for n in archive.namelist()):
                print("FAILED: unsafe names in the zip")
                return 5
            archive.extractall(root)
    proven, not_proven = [], []
    try:
        manifest_bytes = read(os.path.join(root, "MANIFEST.json"))
        manifest = json.loads(manifest_bytes)
        for rel, digest in sorted(manifest["sha256"].items()):
            if sha256_file(os.path.join(root, rel)) != digest:
                raise Failed(f"{rel}: differs from the manifest")
        key_path = os.path.join(root, "audit-signing-key.pub")
        pem = read(key_path) if os.path.exists(key_path) else None
        fingerprint = pem and "ed25519:" + hashlib.sha256(raw_public_key(pem)).hexdigest()
        if args.expect_key and fingerprint != args.expect_key:
            raise Failed(f"key swap: export key {fingerprint}, expected {args.expect_key}")
        if pem is not None:
            sig_path = os.path.join(root, "MANIFEST.sig")
            if not os.path.exists(sig_path):
                raise Failed("manifest not signed")
            signature = base64.b64decode(read(sig_path).strip())
            if not ed25519_ok(pem, signature, MANIFEST_DOMAIN + manifest_bytes):
                raise Failed("manifest signature invalid")
        incident = manifest["incident"]
        state = verify_chain(os.path.join(root, "audit"), pem, fingerprint, incident)
        if incident not in state["opened"]:
            raise Failed(f"the export lacks {incident}'s opening record (incident.opened)")
        for record in state["evidence"]:
            if record.get("incident") != incident:
                continue
            path = os.path.join(root, "evidence", record["file"])
            if not os.path.exists(path) or sha256_file(path) != record["sha256"]:
                raise Failed(f"evidence {record['file']}: missing or differs from its signed record")
        if args.anchor:
            seq, digest = args.anchor.split(":")
            seq = int(seq)
            if pem is None:
                raise Failed("an anchor needs the public key")
            if state["last"] < seq:
                raise Failed("the export ends before the anchor")
            if seq in state["hashes"] and state["hashes"][seq] != digest:
                raise Failed(f"seq {seq}: hash differs from the anchor (chain rewritten)")
            if (state["signed_to"] or 0) < seq:
                raise Failed("signed coverage ends before the anchor")
            if state["unsigned"] > args.max_unsigned:
                raise Failed(f"{state['unsigned']} records after the last checkpoint exceed the limit")
            proven.append(f"unchanged and signed up to the anchor (seq {seq})")
        else:
            not_proven.append("no anchor: records could have been cut from the end or rewritten after the last "
                              "checkpoint")
        if not args.expect_key:
            not_proven.append("no expected key: the key could be anyone's")
        proven.append(f"seq {state['first']}..{state['last']} consistent; signed up to seq {state['signed_to']} "
                      f"by {fingerprint}; evidence matches its signed hashes; {state['withheld']} record(s) of "
                      "other incidents withheld (their links verify)")
    except (Failed, OSError, ValueError, KeyError) as exc:
        print(f"FAILED: {exc}")
        return 5
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    print("OK")
    for line in proven:
        print("proven: " + line)
    for line in not_proven:
        print("NOT proven: " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
