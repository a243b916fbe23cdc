"""Runbooks: YAML files describing what to do to a target, step by step, and how to undo it.

A runbook names its primary target kind and parameters; each step is either ``action:`` (apply a connector action)
or ``undo:`` (undo the active, not yet undone, actions of that name on the target — this is how ``release-host``
works without storing the rules twice). Values like ``${confirm_seconds}`` are substituted from parameters.
Errors name the file, the line and the field.

Example::

    name: isolate-host
    target: host                 # host | account | address
    parameters:
      confirm_seconds: {type: int, default: 300}
    steps:
      - id: evidence
        action: capture_evidence
        on_error: continue       # evidence must never block containment
      - id: isolate
        action: isolate
        args: {confirm_seconds: "${confirm_seconds}"}
      - id: block-source
        action: block_ip
        target: source_ip
        on_refused: skip         # a refused target skips this step only (shown in the plan); abort: refuse all
    rollback: reverse            # on failure, undo finished steps in reverse order

``on_refused`` (default ``abort``) decides what a **refusal at planning time** does — a protected or invalid
target of this step, or arguments its connector rejects: ``abort`` refuses the whole plan before anything is
sent (the partial-outcome rule, docs/partial-outcomes.md); ``skip`` leaves this step out, says why in the plan
(``skipped`` in ``--json``, a note in the human plan, audited with the plan), and the other steps run.
``on_error`` is about failures while running; ``on_refused`` never lets a refused target be touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import InputError, NotFound
from agent.yamlsrc import Node, load_yaml

__all__ = ["Parameter", "Runbook", "Step", "find_runbook", "list_runbooks", "load_runbook"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ACTION = re.compile(r"[a-z][a-z0-9_]{0,62}")
_REF = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
_TYPES = {"int": int, "str": str, "bool": bool, "list": list, "float": float}
TARGET_KINDS = ("host", "account", "address")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any = None
    required: bool = False
    description: str = ""
    kind: str | None = None  # host | account | address: what a step naming this parameter as target acts on


@dataclass(frozen=True)
class Step:
    id: str
    action: str  # connector action to apply, or the action whose effects to undo when ``undo`` is True
    undo: bool = False
    target: str | None = None  # parameter naming this step's target; None = the runbook's target
    args: Mapping[str, Any] = field(default_factory=dict)
    on_error: str = "stop"  # stop | continue
    on_refused: str = "abort"  # abort | skip: a refused target of this step refuses the plan, or skips the step
    when: str | None = None  # parameter that must be truthy for the step to run
    via: str | None = None  # "user_hosts": run on every inventory host that lists the target account in `users`
    line: int | None = None


@dataclass(frozen=True)
class Runbook:
    name: str
    path: Path
    description: str
    target: str
    steps: tuple[Step, ...]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    os: tuple[str, ...] = ()
    require_reason: bool = False
    approval: str = "auto"
    rollback: str = "reverse"
    ttl: str | None = None
    irreversible_note: str = ""

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Check and complete parameter values (CLI/alert input); unknown or missing ones are errors."""
        values: dict[str, Any] = {}
        for key in given:
            if key not in self.parameters and key != "target":
                raise InputError(f"runbook {self.name}: unknown parameter {key!r} "
                                 f"(known: {', '.join(sorted(self.parameters)) or 'none'})")
        for name, spec in self.parameters.items():
            if name in given and given[name] is not None:
                value = given[name]
                if spec.type == "int" and isinstance(value, str) and value.isdigit():
                    value = int(value)
                if spec.type == "bool" and isinstance(value, str):
                    value = value.lower() in ("1", "true", "yes", "on")
                if not isinstance(value, _TYPES[spec.type]) or (spec.type == "int" and isinstance(value, bool)):
                    raise InputError(f"runbook {self.name}: parameter {name} must be {spec.type}, got {value!r}")
                values[name] = value
            elif spec.required:
                raise InputError(f"runbook {self.name}: parameter {name!r} is required")
            else:
                values[name] = spec.default
        return values

    def step_args(self, step: Step, values: Mapping[str, Any]) -> dict[str, Any]:
        """Substitute ``${param}`` in a step's args (whole-value references keep their type)."""
        def sub(v: Any) -> Any:
            if isinstance(v, str):
                whole = _REF.fullmatch(v)
                if whole:
                    return values.get(whole.group(1))
                return _REF.sub(lambda m: str(values.get(m.group(1), "")), v)
            if isinstance(v, list):
                return [sub(x) for x in v]
            if isinstance(v, dict):
                return {k: sub(x) for k, x in v.items()}
            return v
        return {k: sub(v) for k, v in step.args.items() if sub(v) is not None}


