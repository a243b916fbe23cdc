"""A cold command builds only its own subcommand's arguments (agent/cli.py ``build_parser(only=...)``); what a
person sees and what is parsed must not change: every command's help, the top-level help, usage errors and the
parsed arguments are identical to the whole parser's."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from agent.cli import build_parser

FULL = build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = sorted(_subparsers(FULL))


def test_every_command_is_listed_and_its_help_is_the_same() -> None:
    assert len(COMMANDS) > 25
    for name in COMMANDS:
        narrow = build_parser(name)
        assert narrow.format_help() == FULL.format_help()
        mine, full = _subparsers(narrow)[name], _subparsers(FULL)[name]
        assert mine.format_help() == full.format_help(), name
        for nested, parser in _subparsers(full).items():  # incidents list|show|facts, operators add|list|disable
            assert _subparsers(mine)[nested].format_help() == parser.format_help(), f"{name} {nested}"


@pytest.mark.parametrize("argv", [
    ["status", "--json", "--verify"],
    ["contain", "--host", "web01,web02", "--tag", "pci", "--dry-run", "--ttl", "4h", "-p", "a=b"],
    ["block-ip", "203.0.113.7", "--all-edges", "--allow-private", "--events", "-"],
    ["incidents", "facts", "INC-1", "--source", "ticket 4471"],
    ["operators", "add", "o'brien", "--role", "viewer"],
    ["approve", "ab12cd34", "--reason", "ok"],
    ["audit", "verify", "--anchor", "x"],
])
def test_the_same_arguments_are_parsed(argv: list[str]) -> None:
    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(FULL.parse_args(argv))


@pytest.mark.parametrize("argv", [["statsu"], ["status", "--nope"], ["contain", "--ttl"], ["incidents", "show"]])
def test_usage_errors_read_the_same(argv: list[str]) -> None:
    def error(parser: argparse.ArgumentParser) -> str:
        out = io.StringIO()
        with contextlib.redirect_stderr(out), pytest.raises(SystemExit):
            parser.parse_args(argv)
        return out.getvalue()

    assert error(build_parser(argv[0])) == error(FULL)
