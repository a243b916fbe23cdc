"""Alert intake for ``agent daemon``: webhooks in, decisions out.

Modules: :mod:`~agent.intake.config` (the ``daemon:`` settings), :mod:`~agent.intake.model` (the normalised
alert, severity scale), :mod:`~agent.intake.normalizers` (one per source format), :mod:`~agent.intake.auth`
(HMAC / bearer), :mod:`~agent.intake.request` (the request checks: size, source, signature, JSON, format),
:mod:`~agent.intake.rules` (``rules.yaml``), :mod:`~agent.intake.limits` (dedupe, blast radius),
:mod:`~agent.intake.claims` (dedupe claims in the database), :mod:`~agent.intake.automation` (the brake),
:mod:`~agent.intake.rejections` (unauthenticated floods summed up), :mod:`~agent.intake.slowguard` (header and
body deadlines), :mod:`~agent.intake.docs_page` (``/docs`` without a CDN),
:mod:`~agent.intake.ids` (alert and incident ids), :mod:`~agent.intake.writer` (group commit) with
:mod:`~agent.intake.bulk` (multi-row statements), :mod:`~agent.intake.dispatcher` (decisions),
:mod:`~agent.intake.runner` (execution), :mod:`~agent.intake.service` (the request path's state),
:mod:`~agent.intake.app` (the FastAPI application), and the daemon's HTTP front process:
:mod:`~agent.intake.front` (the process), :mod:`~agent.intake.wire` (its link to the core),
:mod:`~agent.intake.relay` (the core's end of that link) and :mod:`~agent.intake.supervise` (starting it).
"""

from __future__ import annotations

from agent.intake.config import DaemonConfig, SourceConfig, load_daemon_config
from agent.intake.model import MalformedAlert, NormalizedAlert

__all__ = ["DaemonConfig", "MalformedAlert", "NormalizedAlert", "SourceConfig", "load_daemon_config"]
