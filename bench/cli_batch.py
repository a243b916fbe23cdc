"""The command a responder runs, whole process: `agent block-ip` with 200 addresses vs 1, `agent disable-account`
with 100 accounts vs 1 — one batched action per device / directory (issue 17, findings 5 and 6).

- **block-ip** on the practice lab's Linux router (``fw``, real nftables over SSH), run from the management host
  as the CLI tests do. Target: 200 addresses ≤ 2× one address.
- **block-ip** on each vendor CLI simulator (tests/doubles/vendor_cli: a real SSH server on loopback driven by
  netmiko's own drivers; ASA, IOS, IOS-XE, FortiGate, PAN-OS, Junos, MikroTik), both directions blocked where the
  inventory names the outbound ACL/filter. Same target: ≤ 2×.
- **disable-account** on a real Samba AD DC started with ``ldb:nosync = true`` (as Samba's selftest runs its
  DCs), its own namespaces. Target: 100 accounts ≤ 8× one account. ``--fsync`` adds the DC as provisioned
  (every directory write flushed to this VM's disk) beside it, with that DC's measured cost of one modify.

Every timed run is a fresh ``agent`` process (Python start, config, journal, audit, connector, session, the
change, its read-back); the undo after it is timed too and printed, never folded into the ratio.

    .venv/bin/python bench/cli_batch.py [--lab PREFIX | --build-lab] [--runs 3] [--addresses 200]
                                        [--accounts 100] [--fsync] [--skip-fw] [--skip-sims] [--skip-ad]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.lab import netns

REPO = Path(__file__).resolve().parents[1]
AGENT = str(REPO / ".venv" / "bin" / "agent")
FW_TARGET, AD_TARGET = 2.0, 8.0
AGENT_PW = "Bench-Agent-Pass-7x!"


def cli(ns: str, cfg: Path, *args: str) -> float:
    """Seconds for one whole ``agent`` process run from namespace ``ns``; raises with its output on failure."""
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1"}
    start = time.perf_counter()
    res = subprocess.run(["ip", "netns", "exec", ns, AGENT, *args], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"agent {' '.join(args[:3])} ... exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return elapsed


def addresses(n: int) -> list[str]:
    return [f"100.66.{i // 250}.{i % 250 + 1}" for i in range(n)]


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _line(label: str, one: list[float], many: list[float], undo1: list[float], undon: list[float], n: int,
          target: float) -> None:
    r = _median(many) / _median(one)
    print(f"  1       : {_median(one) * 1000:7.0f} ms   (undo {_median(undo1) * 1000:6.0f} ms)")
    print(f"  {n:<8}: {_median(many) * 1000:7.0f} ms   (undo {_median(undon) * 1000:6.0f} ms)")
    print(f"  ratio {n}:1 = {r:.2f}x  target ≤ {target:.0f}x: {'met' if r <= target else 'MISSED'}   [{label}]")


# -- block-ip on the lab router ---------------------------------------------------------------------------------
@contextmanager
def lab_config(prefix: str | None, build: bool) -> Iterator[tuple[str, Path] | None]:
    from bench_lab import bench_lab

    from tests.integration.engine.runs import private_config  # the lab tests' own private copy
    with bench_lab(prefix or "cjb", build, "block-ip") as lab:
        if lab is None:
            yield None
            return
        lab.write_config()
        with tempfile.TemporaryDirectory() as tmp:
            yield f"{lab.prefix}-mgmt", private_config(lab, Path(tmp))


def bench_fw(ns: str, cfg: Path, n: int, runs: int) -> None:
    many = addresses(n)
    one = ["100.67.0.1"]
    flags = ("--allow-private", "--yes", "--reason", "bench")
    cli(ns, cfg, "block-ip", *one, *flags)  # warm-up: page cache, the router's nft set created once
    cli(ns, cfg, "unblock-ip", *one, "--yes")
    t1, tn, u1, un = [], [], [], []
    for _ in range(runs):  # interleaved: a slow spell of the machine hits both alike
        t1.append(cli(ns, cfg, "block-ip", *one, *flags))
        u1.append(cli(ns, cfg, "unblock-ip", *one, "--yes"))
        tn.append(cli(ns, cfg, "block-ip", *many, *flags))
        un.append(cli(ns, cfg, "unblock-ip", *many, "--yes"))
    print(f"\nagent block-ip, whole process, lab router (linux/nftables over SSH), medians of {runs} runs")
    _line("block-ip", t1, tn, u1, un, n, FW_TARGET)


# -- block-ip on the vendor simulators --------------------------------------------------------------------------
SIM_TYPES = ("cisco_asa", "cisco_ios", "cisco_xe", "fortinet", "paloalto_panos", "juniper_junos", "mikrotik_routeros")


def bench_sims(n: int, runs: int, only: list[str] | None = None) -> None:
    """The same whole-process comparison against each simulator (the agent CLI is a subprocess; the simulator
    answers from a thread of this process, so both share the machine like a small appliance would not)."""
    from tests.doubles.vendor_cli import make_simulator, new_host_key
    from tests.integration.firewall.cli_env import SimCli
    key = new_host_key()
    many, one = addresses(n), ["100.67.0.1"]
    flags = ("--allow-private", "--yes", "--reason", "bench")
    print(f"\nagent block-ip, whole process, vendor CLI simulators (loopback SSH, netmiko drivers), "
          f"medians of {runs} runs")
    for device_type in [t for t in SIM_TYPES if not only or t in only]:
        sim = make_simulator(device_type, key)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                run = SimCli(Path(tmp), key, {"edge": (device_type, sim)})

                def timed(*args: str, run: Any = run) -> float:
                    start = time.perf_counter()
                    res = run(*args)
                    if res.returncode != 0:
                        raise RuntimeError(f"agent {' '.join(args[:2])} ... exited {res.returncode}:\n"
                                           f"{res.stdout}\n{res.stderr}")
                    return time.perf_counter() - start

                timed("block-ip", *one, *flags)   # warm-up: scaffold created once, page cache
                timed("unblock-ip", *one, "--yes")
                t1, tn, u1, un = [], [], [], []
                for _ in range(runs):
                    t1.append(timed("block-ip", *one, *flags))
                    u1.append(timed("unblock-ip", *one, "--yes"))
                    tn.append(timed("block-ip", *many, *flags))
                    un.append(timed("unblock-ip", *many, "--yes"))
                print(f" {device_type}")
                _line(f"block-ip {device_type}", t1, tn, u1, un, n, FW_TARGET)
        finally:
            sim.stop()


# -- disable-account on a Samba DC ------------------------------------------------------------------------------
@contextmanager
def dc_config(nosync: bool, n: int) -> Iterator[tuple[str, Path, list[str], float]]:
    """A DC with ``n + 1`` bench accounts and an agent configuration that reaches it from ``adc-cl``."""
    from tests.integration.ad.helpers import private_dc  # the AD tests' own DC set-up
    with private_dc("adc", "10.79.201", password=AGENT_PW, nosync=nosync) as env:
        dc = env.dc
        names = [f"cb{i:03d}" for i in range(n + 1)]
        for name in names:
            dc.create_user(name, f"Pw-{name}-9a!")
        with tempfile.TemporaryDirectory() as tmp:
            pw = Path(tmp) / "pw"
            pw.write_text(AGENT_PW)
            pw.chmod(0o600)
            (Path(tmp) / "inventory.yaml").write_text(
                f"management:\n  addresses: [{env.client_address}]\n"
                f"directories:\n  bench-ad:\n    address: {dc.address}\n"
                f"    options: {{base_dn: '{dc.base_dn}', server_name: '{dc.server_name}', "
                f"ca_file: '{dc.ca_file}', port: 636}}\n"
                f"    credentials: {{username: ir-agent@lab.test, password: 'file:{pw}'}}\n")
            (Path(tmp) / "runbooks").mkdir()
            for book in ("disable-account.yaml", "enable-account.yaml"):
                shutil.copy(REPO / "agent" / "data" / "runbooks" / book, Path(tmp) / "runbooks" / book)
            (Path(tmp) / "agent.yaml").write_text(
                "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: agent.db\naudit_dir: audit\n"
                "evidence_dir: evidence\n")
            modify_ms = _modify_cost(dc, names[-1])
            yield env.client_ns, Path(tmp) / "agent.yaml", names, modify_ms


def _modify_cost(dc: Any, name: str, rounds: int = 10) -> float:
    """One userAccountControl modify on a bound connection, one at a time: the DC's own floor per write."""
    import ldap3

    from connectors.active_directory import ActiveDirectoryConnector
    from connectors.types import ConnectorContext, Credentials, Secret, Target
    target = Target("bench-ad", "account", dc.address, "active_directory",
                    options={"base_dn": dc.base_dn, "server_name": dc.server_name,
                             "ca_file": str(dc.ca_file)})
    conn = ActiveDirectoryConnector()
    with netns.enter("adc-cl"), conn.open(target, Credentials("ir-agent@lab.test", Secret(AGENT_PW)),
                                          ConnectorContext(connect_timeout=3.0)) as s:
        dn = f"CN={name},CN=Users,{dc.base_dn}"
        start = time.perf_counter()
        for i in range(rounds):
            s.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(0x200 | (2 if i % 2 == 0 else 0))])]})
        cost = (time.perf_counter() - start) / rounds * 1000
    conn.close()
    return cost


