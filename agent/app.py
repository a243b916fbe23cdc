"""Wiring: build settings, inventory, store, audit log, registry and engine for one command or the daemon.

Kept apart from the CLI so the daemon, tests and the CLI assemble the same objects the same way, and so heavy
imports (SQLAlchemy, the audit writer, connector libraries) happen only when a command actually needs them.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Settings, load_settings

if TYPE_CHECKING:  # imported where used: a command pays only for the parts it touches (start-up budget)
    from agent.audit import AuditLog
    from agent.audit.drain import Drainer
    from agent.audit.outbox import OutboxAudit
    from agent.engine import Engine
    from agent.inventory import Inventory
    from agent.plan import Planner
    from agent.registry import Registry
    from agent.store import Store
    from connectors.types import ConnectorContext

__all__ = ["App", "default_actor", "new_incident_id"]


def default_actor() -> str:
    """Who is acting: ``user@host`` of the technician (sudo's original user when present)."""
    import os
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def new_incident_id(now: datetime | None = None) -> str:
    """``INC-20261123-093012-4f2a``: sortable, readable over the phone, unique without a counter."""
    import secrets
    now = now or datetime.now(UTC)
    return f"INC-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class App:
    config_path: Path | None = None
    actor: str = field(default_factory=default_actor)
    trust_host_key: bool = False
    #: "outbox": this process's audit records go to the deployment's chain writer through the journal database
    #: (`agent worker` always); None: as ``workers.audit`` says (default: this process writes the chain)
    audit_role: str | None = None

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def inventory(self) -> Inventory:
        from agent.inventory import load_inventory  # `agent status` never reads the inventory
        return load_inventory(self.settings.inventory)

    @cached_property
    def store(self) -> Store:
        from agent.store import Store
        return Store(self.settings.database_url())

    @property
    def audit_outbox(self) -> bool:
        """Does this process queue its audit records for the deployment's one chain (docs/workers.md) instead of
        writing an audit directory?"""
        if self.audit_role is not None:
            return self.audit_role == "outbox"
        workers = self.settings.workers
        return workers is not None and workers.audit == "outbox"

    @cached_property
    def audit(self) -> AuditLog | OutboxAudit:
        if self.audit_outbox:
            from agent.audit.outbox import OutboxAudit
            return OutboxAudit(self.store, actor=self.actor, evidence_dir=self.settings.evidence_dir)
        from agent.audit import AuditLog
        key = self.settings.audit_signing_key
        log = AuditLog(self.settings.audit_dir, signing_key=key if key and key.exists() else None, actor=self.actor)
        if self.settings.workers is not None and "://" in self.settings.database:
            from agent.audit.drain import Drainer
            self.__dict__["drainer"] = Drainer(self.store, log, evidence_dir=self.settings.evidence_dir)
        return log

    @cached_property
    def drainer(self) -> Drainer | None:
        """This process writes the deployment's chain and site workers queue records for it: their drain (made
        with the audit log, so the dispatcher's drain on each settled action stores their evidence here too)."""
        if self.audit_outbox or self.settings.workers is None or "://" not in self.settings.database:
            return None
        self.audit  # noqa: B018 - makes the drainer
        return self.__dict__.get("drainer")

    def drain_queued(self, timeout: float = 10.0) -> bool:
        """Append what the site workers queued to this deployment's chain now (a report, an export, an anchor or
        a verification must see every record); True when nothing is left waiting. A no-op where this process
        does not write the chain."""
        try:
            return self.drainer is None or self.drainer.drain_through(timeout=timeout)
        except Exception:  # noqa: BLE001 - the journal database is away: the records wait there, nothing is lost
            return False

    @cached_property
    def registry(self) -> Registry:
        from agent.registry import Registry
        return Registry()

    @cached_property
    def ctx(self) -> ConnectorContext:
        from agent.plan import connector_context
        return connector_context(self.settings, self.inventory, trust_host_key=self.trust_host_key)

    def planner(self) -> Planner:
        from agent.plan import Planner
        return Planner(self.settings, self.inventory, self.registry, self.store, self.ctx)

    def engine(self, on_event: Any = None) -> Engine:
        from agent.engine import Engine
        return Engine(self.settings, self.inventory, self.store, self.audit, self.registry, self.ctx,
                      actor=self.actor, evidence_sink=self._store_evidence, on_event=on_event)

    def _store_evidence(self, incident: str, target: str, files: dict[str, Any],
                        errors: dict[str, str] | None = None) -> list[dict[str, Any]]:
        from agent.evidence import store_evidence
        items = store_evidence(self.settings.evidence_dir, incident, target, files, self.audit,
                               collected_by=self.actor, source=self._evidence_source(target),
                               failures=errors, collector_host=socket.gethostname())
        return [item.to_dict() if hasattr(item, "to_dict") else dict(item.__dict__) for item in items]

    def _evidence_source(self, target: str) -> str:
        """Chain of custody: where the data came from (connector, target, address), not where we stored it."""
        for section in (self.inventory.hosts, self.inventory.devices, self.inventory.directories):
            entry = section.get(target)
            if entry is not None:
                return f"{entry.connector}://{entry.name} ({entry.address})"
        return target

    def close(self) -> None:
        if "registry" in self.__dict__:
            self.registry.close()
        if "audit" in self.__dict__ and self.drainer is not None:
            # a run's records queued by the site workers are in the chain before the command exits, so `agent
            # audit verify`, the report and an export right after it are complete (a stuck writer elsewhere:
            # they stay queued, durably, for the next drain)
            self.drainer.stop()
            try:
                self.drainer.drain_through(timeout=10)
            except Exception as exc:  # noqa: BLE001 - the journal is away: nothing is lost, the rows wait
                import sys
                print(f"audit: the site workers' records are not in the chain yet ({type(exc).__name__}); they "
                      "stay queued in the journal database for the next drain", file=sys.stderr)
        for name in ("audit", "store"):
            if name in self.__dict__:
                self.__dict__[name].close()
