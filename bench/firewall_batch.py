"""Block 1 and 200 addresses through the firewall connector; batched vs one-at-a-time.

Targets: an SSH CLI simulator on loopback (netmiko's real driver, default ``cisco_ios``) and, when a practice lab
is up (or ``--build-lab``), the lab's ``fw`` router over SSH from ``mgmt`` (``linux`` dialect, real nftables).
Each measurement is what the engine does for one action: validate, open, snapshot, apply, verify, close.
Target from the issue: 200 addresses batched ≤ 3× the time of 1.

    .venv/bin/python bench/firewall_batch.py [--device-type cisco_asa] [--lab cal | --build-lab] [--serial 200]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.firewall import FirewallConnector
from connectors.types import ConnectorContext, Credentials, Secret, Target


def addresses(n: int, start: str = "100.3.0.1") -> list[str]:
    base = ipaddress.ip_address(start)
    return [str(base + i) for i in range(n)]


class Runner:
    """One device reached through the connector; ``block`` is one engine-style action in one session."""

    def __init__(self, target: Target, creds: Credentials, ctx: ConnectorContext,
                 where: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                 extra: dict[str, Any] | None = None) -> None:
        self.conn, self.target, self.creds, self.ctx, self.where = FirewallConnector(), target, creds, ctx, where
        self.extra = extra or {}

    def _action(self, action: str, addrs: list[str]) -> float:
        args = {"addresses": addrs, **self.extra}
        t0 = time.perf_counter()
        self.conn.validate(self.target, action, args)
        with self.where(), self.conn.open(self.target, self.creds, self.ctx) as s:
            snap = self.conn.snapshot(s, action, args)
            self.conn.apply(s, action, args, snap)
            check = self.conn.verify(s, action, args)
        elapsed = time.perf_counter() - t0
        if not check.in_effect:
            raise SystemExit(f"{action} of {len(addrs)} address(es) not in effect: {check.summary}")
        return elapsed

    def block(self, addrs: list[str]) -> float:
        return self._action("block_ip", addrs)

    def unblock(self, addrs: list[str]) -> float:
        return self._action("unblock_ip", addrs)


def measure(name: str, runner: Runner, serial: int) -> None:
    runner.block(addresses(1, "100.9.9.9"))        # warm-up: imports, scaffold creation
    runner.unblock(addresses(1, "100.9.9.9"))
    one = min(runner.block(addresses(1, f"100.4.0.{i}")) for i in (1, 2, 3))
    batch_addrs = addresses(200)
    batched = runner.block(batch_addrs)
    runner.unblock(batch_addrs)
    serial_addrs = addresses(serial, "100.5.0.1")
    t0 = time.perf_counter()
    for a in serial_addrs:
        runner.block([a])
    one_by_one = (time.perf_counter() - t0) * (200 / serial)
    runner.unblock(serial_addrs)
    print(f"{name}:")
    print(f"  block 1 address          : {one * 1000:8.1f} ms  ({one * 1000:.1f} ms/address)")
    print(f"  block 200 batched        : {batched * 1000:8.1f} ms  ({batched * 1000 / 200:.2f} ms/address)")
    print(f"  block 200 one-at-a-time  : {one_by_one * 1000:8.1f} ms  ({one_by_one * 1000 / 200:.1f} ms/address)"
          + ("" if serial == 200 else f"  [extrapolated from {serial}]"))
    verdict = "OK" if batched <= 3 * one else "MISSED"
    print(f"  ratio 200 batched / 1    : {batched / one:6.2f}x  (target <= 3x: {verdict})")
    print(f"  ratio one-at-a-time / batched: {one_by_one / batched:6.1f}x")


def simulator_runner(device_type: str) -> tuple[Runner, Any]:
    from tests.doubles.vendor_cli import SIM_OPTIONS, make_simulator, new_host_key, write_known_hosts

    key = new_host_key()
    sim = make_simulator(device_type, key)
    kh = write_known_hosts(Path(tempfile.mkdtemp(prefix="fwbench-")) / "known_hosts", [(sim.port, key)])
    target = Target(f"sim-{device_type}", "device", "127.0.0.1", "firewall", port=sim.port,
                    options={"device_type": device_type, **SIM_OPTIONS[device_type]})
    creds = Credentials("admin", Secret("s3cret-pw"), extra={"secret": Secret("en-s3cret")})
    return Runner(target, creds, ConnectorContext(known_hosts=str(kh))), sim


@contextlib.contextmanager
def lab_runner(prefix: str | None, build: bool) -> Iterator[Runner | None]:
    if os.geteuid() != 0 or not (prefix or build):
        yield None
        return
    from bench_lab import bench_lab
    with bench_lab(prefix or "cfw", build, "the lab router") as lab:
        if lab is None:
            yield None
            return
        target = Target("fw", "device", lab.hosts["fw"].address, "firewall", port=22,
                        options={"device_type": "linux"})
        creds = Credentials("root", private_key_path=str(lab.agent_key))
        yield Runner(target, creds, ConnectorContext(known_hosts=str(lab.known_hosts)),
                     where=lambda: lab.enter("mgmt"),
                     extra={"allow_private": True, "protected": [f"{lab.management_address}/32"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device-type", default="cisco_ios")
    ap.add_argument("--lab", default=None, help="prefix of a running lab (e.g. cal)")
    ap.add_argument("--build-lab", action="store_true", help="build a lab with prefix cfw for the run")
    ap.add_argument("--serial", type=int, default=200, help="addresses blocked one at a time (extrapolated)")
    opts = ap.parse_args()
    runner, sim = simulator_runner(opts.device_type)
    try:
        measure(f"simulator {opts.device_type} (loopback, netmiko driver)", runner, opts.serial)
        print(f"  simulator counted {sim.sessions} sessions, {sim.saves} saves")
    finally:
        sim.stop()
    lab_prefix = opts.lab or ("cal" if not opts.build_lab else None)
    with lab_runner(lab_prefix, opts.build_lab) as lab:
        if lab is not None:
            measure("lab fw (linux/nftables, from mgmt)", lab, opts.serial)


if __name__ == "__main__":
    main()
