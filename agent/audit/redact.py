"""Secret redaction for audit records: by key name, by value shape, and for ``Secret`` objects.

Why here and not at every call site: call sites forget (StackStorm stored secrets in execution history). One walk
over every record, before it is hashed, makes "secrets never appear in the log" a property of the log itself.
The walk also turns values into plain JSON types, so nothing reaches the encoder as an object whose ``str()``
might carry a secret unexamined.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["REDACTED", "SECRET_KEY_PARTS", "is_secret_key", "redact_text", "redact_value"]

REDACTED = "***"

#: A key is secret when its name, lower-cased with ``-``/``_``/spaces removed, contains one of these.
SECRET_KEY_PARTS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "privatekey", "authorization",
    "cookie", "unicodepwd", "credential", "sessionkey", "accesskey", "signingkey",
)
_EXACT_SECRET_KEYS = frozenset({"pwd", "pass", "psk", "auth", "key", "bearer", "otp", "pin"})

_MAX_DEPTH = 32

_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM / OpenSSH private keys, including a block cut off before its END line.
    (re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
                re.DOTALL), REDACTED),
    # HTTP header lines that carry credentials.
    (re.compile(r"(?im)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|x-auth-token)(\s*[:=]\s*)[^\r\n]*"),
     r"\1\2" + REDACTED),
    # Authorization schemes inline: "Bearer abc...", "Basic dXNlcjpwYXNz", "token abc...".
    (re.compile(r"(?i)\b(bearer|basic|digest|negotiate|ntlm|token)(\s+)[A-Za-z0-9._~+/=:-]{6,}"),
     r"\1\2" + REDACTED),
    # key=value / key: value / "key": "value" for secret-looking key names.
    (re.compile(r"""(?ix)
        (["']?\b[\w.-]*(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key
                        |unicodepwd|credential)[\w.-]*["']?)
        (\s*[=:]\s*)
        ("[^"]*"|'[^']*'|[^\s,;&'"}\]]+)"""), r"\1\2" + REDACTED),
    # Credentials embedded in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # JSON Web Tokens and AWS access key ids.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
)
# Cheap pre-filter run on the lower-cased text: a text containing none of these words cannot match any pattern
# above. Tested as plain substrings (str.__contains__), which is several times faster on long texts such as
# command previews than a regex alternation of the same words (case-insensitive alternations slower still). Each
# is one scan of every long text recorded, so a word holding another one ("private key": "key", "authorization":
# "auth") is not listed: the shorter one already finds every text holding it.
_QUICK_WORDS: tuple[str, ...] = (
    "cookie", "bearer", "basic", "digest", "negotiate", "ntlm", "token", "pass", "pwd", "secret", "key",
    "credential", "://", "eyj", "akia", "asia", "auth")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Decide from a field name alone whether its value must be hidden (cached: field names repeat)."""
    folded = key.lower().replace("_", "").replace("-", "").replace(" ", "")
    if folded in _EXACT_SECRET_KEYS:
        return True
    return any(part in folded for part in SECRET_KEY_PARTS)


_known_clean: set[str] = set()


def redact_text(text: str) -> str:
    """Mask secret-looking substrings in free text (error messages, command output, headers).

    Why it is shaped like this: every audit record goes through here, dry-run plan records with ~12 KB of command
    previews among them, on the daemon's dispatcher thread. So the text is lower-cased once, the marker words it
    holds are found once (plain substring tests, the cheapest scan CPython has), and each pattern runs only when
    a word it needs is there; the key=value pattern is then tried only where a secret word sits. The result is
    the same as applying every pattern's own ``re.sub`` in turn (tested on generated texts).
    """
    if text in _known_clean:
        return text
    if len(text) > 128:
        return _redact_long(text) if len(text) <= _MEMO_MAX_CHARS else _redact_uncached(text)
    return _redact_uncached(text)


#: Longest text whose redaction is remembered: dry-run plans repeat the same ~2-5 KB command texts in every
#: record (one rehearsal per alert), so those are scanned once; long one-off texts (command output) are not kept.
_MEMO_MAX_CHARS = 32_768


@functools.lru_cache(maxsize=256)
def _redact_long(text: str) -> str:
    """:func:`_redact_uncached`, remembered by the exact text (bounded: at most 256 texts of ≤32 KB). Pure: the
    patterns are constants, so a remembered result equals a fresh one (tested); secrets added at run time
    (``Redactor.add_known``) are scrubbed after this, never cached here."""
    return _redact_uncached(text)


