"""The daemon's HTTP API (FastAPI): alert webhooks, incidents, approvals, health and metrics.

=======================================  ==========================================================  =======
endpoint                                 what                                                        auth
=======================================  ==========================================================  =======
``POST /alerts/{source}``                an alert in the source's format; 202 once it is stored      source
``GET /incidents/{id}``                  incident with its alerts, actions and approvals             API
``GET /approvals?status=pending``        approval requests                                           API
``POST /approvals/{id}/approve|deny``    decide (body ``{"reason": "..."}``); identity = token name  API
``GET /automation``, ``POST /automation/pause|resume``  the brake on every ``auto`` rule (audited)  API
``GET /healthz``, ``GET /metrics``       liveness, queue depth, scheduler role; Prometheus text      none
``GET /openapi.json``, ``/docs``         the schema of all of the above                              none
=======================================  ==========================================================  =======

Answers to ``POST /alerts``: 202 ``{alert_id, incident, disposition, alerts: [...]}`` (``disposition`` is
``accepted`` — a new incident, decided in the background —, ``deduped``, ``no-match`` or ``not-actionable``),
400 malformed (invalid JSON, not the source's format, no host, a field that could inject), 401 not
authenticated, 404 unknown source, 413 body over ``daemon.max_body_bytes``, 503 the store could not be written
(retry). Every 4xx is audited as ``alert.rejected`` and nothing is acted on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from agent.intake.metrics import CONTENT_TYPE
from agent.intake.request import IntakeRejected, asgi_chunks, read_body
from agent.intake.service import IntakeService
from agent.intake.writer import acknowledgement

__all__ = ["create_app", "handle_alert"]


class AlertAck(BaseModel):
    alert_id: str
    incident: str | None
    disposition: str


class AlertAccepted(AlertAck):
    alerts: list[AlertAck]


class Problem(BaseModel):
    detail: str


class DecisionBody(BaseModel):
    reason: str = Field(default="", max_length=2000, description="why (audited and shown in the report)")


class ApprovalOut(BaseModel):
    id: str
    incident: str
    runbook: str
    target: str
    params: dict[str, Any]
    ttl_seconds: float | None
    alert_id: str | None
    rule: str | None
    status: str
    why: str
    requested_at: str | None
    expires_at: str | None
    decided_by: str | None
    decided_at: str | None
    decision_reason: str


class DecisionOut(BaseModel):
    approval: ApprovalOut
    executing: bool


SECURITY_SCHEMES: dict[str, Any] = {
    "sourceHmac": {"type": "apiKey", "in": "header", "name": "X-Agent-Signature",
                   "description": "sha256=<hex HMAC-SHA256(secret, '<X-Agent-Timestamp>.<X-Agent-Nonce>.<body>')>; "
                                  "the timestamp must be within the source's replay_window, a nonce is accepted once "
                                  "(agent/intake/auth.py)"},
    "sourceToken": {"type": "http", "scheme": "bearer",
                    "description": "the source's token (daemon.sources.NAME.token)"},
    "sourceUrlToken": {"type": "apiKey", "in": "query", "name": "token",
                       "description": "?token=<the source's token>, only for sources with url_token: true "
                                      "(senders that cannot set headers, e.g. Splunk's webhook action); weaker: "
                                      "URLs get logged"},
    "apiToken": {"type": "http", "scheme": "bearer",
                 "description": "a person's or tool's API token (daemon.api_tokens); its name is the audited identity"},
}
_SOURCE_SECURITY: list[dict[str, list[str]]] = [{"sourceHmac": []}, {"sourceToken": []}, {"sourceUrlToken": []}]
_API_SECURITY: list[dict[str, list[str]]] = [{"apiToken": []}]

_EXAMPLES: dict[str, Any] = {
    "wazuh": {"summary": "Wazuh alert (format wazuh; also integratord's all_fields and execd's parameters.alert)",
              "value": {"timestamp": "2022-06-17T14:46:27.816+0000", "id": "1655477187.49701",
                        "rule": {"level": 15, "description": "Shellshock attack detected", "id": "31168"},
                        "agent": {"id": "005", "name": "linux-agent"}, "data": {"srcip": "192.168.56.3"}}},
    "elastic": {"summary": "Elastic Webhook connector body (format elastic)",
                "value": {"rule": {"id": "7d3b5c10", "name": "Impossible travel login"},
                          "alerts": [{"kibana.alert.rule.name": "Impossible travel login",
                                      "kibana.alert.risk_score": 73,
                                      "kibana.alert.rule.rule_id": "impossible-travel-001",
                                      "user": {"name": "jdoe"}, "source": {"ip": "198.51.100.23"}}]}},
    "splunk": {"summary": "Splunk webhook alert action (format splunk)",
               "value": {"result": {"username": "jdoe", "srcip": "198.51.100.23", "_time": "1714619580"},
                         "sid": "scheduler_admin_search_W2_at_14232356_132", "search_name": None,
                         "owner": "admin", "app": "search"}},
    "alertmanager": {"summary": "Alertmanager webhook v4 (format alertmanager; answered 2xx with per-alert results)",
                     "value": {"version": "4", "status": "firing", "alerts": [
                         {"status": "firing", "labels": {"alertname": "CryptominerDetected", "instance": "web01:9100",
                                                         "severity": "critical"},
                          "startsAt": "2026-11-23T03:10:00Z", "fingerprint": "c2d14f0a"}]}},
    "generic": {"summary": "generic format",
                "value": {"rule_id": "edr-4471", "host": "web01", "severity": 80, "user": "alice",
                          "source_ip": "203.0.113.7", "title": "beacon", "event_time": "2026-12-04T18:01:02Z"}},
}
_SURICATA_EXAMPLE = ('{"timestamp":"2017-04-07T22:24:37.251547+0100","event_type":"alert","src_ip":"192.168.2.14",'
                     '"dest_ip":"209.53.113.5","alert":{"signature_id":2018358,"signature":"ET HUNTING ...",'
                     '"severity":2}}\n{"timestamp":"...","event_type":"flow", "...": "skipped"}\n')

_ALERT_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The source's alert JSON (Wazuh alert, Elastic webhook-connector body, Splunk webhook, "
                   "Alertmanager v4 webhook). Shown: the generic format.",
    "properties": {
        "rule_id": {"type": "string", "maxLength": 200}, "host": {"type": "string"},
        "severity": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 100}, {"type": "string"}]},
        "user": {"type": "string"}, "source_ip": {"type": "string"}, "title": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}}},
    "example": {"rule_id": "edr-4471", "host": "web01", "severity": 80, "user": "alice",
                "source_ip": "203.0.113.7", "title": "beacon"},
}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "malformed alert (invalid JSON, wrong format, no host)"},
    401: {"model": Problem, "description": "missing or wrong signature / token"},
    404: {"model": Problem, "description": "unknown source"},
    413: {"model": Problem, "description": "body larger than daemon.max_body_bytes"},
    503: {"model": Problem, "description": "the alert could not be stored; retry"},
}
_API_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid API token"},
    404: {"model": Problem, "description": "no such object"},
}


async def handle_alert(svc: IntakeService, source: str, headers: Mapping[str, str], client: str,
                       chunks: AsyncIterator[bytes], query: str = "") -> tuple[int, dict[str, Any]]:
    """The whole webhook request path, independent of the web framework: (HTTP status, JSON answer)."""
    started = time.monotonic()
    body = b""
    try:
        svc.source_auth(source)
        body = await read_body(headers, chunks, svc.config.max_body_bytes)
        decisions = svc.prepare(source, headers, body, started, query)
    except IntakeRejected as exc:
        svc.reject(source, exc, client, len(body))
        return exc.status, {"detail": exc.reason}
    try:
        await asyncio.wrap_future(svc.writer.submit(decisions))
    except Exception as exc:  # noqa: BLE001 - the caller must retry; nothing was stored
        svc.unclaim(decisions)
        svc.audit.record("alert.store_failed", source=source, error=f"{type(exc).__name__}: {exc}")
        return 503, {"detail": "the alert could not be stored; retry"}
    svc.count([decisions])
    return 202, acknowledgement(decisions)


def _fast_path(svc: IntakeService, api: FastAPI) -> Any:
    """An ASGI app answering ``POST /alerts/...`` directly, everything else through FastAPI.

    Why: FastAPI's routing, dependency and exception layers cost more than the alert's own work; the webhook is
    the one endpoint an alert storm hits. The FastAPI route stays the documented (OpenAPI) definition and
    calls the same :func:`handle_alert`. This is the in-process path (tests, embedding); ``agent daemon``
    checks alerts in its HTTP front process (:mod:`agent.intake.front`) with the same functions.
    """
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/alerts/"):
            await api(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope["client"][0] if scope.get("client") else ""

        status, answer = await handle_alert(svc, scope["path"][len("/alerts/"):], headers, client,
                                            asgi_chunks(receive), scope.get("query_string", b"").decode("latin-1"))
        payload = json.dumps(answer, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
    app.fastapi = api  # type: ignore[attr-defined]
    return app


def create_app(svc: IntakeService) -> Any:
    """The FastAPI application serving ``svc`` (one per daemon; tests build their own)."""
    app = FastAPI(title="containment-agent daemon", version="1", docs_url=None, redoc_url=None,
                  description="Alert intake, incidents and approvals of the containment agent.")

    def openapi() -> dict[str, Any]:
        """The generated schema plus the security schemes (sources vs people) and per-operation requirements."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    if "security" not in op and not path.startswith(("/healthz", "/metrics")):
                        op["security"] = _API_SECURITY
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        from agent.intake.docs_page import render_docs
        return Response(render_docs(app.openapi()), media_type="text/html; charset=utf-8")

    def identity(request: Request) -> str:
        from agent.intake.auth import AuthFailed
        try:
            return svc.api.identify(request.headers)
        except AuthFailed as exc:
            svc.audit.record("api.rejected", path=request.url.path[:200], reason=str(exc),
                             client=request.client.host if request.client else "")
            raise HTTPException(401, str(exc)) from None

    @app.post("/alerts/{source}", status_code=202, response_model=AlertAccepted, responses=_PROBLEMS,
              summary="Post an alert", openapi_extra={"security": _SOURCE_SECURITY, "requestBody": {
                  "required": True, "content": {
                      "application/json": {"schema": _ALERT_BODY, "examples": _EXAMPLES},
                      "application/x-ndjson": {"schema": {"type": "string"}, "examples": {"suricata": {
                          "summary": "Suricata EVE lines (format suricata): one JSON object per line",
                          "value": _SURICATA_EXAMPLE}}}}}})
    async def post_alert(source: str, request: Request) -> Response:
        client = request.client.host if request.client else ""
        status, answer = await handle_alert(svc, source, request.headers, client, request.stream(),
                                            request.url.query)
        return JSONResponse(answer, status_code=status)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, Any]:
        # "scheduler": does this daemon run the scheduled jobs (agent.leader)? With two daemons on one
        # PostgreSQL exactly one says "leader"; an operator (or a check) sees which without reading audit logs.
        leading = svc.scheduler is not None and svc.scheduler.leading
        return {"status": "ok", "sources": sorted(svc.sources), "rules": len(svc.rules.rules),
                "queue": {"decisions": svc.dispatcher.depth(), "writes": svc.writer.depth()},
                "scheduler": "leader" if leading else "follower"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/incidents/{incident_id}", summary="An incident with its alerts, actions and approvals",
             responses=_API_PROBLEMS)
    def incident(incident_id: str, who: str = Depends(identity)) -> dict[str, Any]:
        from agent.intake.views import incident_view
        view = incident_view(svc.store, incident_id)
        if view is None:
            raise HTTPException(404, f"incident {incident_id[:80]!r} does not exist")
        return view

    @app.get("/approvals", summary="Approval requests", response_model=list[ApprovalOut],
             responses={401: _API_PROBLEMS[401]})
    def approvals(status: str = "pending", who: str = Depends(identity)) -> list[dict[str, Any]]:
        from agent.approvals import approval_dict, list_approvals
        return [approval_dict(r) for r in list_approvals(svc.store, None if status == "all" else status)]

    def _decide(approval_id: str, approve: bool, body: DecisionBody | None, who: str) -> DecisionOut:
        from agent.approvals import authorize_decision
        from agent.errors import AgentError, GuardRefused, InputError, NotFound
        from agent.intake.views import decide_and_run
        try:
            authorize_decision(svc.store, svc.audit, approval_id, who, channel="api",
                               four_eyes=bool(svc.app.settings.console.get("four_eyes", True)))
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except GuardRefused as exc:
            raise HTTPException(403, str(exc)) from None
        try:
            row, executing = decide_and_run(svc, approval_id, approve=approve, by=who,
                                            reason=body.reason if body else "")
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except InputError as exc:
            raise HTTPException(409, str(exc)) from None
        except AgentError as exc:
            raise HTTPException(409, f"approved, but the plan is refused now: {exc}") from None
        from agent.approvals import approval_dict
        return DecisionOut(approval=ApprovalOut(**approval_dict(row)), executing=executing)

    @app.get("/automation", summary="Is automation paused?", responses={401: _API_PROBLEMS[401]})
    def automation(who: str = Depends(identity)) -> dict[str, Any]:
        from agent.intake.automation import automation_state
        return automation_state(svc.store).to_dict()

    def _brake(paused: bool, body: DecisionBody | None, who: str) -> dict[str, Any]:
        from agent.intake.automation import set_automation
        return set_automation(svc.store, svc.audit, paused=paused, by=who, reason=body.reason if body else "").to_dict()

    @app.post("/automation/pause", summary="Pause automation: every auto rule asks for approval (audited)",
              responses={401: _API_PROBLEMS[401]})
    def pause(body: DecisionBody | None = None, who: str = Depends(identity)) -> dict[str, Any]:
        return _brake(True, body, who)

    @app.post("/automation/resume", summary="Resume automation: rules act under their own policy (audited)",
              responses={401: _API_PROBLEMS[401]})
    def resume(body: DecisionBody | None = None, who: str = Depends(identity)) -> dict[str, Any]:
        return _brake(False, body, who)

    decide_responses: dict[int | str, dict[str, Any]] = {
        **_API_PROBLEMS, 409: {"model": Problem, "description": "already decided or expired"}}

    @app.post("/approvals/{approval_id}/approve", summary="Approve: the plan runs with your identity",
              response_model=DecisionOut, status_code=202, responses=decide_responses)
    def approve(approval_id: str, body: DecisionBody | None = None, who: str = Depends(identity)) -> DecisionOut:
        return _decide(approval_id, True, body, who)

    @app.post("/approvals/{approval_id}/deny", summary="Deny: nothing runs", response_model=DecisionOut,
              responses=decide_responses)
    def deny(approval_id: str, body: DecisionBody | None = None, who: str = Depends(identity)) -> DecisionOut:
        return _decide(approval_id, False, body, who)

    return _fast_path(svc, app)
