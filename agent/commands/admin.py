"""``check-config`` (validate every file, report all problems) and ``connectors list``."""

from __future__ import annotations

import argparse
from typing import Any

from agent import exitcodes
from agent.app import App
from agent.errors import AgentError
from agent.output import color, emit_json, table

__all__ = ["run_admin"]


def run_admin(args: argparse.Namespace) -> int:
    app = App(config_path=args.config)
    if args.command == "connectors":
        return _connectors(app, args)
    return _check(app, args)


def _connectors(app: App, args: argparse.Namespace) -> int:
    from agent.registry import Registry
    reg = Registry()
    data: list[dict[str, Any]] = []
    for name in reg.names():
        try:
            conn = reg.get(name)
            data.append({"name": name, "actions": {a: {"description": s.description, "reversible": s.reversible,
                                                       "mutating": s.mutating, "target": s.target_kind}
                                                   for a, s in conn.actions.items()}})
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            data.append({"name": name, "error": str(exc)})
    if args.json:
        emit_json(data)
        return exitcodes.DONE
    rows = []
    for d in data:
        if "error" in d:
            rows.append((d["name"], color("failed to load", "red"), d["error"]))
            continue
        for action, spec in d["actions"].items():
            kind = "read-only" if not spec["mutating"] else ("reversible" if spec["reversible"] else "irreversible")
            rows.append((d["name"], action, f"[{kind}] {spec['description']}"))
    print(table(rows, ("CONNECTOR", "ACTION", "DESCRIPTION")))
    return exitcodes.DONE


def _check_targets(inv: Any) -> list[str]:
    """Each entry's connector checks the entry's own options (``check_target``), e.g. a WinRM transport."""
    from agent.registry import Registry
    from connectors.errors import ConnectorError

    reg = Registry()
    out: list[str] = []
    for entry in [*inv.hosts.values(), *inv.devices.values(), *inv.directories.values()]:
        try:
            check = getattr(reg.get(entry.connector), "check_target", None)
            if check is not None:
                check(entry.target())
        except ConnectorError as exc:
            out.append(f"{inv.path}:{entry.line}: {entry.name}: {exc.message}")
        except AgentError as exc:
            out.append(f"{inv.path}:{entry.line}: {entry.name}: {exc}")
    return out


def _check_daemon(settings: Any) -> tuple[list[str], list[str], list[str]]:
    """``rules.yaml`` and the ``daemon:`` section, checked exactly as ``agent daemon`` reads them (secrets too)."""
    from agent.intake.config import load_daemon_config
    from agent.intake.rules import load_rules
    problems: list[str] = []
    warnings: list[str] = []
    checked: list[str] = []
    if settings.rules is not None:
        try:
            rules = load_rules(settings.rules, settings.runbooks)
            checked.append(str(settings.rules))
            if settings.daemon:
                known = set(settings.daemon.get("sources") or {})
                for rule in rules.rules:
                    import fnmatch
                    if rule.sources and not any(fnmatch.filter(known, p) for p in rule.sources):
                        warnings.append(f"{settings.rules}:{rule.line}: rule {rule.name}: source "
                                        f"{', '.join(rule.sources)} is not configured under daemon.sources "
                                        "(the rule can never match)")
        except (AgentError, OSError) as exc:
            problems.append(str(exc))
    if settings.daemon:
        try:
            config = load_daemon_config(settings.daemon, settings.path)
            refs = [(f"daemon.sources.{name}.{key}", ref) for name, source in config.sources.items()
                    for key, ref in (("hmac_secret", source.hmac_secret), ("token", source.token)) if ref]
            refs += [(f"daemon.api_tokens.{name}", ref) for name, ref in config.api_tokens.items()]
            for where, ref in refs:
                try:
                    ref.resolve()  # a missing env variable or file refuses the daemon's start: say so now
                except AgentError as exc:
                    problems.append(f"{settings.path}: {where}: {str(exc).split(' (')[0]}")
            for name, source in config.sources.items():
                if source.hmac_secret is not None and not source.require_timestamp:
                    warnings.append(f"{settings.path}: daemon.sources.{name}.require_timestamp: false — body-only "
                                    "signatures are accepted and can be replayed")
                if source.url_token:
                    warnings.append(f"{settings.path}: daemon.sources.{name}.url_token: true — the token travels "
                                    "in the URL (proxy and sender logs); prefer a header where the sender can")
            checked.append(f"{settings.path} (daemon: {len(config.sources)} source(s))")
        except AgentError as exc:
            problems.append(str(exc))
    return problems, warnings, checked


def _check(app: App, args: argparse.Namespace) -> int:
    from agent.runbook import list_runbooks, load_runbook
    problems: list[str] = []
    warnings: list[str] = []
    checked: list[str] = []
    try:
        settings = app.settings
        checked.append(str(settings.path))
        inv = app.inventory
        checked.append(str(inv.path))
        for entry in [*inv.hosts.values(), *inv.devices.values(), *inv.directories.values()]:
            if entry.credentials is None and inv.protected_reason(entry) is None:
                problems.append(f"{inv.path}:{entry.line}: {entry.name}: no credentials configured")
        problems += _check_targets(inv)
        for path in list_runbooks(settings.runbooks).values():
            try:
                book = load_runbook(path)
                for step in book.steps:
                    if step.undo:
                        continue
                checked.append(str(path))
            except AgentError as exc:
                problems.append(str(exc))
        if settings.obligations is not None:  # the notification rules table: categories must be known ones
            from agent.obligations import UnknownCategory, load_rules
            try:
                load_rules(settings.obligations)
                checked.append(str(settings.obligations))
            except (UnknownCategory, OSError, KeyError) as exc:
                problems.append(str(exc))
        problems_d, warnings_d, checked_d = _check_daemon(settings)
        problems += problems_d
        warnings += warnings_d
        checked += checked_d
        if settings.known_hosts and not settings.known_hosts.exists():
            warnings.append(f"{settings.path}: ssh.known_hosts: {settings.known_hosts} does not exist "
                            "(hosts can still be pinned with host_key in the inventory)")
    except AgentError as exc:
        problems.append(str(exc))
    if args.json:
        emit_json({"ok": not problems, "checked": checked, "problems": problems, "warnings": warnings})
    else:
        for checked_path in checked:
            print(f"{color('ok', 'green')}    {checked_path}")
        for warning in warnings:
            print(f"{color('warn', 'yellow')}  {warning}")
        for problem in problems:
            print(f"{color('error', 'red')} {problem}")
        if not problems:
            print(color("configuration is valid", "green"))
    return exitcodes.DONE if not problems else exitcodes.USAGE
