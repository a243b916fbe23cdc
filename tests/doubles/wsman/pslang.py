"""The small part of PowerShell's syntax the double needs: single-quoted literals, arrays, parameters, errors.

Single-quoted strings follow PowerShell's rule: any of ``' ‘ ’ ‚ ‛`` ends the string unless it is immediately
followed by another of them (then the pair stands for the second one). Errors are rendered as the CLIXML
``powershell.exe -EncodedCommand`` writes to stderr when it has no console.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["QUOTES", "PSError", "Token", "clixml_error", "parse_params", "tokenize"]

QUOTES = "'\u2018\u2019\u201a\u201b"


class PSError(Exception):
    """A PowerShell error record: ``message`` plus category and id like the real ``ErrorRecord``."""

    def __init__(self, message: str, *, command: str = "", category: str = "NotSpecified",
                 error_id: str = "RuntimeException", terminating: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.command = command
        self.category = category
        self.error_id = error_id
        self.terminating = terminating


@dataclass(frozen=True)
class Token:
    """``kind`` is ``str`` (quoted literal), ``arr`` (``@(...)`` of literals), ``word`` or ``pipe``."""

    kind: str
    value: str | tuple[str, ...]


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    out = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch in QUOTES:
            if i + 1 < len(text) and text[i + 1] in QUOTES:
                out.append(text[i + 1])
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise PSError("The string is missing the terminator: '.", category="ParserError",
                  error_id="TerminatorExpectedAtEndOfString")


def tokenize(text: str) -> list[Token]:
    """Split one statement into literals, ``@()`` arrays, barewords and pipes (no expressions)."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in QUOTES:
            value, i = _read_quoted(text, i)
            tokens.append(Token("str", value))
        elif text.startswith("@(", i):
            i += 2
            items: list[str] = []
            while True:
                while i < len(text) and text[i] in " ,":
                    i += 1
                if i < len(text) and text[i] == ")":
                    i += 1
                    break
                if i >= len(text) or text[i] not in QUOTES:
                    raise PSError("Missing closing ')' in subexpression.", category="ParserError",
                                  error_id="MissingEndParenthesisInSubexpression")
                value, i = _read_quoted(text, i)
                items.append(value)
            tokens.append(Token("arr", tuple(items)))
        elif ch == "|":
            tokens.append(Token("pipe", "|"))
            i += 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "|" + QUOTES:
                j += 1
            tokens.append(Token("word", text[i:j]))
            i = j
    return tokens


def parse_params(command: str, tokens: list[Token], allowed: set[str]) -> tuple[dict[str, Token | None], bool]:
    """``-Name value`` pairs up to an optional ``| Out-Null``; switches map to None. Returns (params, out_null)."""
    params: dict[str, Token | None] = {}
    out_null = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "pipe":
            rest = tokens[i + 1:]
            if len(rest) == 1 and rest[0] == Token("word", "Out-Null"):
                out_null = True
                break
            raise PSError(f"{command} : unsupported pipeline in the double", error_id="PipelineUnsupported")
        if tok.kind != "word" or not str(tok.value).startswith("-"):
            raise PSError(f"{command} : A positional parameter cannot be found that accepts argument "
                          f"'{tok.value}'.", command=command, category="InvalidArgument",
                          error_id="PositionalParameterNotFound")
        name = str(tok.value)[1:]
        match = [a for a in allowed if a.lower() == name.lower()]
        if not match:
            raise PSError(f"{command} : A parameter cannot be found that matches parameter name '{name}'.",
                          command=command, category="InvalidArgument", error_id="NamedParameterNotFound")
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is None or nxt.kind == "pipe" or (nxt.kind == "word" and str(nxt.value).startswith("-")):
            params[match[0]] = None
            i += 1
        else:
            params[match[0]] = nxt
            i += 2
    return params, out_null


def _clix(text: str) -> str:
    return escape(text).replace("\r", "_x000D_").replace("\n", "_x000A_")


def clixml_error(err: PSError, line_no: int, line: str) -> str:
    """stderr of ``powershell -EncodedCommand`` for an error record, progress record included like the real one."""
    head = f"{err.command} : {err.message}" if err.command and not err.message.startswith(err.command) \
        else err.message
    parts = [head, f"At line:{line_no} char:1", f"+ {line[:120]}", "+ " + "~" * min(len(line), 60),
             (f"    + CategoryInfo          : {err.category}: (:) [{err.command or 'ScriptBlock'}], "
             f"{err.error_id}"), f"    + FullyQualifiedErrorId : {err.error_id}", " "]
    progress = ('<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
                '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules '
                'for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD>'
                '</PR></MS></Obj>')
    body = "".join(f'<S S="Error">{_clix(p + chr(13) + chr(10))}</S>' for p in parts)
    return ("#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">"
            f"{progress}{body}</Objs>")