def _redact_uncached(text: str) -> str:
    lowered = text.lower()
    present = [word for word in _QUICK_WORDS if word in lowered]
    if not present:
        if len(text) <= 128:  # remember short clean values (target names, states): they repeat in every record
            if len(_known_clean) >= 8192:
                _known_clean.clear()
            _known_clean.add(text)
        return text
    if not text.isascii():  # lower-casing is exact for ASCII only (ſ, the Kelvin sign): every pattern, as written
        for pattern, replacement in _TEXT_PATTERNS:
            text = pattern.sub(replacement, text)
        return text
    # A replacement only puts "***" where a value was: it never creates a marker word, so ``found`` stays a
    # superset of the words in the text and is safe for skipping patterns.
    found = frozenset(present)
    for (pattern, replacement), needs, quick in zip(_TEXT_PATTERNS, _NEEDS, _NEEDS_QUICK, strict=True):
        if found.isdisjoint(quick) or not _holds_any(lowered, needs, found):
            continue  # ASCII text without any word this pattern requires: it cannot match
        if pattern is _KEY_VALUE:
            changed = _sub_key_value(text, lowered, found)
        elif pattern in _ANCHORED:
            changed = _sub_anchored(pattern, replacement, text, lowered,
                                    tuple(w for w in _ANCHORED[pattern] if _ANCHOR_QUICK[w] <= found))
        else:
            changed = pattern.sub(replacement, text)
        if changed != text:
            text, lowered = changed, changed.lower()
    return text


def _holds_any(lowered: str, words: tuple[str, ...], found: frozenset[str]) -> bool:
    """Whether ``lowered`` contains one of ``words``; a word that is itself a marker word is answered from
    ``found`` (the marker words of the text, or a superset) before the text is scanned for the others."""
    return any(word in found for word in words) or any(
        word in lowered for word in words if word not in _QUICK_SET and _WORD_QUICK[word] <= found)


def _sub_anchored(pattern: re.Pattern[str], replacement: str, text: str, lowered: str,
                  words: tuple[str, ...]) -> str:
    """``pattern.sub`` for a pattern whose every match starts at one of ``words`` (ASCII text, lower-cased as
    ``lowered``): tried only at those positions, in order, leftmost and non-overlapping like ``sub``.

    Why: a case-insensitive alternation is retried at every position of the text by ``sub``; finding the words
    with ``str.find`` first is an order of magnitude cheaper on long command previews.
    """
    starts: set[int] = set()
    for word in words:
        at = lowered.find(word)
        while at >= 0:
            starts.add(at)
            at = lowered.find(word, at + 1)
    if not starts:
        return text
    out: list[str] = []
    last = 0
    for at in sorted(starts):
        if at < last:
            continue
        found = pattern.match(text, at)
        if found is None:
            continue
        out.append(text[last:found.start()])
        out.append(found.group(1) + found.group(2) + REDACTED)  # = expand(r"\1\2***"), without parsing it
        last = found.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# The fast paths build the replacement of these three patterns by hand: it must stay r"\1\2***".
assert all(_TEXT_PATTERNS[i][1] == r"\1\2" + REDACTED for i in (1, 2, 3))

# Patterns whose every match starts where one of these lower-case words starts (see _sub_anchored).
_ANCHORED: dict[re.Pattern[str], tuple[str, ...]] = {
    _TEXT_PATTERNS[1][0]: ("proxy-authorization", "authorization", "cookie", "set-cookie", "x-api-key",
                           "x-auth-token"),
    _TEXT_PATTERNS[2][0]: ("bearer", "basic", "digest", "negotiate", "ntlm", "token"),
}

# Per pattern of _TEXT_PATTERNS: lower-case words one of which every match contains (checked on ASCII text only,
# where lower-casing is exact; other text runs every pattern).
_NEEDS: tuple[tuple[str, ...], ...] = (
    ("private key",),
    ("authorization", "cookie", "x-api-key", "x-auth-token"),
    ("bearer", "basic", "digest", "negotiate", "ntlm", "token"),
    ("pass", "pwd", "secret", "token", "key", "credential"),
    ("://",),
    ("eyj",),
    ("akia", "asia"),
)


# Per pattern: the marker words (:data:`_QUICK_WORDS`) inside its needed words; when none of them is in a text,
# none of the needed words is either (the cheap test run first).
_NEEDS_QUICK: tuple[frozenset[str], ...] = tuple(
    frozenset(q for q in _QUICK_WORDS for word in needs if q in word) for needs in _NEEDS)
# Per anchor word: the marker words inside it; all of them are in any text holding the anchor word.
_ANCHOR_QUICK: dict[str, frozenset[str]] = {
    word: frozenset(q for q in _QUICK_WORDS if q in word) for words in _ANCHORED.values() for word in words}
assert all(quick for quick in _NEEDS_QUICK) and all(_ANCHOR_QUICK.values()), "a needed word holds no marker word"
_QUICK_SET = frozenset(_QUICK_WORDS)
# Per needed word: the marker words inside it (a text lacking one of them cannot hold the word).
_WORD_QUICK: dict[str, frozenset[str]] = {
    word: frozenset(q for q in _QUICK_WORDS if q in word) for needs in _NEEDS for word in needs}

