"""The ``workers:`` section of agent.yaml: the broker and which sites' actions go to per-site workers.

Example::

    workers:
      broker: amqp://agent@mq.example.org:5672/containment   # no password in the URL: it is a secret
      broker_password: env:AGENT_BROKER_PASSWORD
      sites: [boston, lyon]   # actions on targets at these sites are queued; others run in this process
      lease: 15               # seconds a worker's claim lasts without a heartbeat (it beats every lease/3)
      wait: 900               # seconds the engine waits for a site to settle an action before reporting it in doubt
      no_worker_after: 30     # seconds a site's queue may have no consumer before the engine stops waiting for it
      audit: writer           # writer: this process owns the deployment's audit chain (audit_dir + signing key)
                              # and appends the workers' records to it; outbox: its records go to the writer

Kept apart from :mod:`agent.config` and free of Celery imports: every command reads the settings, few send work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from agent.secrets import SecretRef, parse_ref
from agent.yamlsrc import Node

__all__ = ["AUDIT_ROLES", "SITE_NAME", "WorkersConfig", "left_to_workers", "parse_workers", "queue_for"]

SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIELDS = {"broker", "broker_password", "sites", "lease", "wait", "no_worker_after", "audit"}
AUDIT_ROLES = ("writer", "outbox")


def queue_for(site: str) -> str:
    """The RabbitMQ queue (and routing key) of ``site``'s workers."""
    return f"agent.site.{site}"


@dataclass(frozen=True)
class WorkersConfig:
    broker: str  # without the password
    password: SecretRef | None = None
    sites: tuple[str, ...] = ()
    lease: float = 15.0
    wait: float = 900.0
    #: seconds a site's queue may go without any consumer (no worker of the site connected to the broker) before
    #: the engine stops waiting for that site: unclaimed actions fail with nothing sent, held ones are in doubt
    #: (agent/workers/presence.py); a worker restarting or a broker restart stays well inside it
    no_worker_after: float = 30.0
    audit: str | None = None  # writer | outbox; None: writer, except `agent worker` (always outbox)

    def routes(self, site: str | None) -> bool:
        """Does an action on a target at ``site`` go to that site's workers?"""
        return site is not None and site in self.sites

    def broker_url(self) -> str:
        """The URL with the password read from its reference now (never stored, never logged)."""
        if self.password is None:
            return self.broker
        parts = urlsplit(self.broker)
        user = parts.username or "guest"
        host = parts.hostname or "localhost"
        netloc = f"{quote(user, safe='')}:{quote(self.password.resolve().reveal(), safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_workers(node: Node | None, base: Path) -> WorkersConfig | None:
    """Read ``workers:``; None when the section is absent (everything runs in this process)."""
    if node is None:
        return None
    node.mapping(allowed=_FIELDS, required={"broker"})
    broker_node = node.child("broker")
    broker = broker_node.str_()
    parts = urlsplit(broker)
    if parts.scheme not in ("amqp", "amqps", "pyamqp"):
        raise broker_node.error(f"workers.broker: {parts.scheme or broker!r} is not an AMQP URL "
                                "(amqp://user@host:5672/vhost)")
    if parts.password is not None:
        raise broker_node.error("workers.broker: the password must not be written in the URL; "
                                "use broker_password: env:NAME or file:PATH")
    password = None
    pw_node = node.get("broker_password")
    if pw_node is not None:
        password = parse_ref(pw_node.str_(), base)
        if password is None:
            raise pw_node.error("workers.broker_password: write env:NAME or file:PATH (never the password itself)")
    sites_node = node.get("sites")
    sites = tuple(sites_node.str_list(pattern=SITE_NAME, what="site name")) if sites_node is not None else ()
    lease_node, wait_node = node.get("lease"), node.get("wait")
    lease = lease_node.float_(minimum=1.0) if lease_node is not None else 15.0
    wait = wait_node.float_(minimum=1.0) if wait_node is not None else 900.0
    absent_node = node.get("no_worker_after")
    no_worker_after = absent_node.float_(minimum=1.0) if absent_node is not None else 30.0
    audit_node = node.get("audit")
    audit = None
    if audit_node is not None:
        audit = audit_node.str_()
        if audit not in AUDIT_ROLES:
            raise audit_node.error(f"workers.audit: {audit!r} is not one of {', '.join(AUDIT_ROLES)}")
    return WorkersConfig(broker=broker, password=password, sites=sites, lease=lease, wait=wait,
                         no_worker_after=no_worker_after, audit=audit)


def left_to_workers(cfg: WorkersConfig | None, site: str | None, credentials: object) -> bool:
    """Is an action at ``site`` read and settled by that site's workers only? Yes when it is routed there and
    this process holds no credentials for its target (the central daemon need not): re-verifying it here could
    only fail ("no credentials"), so the daemon asks the site's workers to read it (agent/drift.py); an in-doubt
    re-check at any routed site goes to its workers (agent/workers/settle.py)."""
    return cfg is not None and cfg.routes(site) and credentials is None
