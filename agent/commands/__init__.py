"""Subcommand implementations. ``dispatch`` maps parsed arguments to one of them and turns errors into exit codes."""

from __future__ import annotations

import argparse
import sys

from agent import exitcodes
from agent.errors import AgentError, ConfigError, GuardRefused, InputError, NotFound
from agent.output import err

__all__ = ["dispatch"]


def dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command in ("contain", "release", "run", "plan", "block-ip", "unblock-ip", "disable-account",
                            "enable-account", "sweep"):
            from agent.commands.act import run_act
            return run_act(args)
        if args.command in ("status", "incidents"):
            from agent.commands.query import run_query
            return run_query(args)
        if args.command in ("check-config", "connectors"):
            from agent.commands.admin import run_admin
            return run_admin(args)
        if args.command == "report":
            from agent.commands.report import run_report
            return run_report(args)
        if args.command == "daemon":
            from agent.commands.daemon import run_daemon
            return run_daemon(args)
        if args.command == "worker":
            from agent.commands.daemon import run_worker
            return run_worker(args)
        if args.command == "automation":
            from agent.commands.daemon import run_automation
            return run_automation(args)
        if args.command == "console":
            from agent.commands.console import run_console
            return run_console(args)
        if args.command == "operators":
            from agent.commands.console import run_operators
            if not args.operators_command:
                raise InputError("agent operators: name a subcommand (add, list, disable)")
            return run_operators(args)
        if args.command in ("approvals", "approve", "deny"):
            from agent.commands.daemon import run_approvals
            return run_approvals(args)
    except GuardRefused as exc:
        err(str(exc))
        return exitcodes.REFUSED
    except (ConfigError, InputError, NotFound) as exc:
        err(str(exc))
        return exitcodes.USAGE
    except AgentError as exc:
        err(str(exc))
        return exitcodes.FAILED
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return exitcodes.INTERRUPTED
    err(f"unknown command {args.command!r}")
    return exitcodes.USAGE
