"""Shell completion for bash, zsh and fish: commands and options from the parser, names from the inventory/journal.

The scripts are generated from the argparse parser itself, so a new option completes without anyone editing a
script. Dynamic values (host names, tags, sites, devices, directories, runbooks, incident ids) are asked of
``agent completion --list KIND`` at the moment of completion; names come from the YAML files (tens of
milliseconds), incident ids from the journal through the one store, as ``agent incidents list`` reads them (about
a cold ``agent status``: issue 21 forbids a second query path). Completion never fails loudly: a missing or broken
configuration or an unreachable journal completes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent import paths

__all__ = ["KINDS", "list_values", "script"]

KINDS = ("hosts", "tags", "sites", "devices", "directories", "runbooks", "incidents")

# option → kind of value it takes (completed dynamically); options not listed complete nothing after them
_OPTION_KINDS = {"--host": "hosts", "-H": "hosts", "--tag": "tags", "--site": "sites", "--on": "devices",
                 "--directory": "directories", "--runbook": "runbooks", "-r": "runbooks",
                 "--incident": "incidents", "--incident-all": "incidents"}
# command → kind of its first positional argument
_POSITIONAL_KINDS = {"run": "runbooks", "plan": "runbooks", "show": "incidents", "facts": "incidents"}
_FILE_OPTIONS = ("--config", "-c", "--from-file", "--events", "-o", "--output")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (bash, zsh or fish)."""
    commands = _subcommands(parser)
    if shell == "fish":
        return _fish(commands)
    body = _bash(commands)
    if shell == "zsh":
        head = "# agent completion for zsh (bash-style, through bashcompinit)\n"
        return head + "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _bash(commands: dict[str, argparse.ArgumentParser]) -> str:
    cases = []
    for name, sub in sorted(commands.items()):
        nested = _subcommands(sub)
        words = " ".join(sorted(nested)) if nested else ""
        cases.append(f'    {name}) opts="{" ".join(_options(sub))}"; subs="{words}";;')
    kinds = "\n".join(f"    {opt}) kind={kind};;" for opt, kind in _OPTION_KINDS.items())
    files = "|".join(_FILE_OPTIONS)
    positional = "\n".join(f"      {cmd}) kind={kind};;" for cmd, kind in _POSITIONAL_KINDS.items())
    return f"""# agent completion for bash: eval "$(agent completion bash)" in ~/.bashrc
_agent_complete() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="${{COMP_WORDS[1]}}"
  local kind="" opts="" subs=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(sorted(commands))}" -- "$cur")); return 0
  fi
  case "$prev" in
    {files}) COMPREPLY=($(compgen -f -- "$cur")); return 0;;
{kinds}
  esac
  case "$cmd" in
{chr(10).join(cases)}
  esac
  if [ -z "$kind" ] && [[ "$cur" != -* ]]; then
    if [ -n "$subs" ] && [ "$COMP_CWORD" -eq 2 ]; then
      COMPREPLY=($(compgen -W "$subs" -- "$cur")); return 0
    fi
    local at="$cmd"; [ -n "$subs" ] && at="${{COMP_WORDS[2]}}"
    case "$at" in
{positional}
    esac
  fi
  if [ -n "$kind" ]; then
    local head=""  # --host web01,we<TAB>: complete the item after the last comma
    if [ "$kind" = hosts ] && [[ "$cur" == *,* ]]; then head="${{cur%,*}},"; cur="${{cur##*,}}"; fi
    local v; COMPREPLY=()  # names may hold quotes or spaces (o'brien-pc): match literally, insert quoted
    while IFS= read -r v; do
      [[ "$v" == "$cur"* ]] && COMPREPLY+=("$head$(printf '%q' "$v")")
    done < <(agent completion --list "$kind" 2>/dev/null)
    return 0
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _agent_complete agent
"""


def _fish(commands: dict[str, argparse.ArgumentParser]) -> str:
    lines = ["# agent completion for fish: agent completion fish > ~/.config/fish/completions/agent.fish",
             "complete -c agent -f"]
    for name, sub in sorted(commands.items()):
        text = (sub.description or "").replace("'", "\\'")[:60]
        lines.append(f"complete -c agent -n '__fish_use_subcommand' -a {name} -d '{text}'")
        for opt in _options(sub):
            kind = _OPTION_KINDS.get(opt)
            values = f" -x -a '(agent completion --list {kind} 2>/dev/null)'" if kind else ""
            if opt in _FILE_OPTIONS:
                values = " -r -F"
            lines.append(f"complete -c agent -n '__fish_seen_subcommand_from {name}' -l {opt[2:]}{values}")
    for cmd, kind in _POSITIONAL_KINDS.items():
        lines.append(f"complete -c agent -n '__fish_seen_subcommand_from {cmd}' "
                     f"-a '(agent completion --list {kind} 2>/dev/null)'")
    return "\n".join(lines) + "\n"


def list_values(kind: str, config: Path) -> list[str]:
    """Values of one kind for completion; empty when the configuration cannot be read (never an error)."""
    try:
        import yaml

        settings = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        base = config.parent
        if kind == "runbooks":
            given = settings.get("runbooks")
            folder = _resolve(base, given) if given else paths.shipped_runbooks()
            return sorted(p.stem for p in folder.glob("*.yaml"))
        if kind == "incidents":
            try:
                return _incidents(config)
            except Exception:  # noqa: BLE001 - a TAB press never prints a traceback (config, database, driver)
                return []
        inventory = yaml.safe_load(_resolve(base, settings.get("inventory", "inventory.yaml"))
                                   .read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, AttributeError, TypeError, ImportError):
        return []
    except Exception as exc:  # yaml's errors: completion must never print a traceback
        if type(exc).__module__.startswith("yaml"):
            return []
        raise
    section = {"hosts": "hosts", "devices": "devices", "directories": "directories"}.get(kind)
    hosts = inventory.get("hosts") or {}
    if section:
        return sorted(str(name) for name in (inventory.get(section) or {}))
    if kind == "tags":
        return sorted({str(t) for h in hosts.values() if isinstance(h, dict) for t in (h.get("tags") or [])})
    if kind == "sites":
        return sorted({str(h["site"]) for h in hosts.values() if isinstance(h, dict) and h.get("site")})
    return []


def _resolve(base: Path, value: object) -> Path:
    text = str(value)
    text = text.removeprefix("sqlite:///")
    path = Path(text.removeprefix("file:")).expanduser()
    return path if path.is_absolute() else base / path


def _incidents(config: Path) -> list[str]:
    """Newest first, through the one store and :func:`agent.journal_reads.recent_incidents` — the read
    ``incidents list`` makes (issue 21: no second query path), so PostgreSQL journals complete too. Pressing TAB
    never creates a SQLite journal, and waits at most 2 s for a PostgreSQL server (libpq's PGCONNECT_TIMEOUT)."""
    from agent import journal_reads
    from agent.config import load_settings
    from agent.store import Store

    url = load_settings(config).database_url()
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return []
    os.environ.setdefault("PGCONNECT_TIMEOUT", "2")
    store = Store(url)
    try:
        with store.session() as s:
            return [i.id for i in journal_reads.recent_incidents(s, limit=200)]
    finally:
        store.close()