def bench_ad(nosync: bool, n: int, runs: int) -> None:
    label = "DC with ldb:nosync = true" if nosync else "DC as provisioned (fsync per write)"
    with dc_config(nosync, n) as (ns, cfg, names, modify_ms):
        one, many = names[:1], names[1:n + 1]
        flags = ("--yes", "--reason", "bench")
        cli(ns, cfg, "disable-account", names[-1], *flags)  # warm-up: first bind, page cache
        cli(ns, cfg, "enable-account", names[-1], "--yes")
        t1, tn, u1, un = [], [], [], []
        for _ in range(runs):
            t1.append(cli(ns, cfg, "disable-account", *one, *flags))
            u1.append(cli(ns, cfg, "enable-account", *one, "--yes"))
            tn.append(cli(ns, cfg, "disable-account", *many, *flags))
            un.append(cli(ns, cfg, "enable-account", *many, "--yes"))
    print(f"\nagent disable-account, whole process, {label}, medians of {runs} runs "
          f"(the DC's own modify: {modify_ms:.1f} ms each, one at a time)")
    _line(label, t1, tn, u1, un, n, AD_TARGET)
    if not nosync:
        floor = 2 * n * modify_ms  # disable_account + expire_sessions write each account once
        print(f"  fsync floor: {2 * n} directory writes x {modify_ms:.1f} ms = {floor:.0f} ms before any agent work")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--lab", default=None, help="prefix of a running practice lab (default: cjb)")
    ap.add_argument("--build-lab", action="store_true", help="build the lab for the run (and take it down)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--addresses", type=int, default=200)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--fsync", action="store_true", help="also measure a DC that fsyncs every write")
    ap.add_argument("--skip-fw", action="store_true")
    ap.add_argument("--skip-ad", action="store_true")
    ap.add_argument("--skip-sims", action="store_true")
    ap.add_argument("--sim", action="append", choices=SIM_TYPES, help="only these simulators (repeatable)")
    opts = ap.parse_args()
    if not opts.skip_sims:
        bench_sims(opts.addresses, opts.runs, opts.sim)   # loopback only: no namespaces, no root
    if os.geteuid() != 0:
        print("cli_batch: lab router and DC skipped (needs root: network namespaces)")
        return 0
    if not opts.skip_fw:
        with lab_config(opts.lab, opts.build_lab) as found:
            if found is not None:
                bench_fw(*found, opts.addresses, opts.runs)
    if not opts.skip_ad:
        if shutil.which("samba", path=netns.SBIN_PATH) is None:
            print("disable-account skipped: samba is not installed (scripts/install-system.sh)")
            return 0
        bench_ad(True, opts.accounts, opts.runs)
        if opts.fsync:
            bench_ad(False, opts.accounts, opts.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
