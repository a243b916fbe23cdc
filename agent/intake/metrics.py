"""Prometheus metrics of the daemon (``GET /metrics``), on a registry per daemon instance.

Why a private registry: tests start several daemons in one process; the global default registry would refuse
the second set of metric names. Action counts by state are read from the journal at scrape time, so they are
true after a restart too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ActionStates(Collector):
    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select

        from agent.store import Action, Approval
        family = GaugeMetricFamily("agent_actions", "journaled actions by kind and state", labels=["kind", "state"])
        approvals = GaugeMetricFamily("agent_approvals", "approval requests by status", labels=["status"])
        with self.store.session() as s:
            for kind, state, count in s.execute(select(Action.kind, Action.state, func.count())
                                                .group_by(Action.kind, Action.state)):
                family.add_metric([kind, state], count)
            for status, count in s.execute(select(Approval.status, func.count()).group_by(Approval.status)):
                approvals.add_metric([status], count)
        yield family
        yield approvals


class Metrics:
    def __init__(self, store: Any = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("agent_alerts_received", "alerts accepted and stored", ["source"], registry=r)
        self.deduped = Counter("agent_alerts_deduped", "alerts that joined an existing incident", ["source"],
                               registry=r)
        self.rejected = Counter("agent_alerts_rejected", "requests refused (never acted on)", ["source", "reason"],
                                registry=r)
        self.decisions = Counter("agent_alert_decisions", "what the dispatcher decided for a new incident",
                                 ["decision"], registry=r)
        self.drift = Counter("agent_containment_drift", "containments found removed behind the agent's back",
                             ["policy"], registry=r)
        self.intake_latency = Histogram(
            "agent_alert_intake_seconds", "webhook request handling time (validate, store, enqueue)", registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.run_latency = Histogram(
            "agent_alert_to_verified_seconds", "alert received to plan executed and verified", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.job_latency = Histogram("agent_job_seconds", "scheduler job run time", ["job"], registry=r,
                                     buckets=(0.01, 0.1, 0.5, 1, 5, 30, 120))
        if store is not None:
            r.register(_ActionStates(store))

    def render(self) -> bytes:
        return generate_latest(self.registry)
