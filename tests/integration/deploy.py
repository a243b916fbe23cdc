"""Scaffolding of the distributed deployments (issue 19) shared by the integration tests and the bench: a site lab
with its private PostgreSQL and RabbitMQ, one configuration per agent process, the processes themselves, and
reads of the journal, the audit chain and the hosts that never go through the agent.

Why one module: tests/integration/test_site_workers.py, test_site_directory.py, test_outbreak_acceptance.py (with
outbreak_deploy.py) and bench/scaleout_sites.py each carried their own copy of the configuration writer, the
worker and daemon starters, the stop-everything teardown and the journal reader (the ``duplicates`` tool's D2, D5,
D6); a fix to one copy (a process left running, a credential the central should not hold) did not reach the
others. Everything here is what those copies agreed on; what a test proves stays in the test.

Rules every deployment here keeps (docs/workers.md):
- the central processes (CLI, daemons) hold **no credentials** for anything placed at a site — the site's workers
  alone do, and only they reach it — so every change that lands proves it went through a worker of the site;
- a worker's configuration has no audit signing key (``agent worker`` refuses one: its records reach the
  deployment's one chain through PostgreSQL); its ``audit_dir`` is its own folder's, so a test can show that
  nothing was written there;
- every process runs inside a lab host's network namespace, logs to ``ROOT/NAME.log`` and is stopped by its PID
  (never by name: other sessions on the machine run agents too).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from agent.lab import Lab, labconfig
from agent.lab.topology import MGMT_ADDRESS, worker_host
from agent.store import Action, Transition
from tests.integration.pg_server import PgServer, private_postgres_server
from tests.integration.rabbit_server import Broker, private_rabbitmq

__all__ = [
    "AGENT",
    "Processes",
    "Scale",
    "actions",
    "agent_env",
    "audit_records",
    "central_inventory",
    "chain_anchor",
    "create_database",
    "daemon_health",
    "daemon_section",
    "isolated",
    "lab_services",
    "owner_pid",
    "query",
    "site_lab",
    "transitions",
    "verify_chain",
    "wait_for",
    "wait_for_daemons",
    "write_config",
]

REPO = Path(__file__).resolve().parents[2]
AGENT = str(REPO / ".venv" / "bin" / "agent")
T = TypeVar("T")


def agent_env(**extra: str) -> dict[str, str]:
    """The environment of every agent process: the broker password the configurations name
    (``env:AGENT_BROKER_PASSWORD``), no colour, no warm-up, and no failpoint but those in ``extra`` — one set in
    the test's own environment must not fire in every process it starts."""
    env = {**os.environ, "AGENT_BROKER_PASSWORD": "guest", "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    env.pop("AGENT_FAILPOINTS", None)
    env.update(extra)
    return env


# -- the lab and its brokers ---------------------------------------------------------------------------------------
@dataclass
class Scale:
    """A site lab (``agent lab up --hosts N --sites K``) with a private PostgreSQL server and RabbitMQ node on
    its management host (10.77.0.10, inside the lab: the workers reach them from their LAN legs)."""

    lab: Lab
    pg: PgServer
    broker: Broker
    mgmt: str  # the management host's namespace, where the central CLI and daemons run
    dbs: list[str] = field(default_factory=list)  # databases made on the server (tests name each anew)

    @property
    def broker_url(self) -> str:
        """The broker URL as configurations carry it: the password comes from the environment (agent_env)."""
        return self.broker.url.replace("guest:guest@", "guest@")


@contextmanager
def lab_services(lab: Lab, pg_prefix: str) -> Iterator[Scale]:
    """PostgreSQL and RabbitMQ, private (own data directories), listening on the management address of ``lab``
    (which must be up); stopped by PID when the block ends."""
    mgmt = lab.hosts["mgmt"].namespace
    with private_postgres_server(pg_prefix, netns=mgmt, host=MGMT_ADDRESS) as pg, \
            private_rabbitmq(netns=mgmt, host=MGMT_ADDRESS) as broker:
        yield Scale(lab, pg, broker, mgmt)


@contextmanager
def site_lab(claim: str, *, hosts: int, sites: int, pg_prefix: str,
             then: Callable[[Lab, ExitStack], None] | None = None) -> Iterator[Scale]:
    """For a test: skip unless the lab can be built here, claim a lab prefix (``claim``, ``claim2``…), build the
    lab afresh, run ``then(lab, stack)`` (more set-up torn down before the lab: a DC, a name only one site
    knows), start the brokers; tear everything down in reverse order."""
    from tests.integration.conftest import _skip_unless_lab_possible, claim_prefix
    _skip_unless_lab_possible()
    with ExitStack() as stack:
        prefix = stack.enter_context(claim_prefix(claim))
        lab = Lab(prefix=prefix, fleet=hosts, sites=sites)
        lab.up(rebuild=True)
        stack.callback(lab.down)
        if then is not None:
            then(lab, stack)
        yield stack.enter_context(lab_services(lab, pg_prefix))


def create_database(lab: Lab, server_url: str, name: str) -> str:
    """A new, empty database ``name`` on the lab's PostgreSQL (created from mgmt, where it listens); its URL."""
    with lab.enter("mgmt"):
        engine = create_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


# -- configurations ------------------------------------------------------------------------------------------------
def central_inventory(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """``inventory`` without the credentials of anything placed at a site (hosts, devices, directories naming a
    ``site``): what a central process holds. Unplaced entries keep theirs."""
    inv = copy.deepcopy(dict(inventory))
    for kind in ("hosts", "devices", "directories"):
        for entry in inv.get(kind, {}).values():
            if entry.get("site"):
                entry.pop("credentials", None)
    return inv


def write_config(lab: Lab, folder: Path, inventory: Mapping[str, Any] | str, *, database: str, central: bool,
                 workers: Mapping[str, Any] | None = None, audit_dir: Path | None = None,
                 signing_key: Path | None = None, settings: Mapping[str, Any] | None = None,
                 extra: str = "") -> Path:
    """``folder``/agent.yaml + inventory.yaml of one process; returns the agent.yaml path.

    ``inventory``: the lab's (labconfig.inventory), adapted by the caller, or its YAML text; a central process
    gets it through :func:`central_inventory` (a text is the caller's to strip). ``workers``: the ``workers:``
    section (None: a single-machine configuration). ``audit_dir``: the chain this process writes (default its
    own folder's; processes sharing the deployment's one chain name the central's). ``signing_key``: default the
    lab's; a worker gets none. ``settings``: top-level keys replaced; ``extra``: YAML text appended."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(inventory, str):
        inv_text = inventory
    else:
        inv_text = labconfig.to_yaml(central_inventory(inventory) if central else inventory)
    (folder / "inventory.yaml").write_text(inv_text)
    conf: dict[str, Any] = labconfig.agent_settings(lab.repo, folder, lab.state_dir)
    conf.update(database=database, audit_dir=str(audit_dir or folder / "audit"), evidence_dir=str(folder / "evidence"))
    if signing_key is not None:
        conf["audit_signing_key"] = str(signing_key)
    if workers is not None:
        conf["workers"] = {"broker_password": "env:AGENT_BROKER_PASSWORD", **workers}
        if not central:
            del conf["audit_signing_key"]
    conf.update(settings or {})
    (folder / "agent.yaml").write_text(labconfig.to_yaml(conf) + extra)
    return folder / "agent.yaml"


def daemon_section(lab: Lab, lines: str = "") -> tuple[str, str]:
    """A ``daemon:`` section listening on a free port of mgmt's loopback, sweeping every 2 s, ``lines`` (indented
    two spaces) added under it; and the daemon's base URL (reach it from mgmt: ``lab.enter("mgmt")``)."""
    with lab.enter("mgmt"), socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    return f"daemon:\n  listen: \"127.0.0.1:{port}\"\n  sweep_interval: 2s\n{lines}", f"http://127.0.0.1:{port}"


# -- processes -----------------------------------------------------------------------------------------------------
class Processes:
    """The agent processes one test (or bench phase) started in ``lab``, by name; logs in ``root``."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: list[subprocess.Popen[str]] = []  # one-shot commands started with background()

    def env(self, **extra: str) -> dict[str, str]:
        return agent_env(**extra)

    def spawn(self, name: str, on: str, argv: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
        """``agent ARGV`` in lab host ``on``'s namespace, output to ROOT/NAME.log, ``env`` added (failpoints)."""
        running = self.procs.get(name)
        assert running is None or running.poll() is not None, f"{name} is already running"
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(["ip", "netns", "exec", self.lab.hosts[on].namespace, AGENT, *argv], stdout=log,
                                stderr=subprocess.STDOUT, env=self.env(**env), stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, site: str, config: Path, *, slots: int, **env: str
                     ) -> subprocess.Popen[bytes]:
        """``agent worker --site SITE`` on the site's worker host: the only lab host that reaches the site."""
        return self.spawn(name, worker_host(site), ["worker", "--site", site, "--slots", str(slots),
                                                    "--config", str(config)], **env)

    def start_daemon(self, name: str, config: Path, **env: str) -> subprocess.Popen[bytes]:
        """``agent daemon`` on mgmt (see :func:`daemon_section` for its listen address)."""
        return self.spawn(name, "mgmt", ["daemon", "--config", str(config)], **env)

    def run(self, on: str, argv: Sequence[str], *, timeout: float = 240, **env: str
            ) -> subprocess.CompletedProcess[str]:
        """``agent ARGV`` in lab host ``on``'s namespace, to completion (its exit code is the caller's to judge)."""
        return subprocess.run(["ip", "netns", "exec", self.lab.hosts[on].namespace, AGENT, *argv],
                              capture_output=True, text=True, timeout=timeout, env=self.env(**env),
                              stdin=subprocess.DEVNULL, check=False)

    def background(self, on: str, argv: Sequence[str], **env: str) -> subprocess.Popen[str]:
        """``agent ARGV`` in lab host ``on``'s namespace, left running while the test acts around it (kills a
        worker, restarts a broker); output piped as text — ``communicate()`` finishes it. Killed by
        :meth:`stop_all` if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.lab.hosts[on].namespace, AGENT, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**env),
                                stdin=subprocess.DEVNULL)
        self.commands.append(proc)
        return proc

    def log(self, name: str, tail: int | None = None) -> str:
        text_ = (self.root / f"{name}.log").read_text(errors="replace")
        return text_ if tail is None else text_[-tail:]

    def stop_all(self, timeout: float = 60) -> None:
        """SIGKILL the one-shot commands still running (the test has failed: nothing of theirs is awaited); SIGTERM
        every process still running (a clean stop: an audit writer signs its closing checkpoint), SIGKILL what
        has not ended ``timeout`` s later."""
        for command in self.commands:
            if command.poll() is None:
                command.kill()
                command.communicate(timeout=30)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def daemon_health(lab: Lab, url: str) -> str:
    """``leader`` / ``follower`` from a daemon's /healthz; "" while it does not answer."""
    import httpx
    try:
        with lab.enter("mgmt"):
            return str(httpx.get(url + "/healthz", timeout=3).json()["scheduler"])
    except (httpx.HTTPError, ValueError, KeyError):
        return ""


def wait_for_daemons(procs: Processes, urls: Mapping[str, str], timeout: float = 90) -> None:
    """Each daemon (name -> base URL) answers /healthz — one that dies fails with its log — and then exactly
    one of them leads the scheduler."""
    for name, url in urls.items():
        def answers_or_died(url: str = url, name: str = name) -> bool:
            return daemon_health(procs.lab, url) != "" or procs.procs[name].poll() is not None
        wait_for(answers_or_died, timeout, f"{name} to answer")
        assert procs.procs[name].poll() is None, procs.log(name, 3000)
    def one_leader() -> bool:
        states = [daemon_health(procs.lab, u) for u in urls.values()]
        return states.count("leader") == 1 and "" not in states
    wait_for(one_leader, 30, "one leader")


# -- reads that do not go through the agent ------------------------------------------------------------------------
def query(lab: Lab, url: str, fn: Callable[[Session], T]) -> T:
    """``fn(session)`` on the journal at ``url``, from mgmt (where PostgreSQL listens); a fresh connection each
    time (no pool: the server may be stopped between calls)."""
    with lab.enter("mgmt"):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with Session(engine) as s:
                return fn(s)
        finally:
            engine.dispose()


def actions(lab: Lab, url: str) -> list[Action]:
    return query(lab, url, lambda s: list(s.scalars(select(Action).order_by(Action.seq))))


def transitions(lab: Lab, url: str) -> list[Transition]:
    return query(lab, url, lambda s: list(s.scalars(select(Transition).order_by(Transition.id))))


def isolated(lab: Lab, hosts: Iterable[str]) -> set[str]:
    """The hosts whose nftables ruleset has any table, read on each host itself."""
    names = list(hosts)
    with ThreadPoolExecutor(max_workers=8) as pool:
        rulesets = list(pool.map(lambda h: lab.exec(h, ["nft", "list", "ruleset"]).stdout, names))
    return {h for h, rs in zip(names, rulesets, strict=True) if "table" in rs}


def audit_records(directory: Path) -> list[dict[str, Any]]:
    """Every record of the audit chain in ``directory``, in order."""
    return [json.loads(line) for p in sorted(directory.glob("*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def chain_anchor(directory: Path, public_key: Path) -> tuple[str, str]:
    """What counsel holds for the chain in ``directory``: the key's fingerprint and its last signed head
    (``SEQ:HASH`` of the latest checkpoint), to pass to :func:`verify_chain`."""
    from agent.audit.keys import fingerprint, load_public_key, public_raw
    head = next(r for r in reversed(audit_records(directory)) if r["event"] == "audit.checkpoint")
    return fingerprint(public_raw(load_public_key(public_key))), f"{head['covers_seq']}:{head['covers_hash']}"


def verify_chain(directory: Path, public_key: Path, fingerprint: str, anchor: str | Path
                 ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``agent audit verify`` of the chain in ``directory`` as counsel would run it: the deployment's public key,
    the fingerprint received beforehand (``--expect-key``) and a trust anchor (a signed head ``SEQ:HASH`` or an
    ``agent audit anchor --json`` file); and the outbox ids the chain holds more than once (a queued record must
    be chained exactly once, however many writers drained it). The exit code is the caller's to judge."""
    res = subprocess.run([AGENT, "audit", "verify", "--dir", str(directory), "--public-key", str(public_key),
                          "--expect-key", fingerprint, "--anchor", str(anchor)],
                         capture_output=True, text=True, timeout=600, check=False)
    ids = [str(r["outbox_id"]) for r in audit_records(directory) if "outbox_id" in r]
    return res, sorted({i for i in ids if ids.count(i) > 1})


def owner_pid(owner: str) -> int:
    """The PID in a journal owner (``host:pid:…``); -1 when it names none."""
    return int(owner.split(":")[1]) if owner.count(":") >= 1 else -1


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5,
             tolerate: bool = False) -> None:
    """Poll ``check`` until true; AssertionError naming ``what`` after ``timeout`` s. ``tolerate``: an exception
    from ``check`` counts as "not yet" (no schema yet, PostgreSQL restarting) instead of failing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            if not tolerate:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
