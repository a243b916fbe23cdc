"""The ``agent`` command. Parsing only; each subcommand lives in :mod:`agent.commands` and imports what it needs.

Why argparse and lazy imports: ``agent --help`` and input validation must answer instantly, and a whole
``agent contain`` must cost little more than the ``ssh host 'nft -f -'`` it replaces (ARCHITECTURE.md start-up
budget).
"""

from __future__ import annotations

import os
import sys

from agent import exitcodes
from agent.quick_exit import exit_now, leave, read_only

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the thin client ≈ 12 ms
if TYPE_CHECKING:  # argparse is imported where the parser is built: a forwarded command never needs it
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

DESCRIPTION = """Containment agent: isolate hosts, disable accounts and block addresses —
planned, verified, reversible and written to a tamper-evident audit log.

first minutes of an incident:
  agent contain --host web01 --reason "EDR alert 4471"   isolate (shows the plan, asks to confirm)
  agent contain --host web01 --dry-run                   show exactly what would run
  agent block-ip 203.0.113.7 --all-edges --ttl 24h       block the attacker on every edge device
  agent disable-account jdoe --with-groups               disable the breached account
  agent status                                           what is contained right now
  agent release --host web01                             undo, restoring the exact previous state
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="agent.yaml (default: $AGENT_CONFIG, ./config/agent.yaml, "
                   "/etc/containment-agent/agent.yaml as root, else ~/.config/containment-agent/agent.yaml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _commands_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--commands", "-v", action="store_true", dest="commands",
                   help="show the exact text that will be sent to each target, not only the effect")


def _acting(p: argparse.ArgumentParser, *, ttl: bool = True) -> None:
    _common(p)
    _commands_flag(p)
    p.add_argument("--events", metavar="FILE",
                   help="write one JSON object per journal transition (NDJSON) to FILE; '-' = standard output "
                        "instead of the human output (--json stays one document per command)")
    p.add_argument("--reason", default="", help="why (recorded in the audit log and the counsel report)")
    p.add_argument("--incident", metavar="ID", help="attach to an existing incident instead of opening one")
    p.add_argument("--discovered", metavar="ISO-TIME",
                   help="when the breach was discovered, if earlier than now (starts the legal clocks in the report)")
    p.add_argument("--dry-run", action="store_true", help="show exactly what would run; change nothing (reads "
                   "devices that support it, read-only, so the lines are exact)")
    p.add_argument("--offline", action="store_true", help="with --dry-run: do not read any target; "
                   "state-dependent lines are shown with their condition")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--trust-new-host-key", action="store_true",
                   help="accept and pin an SSH host key seen for the first time (a changed key is still refused)")
    if ttl:
        p.add_argument("--ttl", metavar="DURATION", help="release automatically after e.g. 30m, 4h, 2d")


def _host_selectors(p: argparse.ArgumentParser) -> None:
    """Every way to name hosts (agent/targets.py resolves them against the inventory before planning)."""
    p.add_argument("--host", "-H", action="append", default=[], metavar="HOST[,HOST...]",
                   help="inventory name or address; repeat or separate with commas")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="every inventory host with this tag")
    p.add_argument("--site", action="append", default=[], metavar="SITE", help="every inventory host at this site")
    p.add_argument("--cidr", action="append", default=[], metavar="NETWORK",
                   help="every inventory host with an address in this network, e.g. 10.0.4.0/24")
    p.add_argument("--from-file", action="append", default=[], metavar="FILE",
                   help="one host name or address per line (# comments; '-' reads standard input)")
    p.add_argument("--count", type=int, metavar="N",
                   help="with --yes on more hosts than engine.confirm_count_above: the number of hosts you expect")


class _Unused:
    """Stands in for the parser of a command that is not being run: accepts and ignores every call that would
    build it (add_argument, add_subparsers, add_parser, groups)."""

    def __getattr__(self, _name: str) -> object:
        return lambda *_args, **_kwargs: self


class _Commands:
    """The subcommands of one parser: every command is listed (``agent --help``, "invalid choice" errors), but
    with ``only`` just that command gets its arguments — building all of them is a fifth of a cold
    ``agent status`` (≈ 75 M instructions of ≈ 500 M)."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], only: str | None) -> None:
        self._sub, self._only = sub, only

    def add_parser(self, name: str, *, help: str | None = None) -> argparse.ArgumentParser:
        if self._only in (None, name):
            return self._sub.add_parser(name, help=help)
        # Another command: listed as add_parser lists it (its help line, a valid choice) but no parser is built
        # for it — 26 ArgumentParsers, each looking up argparse's translations on disk, are ≈ 20 M instructions.
        self._sub._choices_actions.append(self._sub._ChoicesPseudoAction(name, (), help))
        self._sub.choices[name] = _Unused()  # type: ignore[assignment]
        return _Unused()  # type: ignore[return-value]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only`` (a command name) one on which only that command has its arguments:
    what a cold command needs (tests/unit/test_cli_parser.py: the same help and the same parse)."""
    import argparse

    parser = argparse.ArgumentParser(prog="agent", description=DESCRIPTION, epilog=exitcodes.TABLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND"), only)

    p = sub.add_parser("contain", help="isolate host(s) from the network (runbook isolate-host)")
    _host_selectors(p)
    p.add_argument("--runbook", "-r", default="isolate-host", help="runbook name or file (default isolate-host)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="runbook parameter")
    _acting(p)

    p = sub.add_parser("release", help="undo containment of host(s) or of a whole incident")
    _host_selectors(p)
    p.add_argument("--incident-all", dest="release_incident", metavar="ID", help="undo every action of an incident")
    p.add_argument("--by-rule", dest="release_rule", metavar="RULE",
                   help="undo everything incidents opened by this alert rule applied (with --since)")
    p.add_argument("--since", dest="release_since", metavar="TIME",
                   help="with --by-rule: incidents opened at or after TIME (ISO 8601, or a duration ago: 2h)")
    p.add_argument("--forget", metavar="TARGET",
                   help="close the containments of a target that no longer exists (reimaged, decommissioned) "
                        "in the journal without contacting it; needs --reason")
    p.add_argument("--runbook", "-r", default="release-host")
    _acting(p, ttl=False)

    p = sub.add_parser("run", help="run any runbook on target(s)")
    p.add_argument("runbook")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--on", action="append", metavar="DEVICE", help="devices for address runbooks")
    _acting(p)

    p = sub.add_parser("plan", help="show the plan for a runbook without executing it (same as --dry-run)")
    p.add_argument("runbook")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--on", action="append", metavar="DEVICE")
    p.add_argument("--offline", action="store_true", help="do not read any target (conditional lines)")
    _common(p)
    _commands_flag(p)

    p = sub.add_parser("block-ip", help="block address(es) on firewalls/routers (runbook block-ip)")
    p.add_argument("addresses", nargs="+", metavar="ADDR", help="IPv4/IPv6 address or CIDR")
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--on", action="append", metavar="DEVICE")
    dev.add_argument("--all-edges", action="store_true", help="every device marked edge: true (default)")
    p.add_argument("--allow-private", action="store_true",
                   help="allow RFC 1918/ULA/CGNAT addresses (an attacker inside the network); loopback, "
                        "link-local, multicast and the devices' own addresses are never blocked")
    p.add_argument("--allow-broad", action="store_true",
                   help="allow prefixes shorter than the device's minimum (default /16 IPv4, /32 IPv6)")
    p.add_argument("--inbound-only", action="store_true",
                   help="block traffic FROM the addresses only, on devices whose inventory entry names no outbound "
                        "ACL/filter (options.acl_out, options.filter_out); by default both directions are blocked "
                        "and such devices are refused")
    _acting(p)

    p = sub.add_parser("unblock-ip", help="remove blocks the agent added (from the journal)")
    p.add_argument("addresses", nargs="+", metavar="ADDR")
    p.add_argument("--on", action="append", metavar="DEVICE")
    _acting(p, ttl=False)

    p = sub.add_parser("disable-account", help="disable directory account(s) (runbook disable-account)")
    p.add_argument("users", nargs="+", metavar="USER", help="sAMAccountName, UPN, DOMAIN\\name, DN, objectSid or "
                   "objectGUID (quote names with ' or ( ) for the shell); several are planned together and "
                   "refused together if any is protected")
    p.add_argument("--with-groups", action="store_true", help="also remove privileged group memberships")
    p.add_argument("--reset-password", action="store_true", help="also reset the password (NOT reversible)")
    p.add_argument("--directory", metavar="NAME")
    _acting(p)

    p = sub.add_parser("enable-account", help="undo disable-account from the journal")
    p.add_argument("users", nargs="+", metavar="USER")
    p.add_argument("--directory", metavar="NAME")
    _acting(p, ttl=False)

    p = sub.add_parser("status", help="what is contained right now (and when TTLs expire)")
    _common(p)
    p.add_argument("--verify", action="store_true",
                   help="read every active containment back from its target now and report drift (exit 4)")

    p = sub.add_parser("sweep", help="release what is past its TTL; settle interrupted and in-doubt actions")
    _acting(p, ttl=False)

    p = sub.add_parser("incidents", help="list or show incidents")
    isub = p.add_subparsers(dest="incidents_command", metavar="list|show")
    q = isub.add_parser("list")
    _common(q)
    q = isub.add_parser("show")
    q.add_argument("id")
    _common(q)
    q = isub.add_parser("facts", help="record facts counsel needs (clock times, counts, organisation) with source")
    q.add_argument("id")
    if not isinstance(q, _Unused):  # another command runs: not even the module that knows the arguments
        from agent.report.facts import add_fact_arguments
        add_fact_arguments(q)
    _common(q)

    p = sub.add_parser("audit", help="verify, export or sign the audit log")
    p.add_argument("audit_args", nargs=argparse.REMAINDER, help="verify | export | init-key (see agent audit --help)")
    p.add_argument("--config", "-c", metavar="FILE")

    p = sub.add_parser("report", help="counsel report for an incident (HTML or PDF)")
    p.add_argument("--incident", required=True, metavar="ID")
    p.add_argument("--format", choices=("html", "pdf", "json"), default="pdf",
                   help="json: the same content as the PDF, machine-readable")
    p.add_argument("--expect-key", metavar="FINGERPRINT", help="verify the log against this key fingerprint")
    p.add_argument("--anchor", metavar="SEQ:HASH|FILE", help="verify the log against this earlier signed head")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    _common(p)

    p = sub.add_parser("init", help="write an annotated configuration folder (agent.yaml, inventory, rules)")
    p.add_argument("directory", metavar="DIR", help="where to write it (the default config folder: "
                   "/etc/containment-agent for root, ~/.config/containment-agent otherwise)")
    p.add_argument("--force", action="store_true", help="replace files that already exist")
    p.add_argument("--runbooks", action="store_true", help="also copy the shipped runbooks into DIR/runbooks")

    p = sub.add_parser("check-config", help="validate agent.yaml, the inventory and every runbook")
    _common(p)

    p = sub.add_parser("connectors", help="list installed connectors and their actions")
    p.add_argument("connectors_command", nargs="?", default="list", choices=("list",))
    _common(p)

    p = sub.add_parser("lab", help="the practice lab (root): up | down | probe | status")
    p.add_argument("lab_args", nargs=argparse.REMAINDER)

    p = sub.add_parser("warm", help="keep a pre-imported server so CLI commands start in milliseconds")
    p.add_argument("--config", "-c", metavar="FILE")

    p = sub.add_parser("daemon", help="run the webhook intake, scheduler and engine")
    _common(p)
    p.add_argument("--listen", default=None, metavar="HOST:PORT")

    p = sub.add_parser("worker", help="run a site's worker: actions on that site's targets, from its queue")
    _common(p)
    p.add_argument("--site", required=True, metavar="SITE", help="the inventory site whose queue to consume")
    p.add_argument("--slots", type=int, metavar="N", help="actions run at once (default: engine.max_parallel)")

    p = sub.add_parser("console", help="the web console: incidents, contained now, approvals (operators sign in)")
    p.add_argument("--listen", metavar="HOST:PORT", help="default: console.listen in agent.yaml, 127.0.0.1:8443")
    _common(p)

    p = sub.add_parser("operators", help="who may sign in to the console: add | list | disable")
    osub = p.add_subparsers(dest="operators_command", metavar="add|list|disable")
    q = osub.add_parser("add", help="add an operator (password from --password-file, a pipe, or typed twice)")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=("viewer", "responder", "approver", "admin"))
    q.add_argument("--password-file", metavar="FILE")
    _common(q)
    q = osub.add_parser("list")
    _common(q)
    q = osub.add_parser("disable", help="disable an operator and end their sessions")
    q.add_argument("name")
    _common(q)

    p = sub.add_parser("completion", help="shell completion: eval \"$(agent completion bash)\" (also zsh, fish)")
    p.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"))
    p.add_argument("--list", dest="list_kind", metavar="KIND",
                   help="print completion values of one kind (hosts, tags, sites, devices, directories, runbooks, "
                        "incidents)")
    p.add_argument("--config", "-c", metavar="FILE")

    p = sub.add_parser("automation", help="pause|resume|status: turn every auto rule into approve (the brake)")
    p.add_argument("automation_command", choices=("pause", "resume", "status"))
    p.add_argument("--reason", default="", help="why (audited)")
    _common(p)

    p = sub.add_parser("approvals", help="approval requests waiting for a decision")
    p.add_argument("--all", action="store_true", help="also decided and expired ones")
    _common(p)
    for verb, text in (("approve", "approve a request: its plan runs now, with you as approver"),
                       ("deny", "deny a request: nothing runs")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("id", metavar="ID", help="approval id (see `agent approvals`)")
        p.add_argument("--reason", default="", help="why (audited, shown in the counsel report)")
        _common(p)
    return parser


_PARSER: list[argparse.ArgumentParser] = []


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, built once per process (≈ 14 ms; the warm server builds it before forking its children).

    With ``command`` and no parser built yet (a cold command): one on which only that command has its
    arguments, not kept — a later ``parser()`` builds the whole one."""
    if not _PARSER and command is not None:
        return build_parser(command)
    if not _PARSER:
        _PARSER.append(build_parser())
    return _PARSER[0]


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word; ``agent`` itself has no option but -h)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        from agent.warm_client import try_forward
        forwarded = try_forward(sys.argv[1:])
        if forwarded is not None:
            exit_now(forwarded)
    args = parser(_command_word(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    if args.command is None:
        parser().print_help()
        return exitcodes.USAGE
    if args.command == "warm":
        from agent.warm import serve
        return serve(args.config, main, parser)
    if args.command == "lab":
        from agent.lab.cli import main as lab_main
        return lab_main(list(args.lab_args))
    if args.command == "completion":
        return _completion(args)
    if args.command == "init":
        from agent.commands.init import run_init
        return run_init(args)
    if args.command == "audit":
        from agent.commands.audit import run_audit
        return run_audit(list(args.audit_args), args.config)
    from agent.commands import dispatch
    quick = argv is None and read_only(args) and _is_entry_point()
    if quick and args.command in ("status", "incidents"):  # a bounded read: a few queries, one table printed
        import gc
        gc.disable()
    try:
        code = dispatch(args)
        if argv is None and not os.environ.get("AGENT_NO_WARM"):
            from agent.warm_client import FORWARDED_COMMANDS
            if args.command in FORWARDED_COMMANDS:
                from agent.warm import autostart
                autostart(getattr(args, "config", None))  # `warm: auto` in agent.yaml; otherwise nothing
    except BrokenPipeError:  # `agent ... | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = exitcodes.DONE
    if quick:
        leave(code)
    return code


def _is_entry_point() -> bool:
    """Whether this call is the process's own ``agent`` command (the console script or ``python -m agent.cli``
    runs ``main`` from ``__main__``), not a call from a test or another program, whose process goes on."""
    return getattr(sys.modules.get("__main__"), "main", None) is main


def _completion(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent import completion
    from agent.config import default_config_path

    if args.list_kind:
        if args.list_kind not in completion.KINDS:
            sys.stderr.write(f"error: --list {args.list_kind!r}: one of {', '.join(completion.KINDS)}\n")
            return exitcodes.USAGE
        config = Path(args.config) if args.config else default_config_path()
        for value in completion.list_values(args.list_kind, config):
            print(value)
        return exitcodes.DONE
    if not args.shell:
        sys.stderr.write("error: name a shell: agent completion bash | zsh | fish\n")
        return exitcodes.USAGE
    sys.stdout.write(completion.script(args.shell, parser()))
    return exitcodes.DONE


if __name__ == "__main__":
    sys.exit(main())
