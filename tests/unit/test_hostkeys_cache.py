"""known_hosts is parsed once per version of the file, not once per connection (issue 19 fan-out: parsing it for
every host made pinning cost O(hosts) per host), and a change to the file — a newly trusted key appended, a key
replaced — is seen by the very next lookup."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import paramiko

from connectors.ssh_linux import hostkeys


def key_line(name: str, seed: int) -> tuple[str, bytes]:
    raw = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed]) * 32
    return f"{name} ssh-ed25519 {base64.b64encode(raw).decode()}\n", raw


def test_parsed_once_for_many_hosts(tmp_path: Path, monkeypatch):
    path = tmp_path / "known_hosts"
    lines = [key_line(f"10.0.0.{i}", i) for i in range(1, 51)]
    path.write_text("".join(line for line, _ in lines))
    parsed = []
    real = paramiko.HostKeys

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            parsed.append(a)
            super().__init__(*a, **k)

    monkeypatch.setattr(paramiko, "HostKeys", Counting)
    for i, (_, blob) in enumerate(lines, 1):
        [pin] = hostkeys.pins_for(f"10.0.0.{i}", 22, None, str(path))
        assert pin.blob == blob
    assert len(parsed) == 1


def test_a_changed_file_is_read_again(tmp_path: Path):
    path = tmp_path / "known_hosts"
    first, blob1 = key_line("10.0.0.5", 1)
    path.write_text(first)
    assert [p.blob for p in hostkeys.pins_for("10.0.0.5", 22, None, str(path))] == [blob1]
    assert hostkeys.pins_for("10.0.0.6", 22, None, str(path)) == []
    hostkeys.record_trusted(str(path), "10.0.0.6", 22, "ssh-ed25519", blob1)  # appended: a new version
    assert [p.blob for p in hostkeys.pins_for("10.0.0.6", 22, None, str(path))] == [blob1]
    replaced, blob2 = key_line("10.0.0.5", 2)
    path.write_text(replaced)  # rewritten (same size): inode/mtime differ
    os.utime(path, ns=(1, 1))
    assert [p.blob for p in hostkeys.pins_for("10.0.0.5", 22, None, str(path))] == [blob2]
