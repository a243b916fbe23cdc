"""The console's routes. Server-rendered pages; forms POST with a CSRF token; every response carries headers
that keep it out of frames, caches and other origins; no asset is loaded from anywhere but this server.

GET  /login, POST /login, POST /logout
GET  /                      what is contained now, approvals waiting, recent incidents
GET  /incidents             all incidents
GET  /incidents/{id}        timeline, actions, evidence hashes, audit verification, notification checklist
GET  /approvals             approvals waiting
GET  /approvals/{id}        the exact plan; approve / deny (approver role; four-eyes)
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from agent.console.auth import Operators, SessionInfo, Sessions, csrf_ok, may
from agent.console.pages import approval_detail, contained_now, incident_detail, incidents, pending_approvals
from agent.console.settings import ConsoleSettings
from agent.errors import AgentError, NotFound

__all__ = ["COOKIE", "create_console"]

COOKIE = "agent_console"
_HEADERS = {"Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                       "base-uri 'none'",
            # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our own form posts
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
            "X-Frame-Options": "DENY"}


def create_console(app: Any, settings: ConsoleSettings, *, secure_cookie: bool) -> FastAPI:
    """The console for one agent configuration (``app`` is an :class:`agent.app.App`)."""
    env = Environment(loader=PackageLoader("agent.console", "templates"), autoescape=select_autoescape(["j2"]))
    operators = Operators(app.store, app.audit)
    sessions = Sessions(app.store, idle=settings.session_idle, lifetime=settings.session_lifetime)
    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    css = resources.files("agent.console").joinpath("static/console.css").read_bytes()

    def page(name: str, who: SessionInfo | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(who=who, may=may, **ctx)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def current(request: Request) -> SessionInfo | None:
        return sessions.get(request.cookies.get(COOKIE))

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303, headers=_HEADERS)

    def signed_in(request: Request) -> SessionInfo:
        """Dependency of every page: the operator, or (via _SignInFirst) a redirect to the sign-in page."""
        who = current(request)
        if who is None:
            raise _SignInFirst
        return who

    @web.exception_handler(_SignInFirst)
    def sign_in_first(request: Request, _exc: _SignInFirst) -> Response:
        return to_login(request)

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin:
            return True  # non-browser clients; the CSRF token still has to match
        return urlsplit(origin).netloc == request.headers.get("host", "")

    def refuse(who: SessionInfo | None, why: str, status: int = 403) -> HTMLResponse:
        return page("error.html.j2", who, status=status, message=why)

    @web.get("/static/console.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css", headers={**_HEADERS, "Cache-Control": "max-age=3600"})

    @web.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        return page("login.html.j2", None, next=_safe_next(next), error="")

    @web.post("/login")
    def login(request: Request, name: str = Form(""), password: str = Form(""),
              next: str = Form("/")) -> Response:
        if not same_origin(request):
            return refuse(None, "cross-site login refused")
        source = request.client.host if request.client else "?"
        row = operators.authenticate(name, password, source=source)
        if row is None:
            return page("login.html.j2", None, status=401, next=_safe_next(next),
                        error="Name or password not accepted (or too many attempts: wait five minutes).")
        value, _csrf = sessions.create(row.name)
        response = RedirectResponse(_safe_next(next), status_code=303, headers=_HEADERS)
        response.set_cookie(COOKIE, value, httponly=True, samesite="strict", secure=secure_cookie, path="/")
        return response

    @web.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        who = current(request)
        if who is not None and csrf_ok(who, csrf):
            sessions.end(request.cookies.get(COOKIE))
            app.audit.record("console.logout", operator=who.operator)
        response = RedirectResponse("/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    @web.get("/")
    def home(who: SessionInfo = Depends(signed_in)) -> Response:
        return page("home.html.j2", who, contained=contained_now(app), approvals=pending_approvals(app),
                    incidents=incidents(app, limit=10))

    @web.get("/incidents")
    def incident_list(who: SessionInfo = Depends(signed_in)) -> Response:
        return page("incidents.html.j2", who, incidents=incidents(app))

    @web.get("/incidents/{incident_id}")
    def incident(incident_id: str, who: SessionInfo = Depends(signed_in)) -> Response:
        try:
            detail = incident_detail(app, incident_id)
        except NotFound as exc:
            return refuse(who, str(exc), 404)
        return page("incident.html.j2", who, **detail)

    @web.get("/approvals")
    def approval_list(who: SessionInfo = Depends(signed_in)) -> Response:
        return page("approvals.html.j2", who, approvals=pending_approvals(app))

    @web.get("/approvals/{approval_id}")
    def approval(approval_id: str, who: SessionInfo = Depends(signed_in)) -> Response:
        try:
            row, plan, error = approval_detail(app, approval_id)
        except NotFound as exc:
            return refuse(who, str(exc), 404)
        own = settings.four_eyes and bool(row.requested_by) and row.requested_by == who.operator
        return page("approval.html.j2", who, row=row, plan=plan, error=error, own=own,
                    four_eyes=settings.four_eyes, csrf=who.csrf)

    @web.post("/approvals/{approval_id}/{verdict}")
    def decide(request: Request, approval_id: str, verdict: str, csrf: str = Form(""),
               reason: str = Form("")) -> Response:
        who = current(request)
        if who is None:
            return refuse(None, "sign in first", 401)
        if verdict not in ("approve", "deny"):
            return refuse(who, f"unknown decision {verdict!r}", 404)
        if not same_origin(request) or not csrf_ok(who, csrf):
            app.audit.record("console.csrf_refused", operator=who.operator, path=request.url.path)
            return refuse(who, "this form is stale or came from another site: reload the page and try again")
        if not may(who.role, "approve"):
            app.audit.record("console.refused", operator=who.operator, approval_id=approval_id,
                             reason=f"role {who.role} may not decide approvals")
            return refuse(who, f"your role ({who.role}) may not decide approvals")
        from agent.approvals import authorize_decision, plan_for
        from agent.approvals import decide as record_decision
        from agent.errors import GuardRefused
        try:
            try:
                authorize_decision(app.store, app.audit, approval_id, who.operator, four_eyes=settings.four_eyes,
                                   channel="console")
            except GuardRefused as exc:
                return refuse(who, str(exc))
            row = record_decision(app.store, app.audit, approval_id, approve=verdict == "approve",
                                  by=who.operator, reason=reason.strip() or f"decided in the console by {who.operator}")
            if verdict == "approve":
                plan, ttl, run_reason = plan_for(app, row)
                threading.Thread(target=_run, args=(app, plan, row.incident_id, run_reason, ttl, who.operator),
                                 name=f"approved-{approval_id}", daemon=True).start()
            else:
                from agent.intake.claims import denied
                if denied(app.store.engine, row.incident_id):  # no dedupe claim; closed when nothing applied
                    app.audit.record("incident.closed", incident=row.incident_id, incident_status="closed",
                                     reason=f"approval {row.id} denied by {who.operator} in the console")
        except AgentError as exc:
            return refuse(who, str(exc), 409)
        return RedirectResponse(f"/incidents/{row.incident_id}", status_code=303, headers=_HEADERS)

    return web


class _SignInFirst(Exception):
    """Raised by the pages' dependency when nobody is signed in; answered with a redirect to /login."""


def _run(app: Any, plan: Any, incident: str, reason: str, ttl: Any, approver: str) -> None:
    """Run an approved plan (its own thread: the approver's browser gets the incident page at once and
    watches the timeline fill). Outcomes are journaled and audited by the engine like any run."""
    try:
        app.engine().execute(plan, incident, reason=reason, ttl=ttl, approved_by=approver)
    except Exception as exc:  # noqa: BLE001 (the journal holds the truth; this only records the crash)
        app.audit.record("console.run_failed", incident=incident, approved_by=approver, error=type(exc).__name__)


def _safe_next(target: str) -> str:
    """Only same-site paths (no open redirect to another host after login)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
