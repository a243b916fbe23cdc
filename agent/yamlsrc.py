"""YAML loading that remembers where every value came from, so errors can name file, line and field.

Why not plain ``yaml.safe_load``: a responder fixing a broken inventory at 3 a.m. needs
``config/inventory.yaml:14: hosts.web01.address: '10.0.0.300' is not a valid IP address``, not a stack trace.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError

__all__ = ["Doc", "Node", "load_yaml"]

Path_ = tuple[str | int, ...]


class Doc:
    """A parsed YAML file: plain data plus the line of every key/item (``lines[path]``)."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int]) -> None:
        self.file, self.data, self.lines = file, data, lines

    def root(self) -> Node:
        return Node(self, (), self.data)


def load_yaml(path: Path | str, *, text: str | None = None) -> Doc:
    """Parse ``path`` (or ``text`` labelled as ``path``) keeping line numbers; duplicate keys are errors."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", file=file) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", file=file) from None
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {exc.problem or exc.context}", file=file, line=line) from None
    lines: dict[Path_, int] = {}
    constructor = yaml.constructor.SafeConstructor()

    def walk(n: yaml.Node, at: Path_) -> Any:
        lines[at] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise ConfigError("duplicate key", file=file, line=key_node.start_mark.line + 1,
                                      field=_dotted(at + (key,)))
                lines[at + (key,)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, at + (key,))
                lines[at + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, at + (i,)) for i, item in enumerate(n.value)]
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise ConfigError(str(exc.problem), file=file, line=n.start_mark.line + 1, field=_dotted(at)) from None

    data = walk(node, ()) if node is not None else {}
    return Doc(file, data, lines)


def _compose(text: str) -> yaml.Node | None:
    """libyaml's parser when present (≈ 15× faster: config, inventory and runbooks are read by every command).

    On a syntax error the pure-Python parser reads the text again: its messages and line numbers are the ones
    responders (and the tests) see, and a broken file is rare enough that the second parse costs nothing.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _dotted(at: Path_) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


class Node:
    """A value inside a :class:`Doc` with typed accessors that raise :class:`ConfigError` with file/line/field."""

    def __init__(self, doc: Doc, at: Path_, value: Any) -> None:
        self.doc, self.at, self.value = doc, at, value

    # -- location ---------------------------------------------------------------------------------------
    @property
    def field(self) -> str:
        return _dotted(self.at) or "(top level)"

    @property
    def line(self) -> int | None:
        at = self.at
        while at not in self.doc.lines and at:
            at = at[:-1]
        return self.doc.lines.get(at)

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.doc.file, line=self.line, field=self.field)

    # -- structure --------------------------------------------------------------------------------------
    def mapping(self, *, allowed: set[str] | None = None, required: set[str] = frozenset()) -> Node:  # type: ignore[assignment]
        if self.value is None:
            self.value = {}
        if not isinstance(self.value, Mapping):
            raise self.error(f"expected a mapping, got {_kind(self.value)}")
        if allowed is not None:
            for key in self.value:
                if key not in allowed:
                    raise self.child(key).error(
                        f"unknown field (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in self.value:
                raise self.error(f"missing required field '{key}'")
        return self

    def child(self, key: str | int) -> Node:
        value = self.value.get(key) if isinstance(self.value, Mapping) else (
            self.value[key] if isinstance(self.value, list) and isinstance(key, int) else None)
        return Node(self.doc, self.at + (key,), value)

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, Mapping) and key in self.value and self.value[key] is not None:
            return self.child(key)
        return None

    def opt_str(self, key: str, default: str = "") -> str:
        """The string at ``key``, or ``default`` when absent."""
        node = self.get(key)
        return node.str_() if node is not None else default

    def opt_bool(self, key: str, default: bool = False) -> bool:
        node = self.get(key)
        return node.bool_() if node is not None else default

    def items(self) -> Iterator[tuple[str, Node]]:
        self.mapping()
        for key in self.value:
            yield key, self.child(key)

    def elements(self) -> Iterator[Node]:
        if self.value is None:
            return
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_kind(self.value)}")
        for i in range(len(self.value)):
            yield self.child(i)

    # -- scalars ----------------------------------------------------------------------------------------
    def str_(self, *, pattern: re.Pattern[str] | None = None, what: str = "value") -> str:
        if isinstance(self.value, bool) or not isinstance(self.value, (str, int, float)):
            raise self.error(f"expected a string, got {_kind(self.value)}")
        text = str(self.value)
        if pattern is not None and not pattern.fullmatch(text):
            raise self.error(f"{text!r} is not a valid {what}")
        return text

    def int_(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.error(f"expected an integer, got {self.value!r}")
        if minimum is not None and self.value < minimum:
            raise self.error(f"{self.value} is below the minimum {minimum}")
        if maximum is not None and self.value > maximum:
            raise self.error(f"{self.value} is above the maximum {maximum}")
        return int(self.value)

    def float_(self, *, minimum: float = 0.0) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise self.error(f"expected a number, got {self.value!r}")
        if self.value < minimum:
            raise self.error(f"{self.value} is below the minimum {minimum}")
        return float(self.value)

    def bool_(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.value!r}")
        return self.value

    def str_list(self, *, pattern: re.Pattern[str] | None = None, what: str = "value") -> list[str]:
        if isinstance(self.value, str):
            raise self.error(f"expected a list, got a string (write [{self.value}])")
        return [n.str_(pattern=pattern, what=what) for n in self.elements()]

    def ip_address(self) -> str:
        text = self.str_()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise self.error(f"{text!r} is not a valid IP address") from None

    def address_or_hostname(self) -> str:
        text = self.str_()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            if re.fullmatch(r"[0-9.]+", text):
                raise self.error(f"{text!r} is not a valid IP address") from None
            if _HOSTNAME.fullmatch(text):
                return text
            raise self.error(f"{text!r} is neither an IP address nor a valid DNS name") from None

    def cidr(self) -> str:
        text = self.str_()
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise self.error(f"{text!r} is not a valid IP address or CIDR") from None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__)
