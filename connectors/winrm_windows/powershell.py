"""Safe PowerShell text: quoting, value validation and the ``-EncodedCommand`` command line.

Every value the connector puts into a script goes through :func:`ps_quote` (a single-quoted PowerShell literal,
the only literal form in which ``$``, backticks and ``$()`` are inert) after a field-specific validator has
rejected anything that has no business in that field. PowerShell also treats the typographic quotes
U+2018..U+201B as single quotes, so those are doubled too — a classic escape that plain ``'`` doubling misses.
"""

from __future__ import annotations

import base64
import ipaddress
import re

from connectors.errors import InvalidInput

__all__ = [
    "CMD_LINE_LIMIT",
    "POWERSHELL_PREFIX",
    "command_line",
    "encode_command",
    "ps_array",
    "ps_quote",
    "validate_address_token",
    "validate_network",
    "validate_port",
    "validate_user_name",
]

#: cmd.exe refuses command lines longer than this (``The command line is too long.``).
CMD_LINE_LIMIT = 8191
POWERSHELL_PREFIX = "powershell -NoProfile -NonInteractive -EncodedCommand "

_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Windows account names: letters, digits, space, dot, dash, underscore; optional DOMAIN\ prefix.
_USER = re.compile(r"^(?:(?P<domain>[\w][\w.\-]{0,63})\\)?(?P<user>[\w.\-](?:[\w.\- ]{0,62}[\w.\-])?)$")
# Firewall address tokens read back from a host: IPs, CIDRs, ranges or the few keywords Windows prints.
_ADDRESS_KEYWORDS = {"any", "localsubnet", "dns", "dhcp", "wins", "defaultgateway", "internet", "intranet",
                     "intranetremoteaccess", "playtodevice"}


def ps_quote(value: str, *, field: str = "value") -> str:
    """Render ``value`` as a single-quoted PowerShell literal; control characters are refused, never escaped."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__}", detail={"field": field})
    if _CONTROL.search(value):
        raise InvalidInput(f"{field} contains a control character or line break: {value!r}",
                           detail={"field": field, "value": value})
    out = []
    for ch in value:
        out.append(ch + ch if ch in _SINGLE_QUOTES else ch)
    return "'" + "".join(out) + "'"


def ps_array(values: list[str], *, field: str = "value") -> str:
    """``@('a','b')`` with every element quoted by :func:`ps_quote`."""
    return "@(" + ",".join(ps_quote(v, field=field) for v in values) + ")"


def encode_command(script: str) -> str:
    """Base64 of the UTF-16LE script, as ``powershell -EncodedCommand`` expects."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def command_line(script: str) -> str:
    """The full cmd.exe command line that runs ``script``; may exceed :data:`CMD_LINE_LIMIT` (caller chunks)."""
    return POWERSHELL_PREFIX + encode_command(script)


def validate_user_name(value: object, *, field: str = "user") -> tuple[str | None, str]:
    """Split ``DOMAIN\\user`` or ``user`` after refusing quotes, ``;``, ``$()``, backticks, newlines, controls."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be a non-empty string", detail={"field": field})
    m = _USER.match(value)
    if m is None:
        raise InvalidInput(f"{field} {value!r} is not a valid Windows account name "
                           "(letters, digits, space, '.', '-', '_', optional DOMAIN\\ prefix)",
                           detail={"field": field, "value": value})
    return m.group("domain"), m.group("user")


def validate_network(value: object, *, field: str = "address") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP address or CIDR parsed by :mod:`ipaddress`; anything else is refused."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an IP address string", detail={"field": field})
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidInput(f"{field} {value!r} is not an IP address or network",
                           detail={"field": field, "value": value}) from None


def validate_address_token(value: str, *, field: str = "RemoteAddress") -> str:
    """A firewall address token as Windows prints it (IP, CIDR, mask, range or keyword); used on host output."""
    token = value.strip()
    if token.lower() in _ADDRESS_KEYWORDS:
        return token
    parts = token.split("-")
    try:
        if len(parts) == 2:
            ipaddress.ip_address(parts[0])
            ipaddress.ip_address(parts[1])
        elif len(parts) == 1:
            ipaddress.ip_network(token, strict=False)
        else:
            raise ValueError(token)
    except ValueError:
        raise InvalidInput(f"{field} token {value!r} is not an address, range or keyword",
                           detail={"field": field, "value": value}) from None
    return token


def validate_port(value: object, *, field: str = "port") -> int:
    """A TCP port number 1..65535 (bools refused: ``True`` is not port 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidInput(f"{field} must be an integer 1..65535, got {value!r}",
                           detail={"field": field, "value": value})
    return value
