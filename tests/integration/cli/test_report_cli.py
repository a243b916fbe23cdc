"""The counsel report for a real lab incident (isolate + block), rendered to HTML and PDF as counsel gets it."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.cli.test_contain_cli import agent, cfg  # noqa: F401

pytestmark = pytest.mark.root


def text_of(path: Path) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text())))


class TestCounselReport:
    def test_report_for_lab_incident(self, clean_lab: Lab, cfg: Path, tmp_path: Path):  # noqa: F811
        """Timeline, actions and deadlines (MA: no date; NY: 30 days) from a fixed discovery time; PDF not blank."""
        lab = clean_lab
        res = agent(lab, cfg, "contain", "--host", "victim", "--reason", "ransomware beacon",
                    "--discovered", "2026-11-02T09:00:00-05:00", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        incident = json.loads(res.stdout)["incident"]
        res = agent(lab, cfg, "block-ip", "10.77.1.130", "--allow-private", "--incident", incident, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert agent(lab, cfg, "release", "--host", "victim", "--yes").returncode == 0
        out_html, out_pdf = tmp_path / "r.html", tmp_path / "r.pdf"
        done = agent(lab, cfg, "report", "--incident", incident, "--format", "html", "-o", str(out_html))
        assert done.returncode == 0
        text = text_of(out_html)
        for expected in (incident, "ransomware beacon", "isolate", "block_ip", "victim", "10.77.1.130",
                         "Massachusetts", "as soon as practicable", "New York", "not legal advice", "Verified"):
            assert expected in text, expected
        assert "2026-12-02 23:59 EST" in text  # New York: 30 days after the 2026-11-02 discovery, trigger day excluded
        res = agent(lab, cfg, "report", "--incident", incident, "--format", "pdf", "-o", str(out_pdf))
        assert res.returncode == 0, res.stderr
        subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(out_pdf), str(tmp_path / "p")],
                       check=True)
        png = next(tmp_path.glob("p*.png"))
        from PIL import Image
        pixels = list(Image.open(png).convert("L").getdata())
        assert len(set(pixels)) > 20 and min(pixels) < 100  # text on the page, not a blank sheet
        # the same content as JSON: counts as the lab inventory says (victim's data set once, although evidence,
        # isolate and release all touched it), the isolate card says released, the log verified and signed
        out_json = tmp_path / "r.json"
        assert agent(lab, cfg, "report", "--incident", incident, "--format", "json", "-o", str(out_json)
                     ).returncode == 0
        content = json.loads(out_json.read_text())
        from agent.lab.labconfig import DATA
        assert content["scope"]["residents_by_state"] == DATA["victim"][1]
        isolate = next(a for a in content["actions"] if a["action"] == "isolate" and a["kind"] == "apply")
        assert isolate["undo_status"].startswith("released") and isolate["why"] == "ransomware beacon"
        assert content["audit"]["ok"] and content["audit"]["key_fingerprint"].startswith("ed25519:")

    def test_export_and_verify_against_the_anchor(self, clean_lab: Lab, cfg: Path, tmp_path: Path):  # noqa: F811
        """Real CLI: anchor handed to counsel, export to zip (key, evidence, signed manifest), verify with the
        anchor (exit 0); the same zip with an edited evidence file: exit 5."""
        import zipfile

        lab = clean_lab
        res = agent(lab, cfg, "contain", "--host", "victim", "--reason", "beacon", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        incident = json.loads(res.stdout)["incident"]
        anchor = json.loads(agent(lab, cfg, "audit", "anchor", "--json").stdout)
        assert agent(lab, cfg, "release", "--host", "victim", "--yes").returncode == 0
        out = tmp_path / "inc.zip"
        res = agent(lab, cfg, "audit", "export", "--incident", incident, "--out", str(out))
        assert res.returncode == 0, res.stderr + res.stdout
        args = ["--expect-key", anchor["fingerprint"], "--anchor", f"{anchor['seq']}:{anchor['hash']}"]
        res = agent(lab, cfg, "audit", "verify", str(out), *args)
        assert res.returncode == 0, res.stdout + res.stderr
        with zipfile.ZipFile(out) as archive:
            names = archive.namelist()
            archive.extractall(tmp_path / "x")
        assert "audit-signing-key.pub" in names and "MANIFEST.sig" in names
        assert any(n.startswith("evidence/victim/") for n in names)
        evidence = next(p for p in (tmp_path / "x" / "evidence").rglob("*") if p.is_file())
        evidence.chmod(0o644)
        evidence.write_bytes(evidence.read_bytes() + b"edited")
        res = agent(lab, cfg, "audit", "verify", str(tmp_path / "x"), *args)
        assert res.returncode == 5, res.stdout + res.stderr
