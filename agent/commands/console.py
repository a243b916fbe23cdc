"""``agent console`` (the web console) and ``agent operators add|list|disable`` (who may sign in to it)."""

from __future__ import annotations

import argparse
import sys

from agent import exitcodes
from agent.app import App
from agent.errors import InputError
from agent.output import emit_json, table

__all__ = ["run_console", "run_operators"]


def run_console(args: argparse.Namespace) -> int:
    import uvicorn

    from agent.extras import require
    require("argon2", "agent console")
    require("python_multipart", "agent console")

    from agent.console.app import create_console
    from agent.console.settings import console_settings

    app = App(config_path=args.config)
    try:
        settings = console_settings(app.settings.console, args.listen)
        if not app.settings.audit_dir:
            raise InputError("the console needs the audit log (audit_dir)")
        tls = settings.tls_cert is not None
        web = create_console(app, settings, secure_cookie=tls)
        app.audit.record("console.started", listen=f"{settings.host}:{settings.port}", tls=tls,
                         four_eyes=settings.four_eyes)
        scheme = "https" if tls else "http"
        print(f"console on {scheme}://{settings.host}:{settings.port}/ (Ctrl-C stops it)", file=sys.stderr)
        uvicorn.run(web, host=settings.host, port=settings.port, log_level="warning",
                    ssl_certfile=str(settings.tls_cert) if tls else None,
                    ssl_keyfile=str(settings.tls_key) if tls else None)
        return exitcodes.DONE
    finally:
        app.close()


def run_operators(args: argparse.Namespace) -> int:
    from agent.extras import require
    require("argon2", "agent operators")
    from agent.console.auth import Operators

    app = App(config_path=args.config)
    try:
        ops = Operators(app.store, app.audit)
        if args.operators_command == "add":
            ops.add(args.name, args.role, _password(args), by=app.actor)
            print(f"operator {args.name} added ({args.role})")
        elif args.operators_command == "disable":
            ops.disable(args.name, by=app.actor)
            print(f"operator {args.name} disabled; their sessions are ended")
        else:
            rows = [(o.name, o.role, "disabled" if o.disabled else "active",
                     o.created_at.strftime("%Y-%m-%d %H:%M")) for o in ops.list()]
            if args.json:
                emit_json([dict(zip(("name", "role", "state", "created"), r, strict=True)) for r in rows])
            else:
                print(table(rows, ("NAME", "ROLE", "STATE", "CREATED (UTC)")) if rows else "No operators.")
        return exitcodes.DONE
    finally:
        app.close()


def _password(args: argparse.Namespace) -> str:
    """From --password-file, a pipe (one line), or typed twice on a terminal; never from the command line."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise InputError(f"--password-file {args.password_file}: {exc.strerror}") from None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise InputError("the two passwords differ; nothing was changed")
    return first
