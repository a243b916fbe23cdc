"""Rules (``config/rules.yaml``): which alert runs which runbook, on which target, under which policy.

Rules are tried in file order; the **first** match wins. An alert no rule matches is recorded with disposition
``no-match`` and nothing else happens. See ``config/rules.yaml`` for an annotated example. A rule::

    - name: wazuh-ssh-compromise
      match:
        source: wazuh              # configured source name; glob allowed (default: any)
        rule_id: ["5712", "401*"]  # exact or glob, one or a list (default: any)
        rule_name: "Impossible*"   # the sender's rule name (Elastic rule name, Splunk search, Wazuh description)
        min_severity: 60           # 0-100 normalised severity (default 0)
        tags: [dmz, web]           # the target host carries at least one of these inventory tags (default: any)
      runbook: contain-compromised-host
      target: host                 # alert field naming the runbook's target: host | user | source_ip
      params:                      # runbook parameters: ${field} takes an alert field, anything else is literal
        user: ${user}
        source_ip: ${source_ip}
      policy: auto                 # auto | approve | dry-run  (a runbook saying `approval: approve` wins)
      ttl: 4h                      # optional: automatic release of what this rule applied
      on_resolved: record          # record (default): a resolved alert is stored and linked, nothing is undone;
                                   # release: the sender saying "resolved" releases what this rule's incident
                                   # applied (only for senders you trust to say so)

Matching runs in the webhook's request path, so it is pure and in memory (no I/O).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, InputError, NotFound
from agent.intake.model import NormalizedAlert
from agent.inventory import Inventory
from agent.runbook import find_runbook
from agent.validate import duration
from agent.yamlsrc import Node, load_yaml

__all__ = ["FIELDS", "POLICIES", "HostTags", "Rule", "RuleSet", "load_rules"]

FIELDS = ("host", "user", "source_ip", "rule_id", "severity", "source", "title", "rule_name")
POLICIES = ("auto", "approve", "dry-run")
_REF = re.compile(r"\$\{([a-z_]+)\}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_TARGET_FOR_KIND = {"host": "host", "account": "user", "address": "source_ip"}


@dataclass(frozen=True)
class Rule:
    name: str
    runbook: str
    target_field: str
    policy: str = "auto"
    sources: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    rule_names: tuple[str, ...] = ()
    min_severity: int = 0
    tags: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    ttl: timedelta | None = None
    on_resolved: str = "record"  # record | release
    line: int | None = None

    def matches(self, alert: NormalizedAlert, host_tags: Sequence[str]) -> bool:
        if self.sources and not any(fnmatch.fnmatchcase(alert.source, p) for p in self.sources):
            return False
        if self.rule_ids and not any(fnmatch.fnmatchcase(alert.rule_id, p) for p in self.rule_ids):
            return False
        if self.rule_names and not any(fnmatch.fnmatchcase(alert.rule_name, p) for p in self.rule_names):
            return False
        if alert.severity < self.min_severity:
            return False
        return not self.tags or bool(set(self.tags) & set(host_tags))

    def target(self, alert: NormalizedAlert) -> str | None:
        value = alert.fields().get(self.target_field)
        return str(value) if value not in (None, "") else None

    def bind(self, alert: NormalizedAlert) -> dict[str, Any]:
        """Runbook parameters for ``alert``: ``${field}`` references replaced, empty values dropped."""
        values = alert.fields()
        out: dict[str, Any] = {}
        for key, template in self.params.items():
            value = template
            if isinstance(template, str):
                whole = _REF.fullmatch(template)
                if whole:
                    value = values.get(whole.group(1))
                else:
                    value = _REF.sub(lambda m: str(values.get(m.group(1)) or ""), template)
            if value not in (None, ""):
                out[key] = value
        return out


class HostTags:
    """The inventory tags of a host named by name or address: all rule matching needs of the inventory.

    Built once from the inventory (dictionary lookups on the request path instead of a scan by address), and
    two plain maps, so the daemon's HTTP front process can match rules too (:meth:`from_maps`).
    """

    def __init__(self, inventory: Inventory) -> None:
        self.by_name = {name: tuple(h.tags) for name, h in inventory.hosts.items()}
        self.by_address: dict[str, tuple[str, ...]] = {}
        for h in inventory.hosts.values():
            self.by_address.setdefault(h.address, tuple(h.tags))  # the first host with the address, as before

    @classmethod
    def from_maps(cls, by_name: dict[str, tuple[str, ...]], by_address: dict[str, tuple[str, ...]]) -> HostTags:
        """The front's copy, from the two maps the link carries."""
        tags = cls.__new__(cls)
        tags.by_name, tags.by_address = by_name, by_address
        return tags

    def __call__(self, host: str) -> tuple[str, ...]:
        if host in self.by_name:
            return self.by_name[host]
        return self.by_address.get(host, ())