_KEY_VALUE = _TEXT_PATTERNS[3][0]
_KEY_VALUE_REPL = _TEXT_PATTERNS[3][1]
# The secret words of the key=value pattern, to be searched in lower-cased ASCII text: every match of the pattern
# contains one of them.
_KV_WORDS = re.compile(r"pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|access[_-]?key"
                       r"|private[_-]?key|unicodepwd|credential")
# Literal words every _KV_WORDS match contains (found with str.find, which is far cheaper than scanning the text
# with the alternation), and the name parts that may precede a "key" in a match.
_KV_LITERALS = ("pass", "pwd", "secret", "token", "credential")
_KEY_PREFIXES = ("api", "api_", "api-", "access", "access_", "access-", "private", "private_", "private-")
# ``[\w.-]`` on ASCII text (the only text the fast path sees), as a set: cheaper per character than a match.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _kv_hits(lowered: str, found: frozenset[str] | None = None) -> list[int]:
    """Sorted positions inside every occurrence of a :data:`_KV_WORDS` word in ``lowered`` (a superset of
    ``finditer``'s leftmost, non-overlapping ones): each literal where the word starts, "key" where it ends one.
    ``found``: the marker words of the text (or a superset), when known: words not among them are not searched."""
    hits = []
    for word in _KV_LITERALS:
        if found is not None and word not in found:
            continue
        at = lowered.find(word)
        while at >= 0:
            if _KV_WORDS.match(lowered, at):
                hits.append(at)
            at = lowered.find(word, at + 1)
    at = lowered.find("key") if found is None or "key" in found else -1
    while at >= 0:
        if lowered.endswith(_KEY_PREFIXES, 0, at):
            hits.append(at)
        at = lowered.find("key", at + 1)
    hits.sort()
    return hits


def _sub_key_value(text: str, lowered: str | None = None, markers: frozenset[str] | None = None) -> str:
    r"""``_KEY_VALUE.sub`` with the same result, trying only where a match can start.

    Why: that pattern opens with ``[\w.-]*``, so ``re.sub`` retries it from every position of every long word
    — quadratic in a word's length, ~5 ms for a 13 KB command preview holding the word "token" once, which every
    dry-run plan record paid. A match must contain a secret word (:func:`_kv_hits`) inside the run of name
    characters it starts in (or just after a quote before that run); so only the positions from the run's start
    up to each such word are tried, in order, with the pattern itself (``match`` at a position sees the characters
    before it, so ``\b`` behaves as in ``sub``). Matches are taken leftmost and non-overlapping, as ``sub`` takes
    them. The words are found in the lower-cased text (``lowered``, when the caller has it; ``markers``: the
    marker words it holds, when known), which is exact for ASCII; other text (``ſ`` and the Kelvin sign match
    ``s`` and ``k`` case-insensitively, and lower-casing can change lengths) goes through ``re.sub``.
    """
    if not text.isascii():
        return _KEY_VALUE.sub(_KEY_VALUE_REPL, text)
    out: list[str] = []
    last = 0  # end of the previous match: nothing before it can start a match
    tried = 0  # every position below this was tried and starts no match
    for hit in _kv_hits(text.lower() if lowered is None else lowered, markers):
        if hit < last:
            continue
        start = hit
        while start > last and text[start - 1] in _NAME_CHARS:
            start -= 1
        if start > last:
            start -= 1  # an opening quote before the name
        found = None
        for q in range(max(start, tried, last), hit + 1):
            found = _KEY_VALUE.match(text, q)
            if found is not None:
                break
        tried = max(tried, hit + 1)
        if found is None:
            continue
        out.append(text[last:found.start()])
        out.append(found.group(1) + found.group(2) + REDACTED)  # = expand(r"\1\2***"), without parsing it
        last = tried = found.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


_PLAIN = (type(None), bool, int, float)


def redact_value(value: Any, _depth: int = 0) -> Any:
    """Return a JSON-safe copy of ``value`` with every secret replaced by ``"***"``.

    Mappings recurse (secret keys masked whole), sequences recurse, ``Secret`` objects and bytes never pass,
    exceptions become ``"Type: message"`` with the message redacted, anything else becomes redacted ``str()``.
    """
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        if _depth >= _MAX_DEPTH:
            return "<nested too deep>"
        out: dict[str, Any] = {}
        for key, item in value.items():
            skey = key if type(key) is str else str(key)
            if is_secret_key(skey):
                out[skey] = REDACTED
            elif type(item) is str:
                out[skey] = redact_text(item)
            elif type(item) in _PLAIN:
                out[skey] = item
            else:
                out[skey] = redact_value(item, _depth + 1)
        return out
    return _redact_other(value, _depth)


def _redact_other(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(str(value))
    if isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, Mapping):
        return redact_value(dict(value.items()), depth)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [redact_value(item, depth + 1) for item in items]
    if type(value).__name__ == "Secret" or hasattr(value, "reveal"):
        return REDACTED
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "to_dict"):
        return redact_value(value.to_dict(), depth + 1)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return redact_value(dataclasses.asdict(value), depth + 1)
    return redact_text(str(value))