def load_runbook(path: Path | str) -> Runbook:
    """Parse and validate one runbook file."""
    doc = load_yaml(path)
    root = doc.root().mapping(
        allowed={"name", "description", "target", "parameters", "guards", "approval", "rollback", "ttl",
                 "steps", "irreversible"},
        required={"name", "target", "steps"})
    name = root.child("name").str_(pattern=_NAME, what="runbook name (lower case, digits, '-', '_')")
    target = root.child("target").str_()
    if target not in TARGET_KINDS:
        raise root.child("target").error(f"unknown target kind {target!r} (known: {', '.join(TARGET_KINDS)})")
    params = {n: _parameter(n, node) for n, node in root.child("parameters").items()}
    guards = root.child("guards").mapping(allowed={"os", "require_reason"})
    approval = root.get("approval")
    rollback = root.get("rollback")
    steps = tuple(_step(node, params) for node in root.child("steps").elements())
    if not steps:
        raise root.child("steps").error("a runbook needs at least one step")
    ids = [s.id for s in steps]
    for i, sid in enumerate(ids):
        if sid in ids[:i]:
            raise root.child("steps").child(i).error(f"duplicate step id {sid!r}")
    return Runbook(
        name=name,
        path=Path(path),
        description=root.opt_str("description"),
        target=target,
        steps=steps,
        parameters=params,
        os=tuple(guards.child("os").str_list()),
        require_reason=guards.opt_bool("require_reason"),
        approval=_choice(approval, ("auto", "approve", "dry-run"), "auto"),
        rollback=_choice(rollback, ("reverse", "none"), "reverse"),
        ttl=root.opt_str("ttl") or None,
        irreversible_note=root.opt_str("irreversible"),
    )


def _choice(node: Node | None, allowed: tuple[str, ...], default: str) -> str:
    if node is None:
        return default
    value = node.str_()
    if value not in allowed:
        raise node.error(f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _parameter(name: str, node: Node) -> Parameter:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise node.error(f"parameter name {name!r} must be lower_snake_case")
    node.mapping(allowed={"type", "default", "required", "description", "kind"}, required={"type"})
    type_ = node.child("type").str_()
    if type_ not in _TYPES:
        raise node.child("type").error(f"unknown type {type_!r} (known: {', '.join(_TYPES)})")
    default = node.value.get("default")
    if default is not None and not isinstance(default, _TYPES[type_]):
        raise node.child("default").error(f"default {default!r} is not of type {type_}")
    req = node.get("required")
    kind = node.get("kind")
    if kind is not None and kind.str_() not in TARGET_KINDS:
        raise kind.error(f"unknown kind {kind.value!r} (known: {', '.join(TARGET_KINDS)})")
    return Parameter(name=name, type=type_, default=default, required=req.bool_() if req else False,
                     description=node.opt_str("description"),
                     kind=kind.str_() if kind is not None else None)


def _step(node: Node, params: Mapping[str, Parameter]) -> Step:
    node.mapping(allowed={"id", "action", "undo", "target", "args", "on_error", "on_refused", "when",
                          "description", "via"}, required={"id"})
    has_action, has_undo = node.get("action") is not None, node.get("undo") is not None
    if has_action == has_undo:
        raise node.error("a step needs exactly one of 'action' (apply) or 'undo' (undo a previous action)")
    key = "action" if has_action else "undo"
    action = node.child(key).str_(pattern=_ACTION, what="action name (lower_snake_case)")
    args_node = node.child("args").mapping()
    for ref_holder in _refs(args_node.value):
        if ref_holder not in params:
            raise args_node.error(f"refers to undefined parameter ${{{ref_holder}}}")
    target = node.get("target")
    target_param = None
    if target is not None:
        target_param = target.str_()
        if target_param not in params:
            raise target.error(f"target must name a parameter (known: {', '.join(sorted(params)) or 'none'})")
        if params[target_param].kind is None:
            raise target.error(f"parameter {target_param!r} used as a target needs 'kind' (host, account, address)")
    when = node.get("when")
    if when is not None and when.str_() not in params:
        raise when.error(f"'when' must name a parameter (known: {', '.join(sorted(params)) or 'none'})")
    return Step(
        id=node.child("id").str_(pattern=_NAME, what="step id"),
        action=action,
        undo=has_undo,
        target=target_param,
        args=dict(args_node.value),
        on_error=_choice(node.get("on_error"), ("stop", "continue"), "stop"),
        on_refused=_choice(node.get("on_refused"), ("abort", "skip"), "abort"),
        when=when.str_() if when is not None else None,
        via=_choice(node.get("via"), ("user_hosts",), "") or None,
        line=node.line,
    )


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    return []


def list_runbooks(directory: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def find_runbook(directory: Path, name_or_path: str) -> Runbook:
    """Load a runbook by name (from the runbooks directory) or by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_runbook(p)
    if not _NAME.fullmatch(name_or_path):
        raise InputError(f"runbook: {name_or_path!r} is not a runbook name or an existing .yaml file")
    known = list_runbooks(directory)
    if name_or_path not in known:
        raise NotFound(f"runbook {name_or_path!r} not found in {directory} "
                       f"(known: {', '.join(sorted(known)) or 'none'})")
    return load_runbook(known[name_or_path])