@dataclass
class RuleSet:
    rules: list[Rule]
    path: Path | None = None

    def match(self, alert: NormalizedAlert, hosts: Inventory | HostTags) -> Rule | None:
        """The first rule matching ``alert`` (``hosts`` gives the named host's tags), or None."""
        if not alert.host:
            tags: tuple[str, ...] = ()
        else:
            tags = hosts(alert.host) if isinstance(hosts, HostTags) else _inventory_tags(hosts, alert.host)
        for rule in self.rules:
            if rule.matches(alert, tags):
                return rule
        return None

    def route(self, alert: NormalizedAlert, hosts: Inventory | HostTags) -> tuple[Rule, str] | None:
        """``(rule, target)`` for an alert that should act on something, or None (no match, no target)."""
        if not alert.actionable:
            return None
        rule = self.match(alert, hosts)
        target = rule.target(alert) if rule is not None else None
        return (rule, target) if rule is not None and target is not None else None

    def named(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def _inventory_tags(inventory: Inventory, host: str) -> tuple[str, ...]:
    entry = inventory.hosts.get(host)
    if entry is None:
        entry = next((h for h in inventory.hosts.values() if h.address == host), None)
    return tuple(entry.tags) if entry is not None else ()


def load_rules(path: Path | None, runbooks: Path) -> RuleSet:
    """Read and validate the rules file (every runbook named must exist); a missing path means no rules."""
    if path is None:
        return RuleSet([], None)
    root = load_yaml(path).root().mapping(allowed={"rules"}, required={"rules"})
    rules = [_rule(node, runbooks) for node in root.child("rules").elements()]
    names = [r.name for r in rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise root.child("rules").child(i).error(f"duplicate rule name {name!r}")
    return RuleSet(rules, path)


def _strs(node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if isinstance(node.value, (str, int)) and not isinstance(node.value, bool):
        return (str(node.value),)
    return tuple(node.str_list())


def _rule(node: Node, runbooks: Path) -> Rule:
    node.mapping(allowed={"name", "description", "match", "runbook", "target", "params", "policy", "ttl",
                          "on_resolved"}, required={"name", "runbook"})
    name = node.child("name").str_(pattern=_NAME, what="rule name")
    match = node.child("match").mapping(allowed={"source", "rule_id", "rule_name", "min_severity", "tags"})
    book_node = node.child("runbook")
    try:
        book = find_runbook(runbooks, book_node.str_())
    except (InputError, NotFound, ConfigError) as exc:
        raise book_node.error(str(exc)) from None
    target_node = node.get("target")
    target = target_node.str_() if target_node else _TARGET_FOR_KIND[book.target]
    if target not in ("host", "user", "source_ip"):
        raise node.child("target").error(f"{target!r} is not one of host, user, source_ip")
    params: dict[str, Any] = {}
    for key, value in node.child("params").items():
        if key not in book.parameters:
            raise value.error(f"runbook {book.name} has no parameter {key!r} "
                              f"(known: {', '.join(sorted(book.parameters)) or 'none'})")
        for ref in _REF.findall(value.value) if isinstance(value.value, str) else ():
            if ref not in FIELDS:
                raise value.error(f"${{{ref}}} is not an alert field (known: {', '.join(FIELDS)})")
        params[key] = value.value
    policy = node.get("policy")
    policy_value = policy.str_() if policy else "auto"
    if policy_value not in POLICIES:
        raise node.child("policy").error(f"{policy_value!r} is not one of {', '.join(POLICIES)}")
    ttl_node = node.get("ttl")
    ttl = None
    if ttl_node is not None:
        try:
            ttl = duration(ttl_node.str_(), field="ttl")
        except InputError as exc:
            raise ttl_node.error(str(exc)) from None
    resolved_node = node.get("on_resolved")
    on_resolved = resolved_node.str_() if resolved_node else "record"
    if on_resolved not in ("record", "release"):
        raise node.child("on_resolved").error(f"{on_resolved!r} is not one of record, release")
    sev = match.get("min_severity")
    return Rule(name=name, runbook=book.name, target_field=target, policy=policy_value,
                sources=_strs(match.get("source")), rule_ids=_strs(match.get("rule_id")),
                rule_names=_strs(match.get("rule_name")),
                min_severity=sev.int_(minimum=0, maximum=100) if sev else 0, tags=_strs(match.get("tags")),
                params=params, ttl=ttl, on_resolved=on_resolved, line=node.line)
