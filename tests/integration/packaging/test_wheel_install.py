"""`pip install` gives a working tool: the wheel, installed into a fresh venv outside the checkout, runs for real.

The wheel is built from this tree without network (no build isolation: setuptools comes from the dev venv). The
fresh venv gets the wheel itself with ``--no-deps --no-index``; its third-party libraries are borrowed from the
dev venv through a plain path entry (which does not bring the checkout: ``.pth`` files in that folder are not
processed), so every file the agent reads — runbooks, example configuration, obligations table, templates — must
come from the installed wheel. Every command runs with the working directory outside the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slots import claim

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "-w", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (found,) = out.glob("containment_agent-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    fresh_site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    dev_site = Path(sysconfig.get_path("purelib"))
    (fresh_site / "zz_dev_libraries.pth").write_text(f"{dev_site}\n")  # libraries only; appended after the wheel
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
                           "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def agent(venv: Path, cwd: Path, *args: str, netns: str | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AGENT_CONFIG", "VIRTUAL_ENV")}
    env.update(NO_COLOR="1", AGENT_NO_WARM="1", PATH=f"{venv / 'bin'}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin")
    argv = [str(venv / "bin" / "agent"), *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def test_wheel_ships_the_data_files_and_license(wheel: Path) -> None:
    """Runbooks, the annotated example configuration, the obligations table, templates and LICENSE are inside."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("agent/data/obligations.yaml", "agent/data/config/agent.yaml", "agent/data/config/inventory.yaml",
                   "agent/data/config/rules.yaml", "agent/data/runbooks/isolate-host.yaml",
                   "agent/report/templates/report.html.j2", "agent/data/deploy/containment-agent.service"):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_installed_agent_runs_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    """init → check-config → contain --dry-run, all from the installed package, cwd outside the checkout."""
    code = "import agent, agent.paths as p; print(agent.__file__); print(p.shipped_runbooks())"
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", code],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert str(REPO) not in probe.stdout and str(venv) in probe.stdout, probe.stdout
    cfg_dir = tmp_path / "etc"
    done = agent(venv, tmp_path, "init", str(cfg_dir))
    assert done.returncode == 0, done.stderr
    text = (cfg_dir / "agent.yaml").read_text()
    text = re.sub(r"^# database: .*$", f"database: {tmp_path / 'state' / 'agent.db'}", text, flags=re.MULTILINE)
    text = re.sub(r"^# audit_dir: .*$", f"audit_dir: {tmp_path / 'log' / 'audit'}", text, flags=re.MULTILINE)
    text = re.sub(r"^# evidence_dir: .*$", f"evidence_dir: {tmp_path / 'state' / 'evidence'}", text, flags=re.MULTILINE)
    (cfg_dir / "agent.yaml").write_text(text)
    cfg = str(cfg_dir / "agent.yaml")
    done = agent(venv, tmp_path, "check-config", "-c", cfg)
    assert done.returncode == 0 and "configuration is valid" in done.stdout, done.stdout + done.stderr
    assert str(venv) in done.stdout  # the runbooks it checked are the installed ones
    done = agent(venv, tmp_path, "contain", "--host", "web01", "--dry-run", "-c", cfg)
    assert done.returncode == 0 and "Dry run" in done.stdout and "isolate" in done.stdout, done.stdout + done.stderr
    done = agent(venv, tmp_path, "init", str(cfg_dir))
    assert done.returncode == 2 and "not overwriting" in done.stderr


@pytest.fixture
def lab_prefix() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("sshd", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("the practice lab needs root and sshd")
    with claim([f"cwh{i}" if i else "cwh" for i in range(5)], "lab prefixes") as prefix:
        yield prefix


@pytest.mark.root
def test_installed_agent_contains_a_lab_host_and_reports(venv: Path, tmp_path: Path, lab_prefix: str) -> None:
    """lab up → contain (from the lab's management host) → report → release → lab down, all installed."""
    from agent.paths import state_dir

    lab_state = state_dir() / "lab" / lab_prefix  # an installed agent keeps its lab in the state folder
    try:
        done = agent(venv, tmp_path, "lab", "up", "--prefix", lab_prefix, "--json", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        cfg = lab_state / "config" / "agent.yaml"
        assert cfg.exists(), done.stdout
        mgmt = f"{lab_prefix}-mgmt"
        done = agent(venv, tmp_path, "contain", "--host", "victim", "--yes", "--reason", "wheel test", "--json",
                     "-c", str(cfg), netns=mgmt)
        assert done.returncode == 0, done.stdout + done.stderr
        incident = json.loads(done.stdout)["incident"]
        out = tmp_path / "report.html"
        done = agent(venv, tmp_path, "report", "--incident", incident, "--format", "html", "-o", str(out),
                     "-c", str(cfg), netns=mgmt)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "victim" in out.read_text()
        done = agent(venv, tmp_path, "release", "--host", "victim", "--yes", "-c", str(cfg), netns=mgmt)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        done = agent(venv, tmp_path, "lab", "down", "--prefix", lab_prefix, timeout=300)
        shutil.rmtree(lab_state, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
