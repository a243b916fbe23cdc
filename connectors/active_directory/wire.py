"""Pipelined LDAP on one bound ldap3 connection: many requests in flight, answers matched by message ID.

Why: disabling 100 accounts one request at a time pays 100 client→DC→client turns plus ldap3's per-request
bookkeeping (it decodes every request it sends back into a dict, and runs every search entry through its
attribute formatters). Here the requests of a batch are written back to back on the connection the session
already holds (at most ``WINDOW`` unanswered), and the answers are read as they come and matched by message ID,
so the DC is never idle waiting for the client. Nothing else changes: same TLS socket, same bind, same server.

What is ours and what is ldap3's:

- ``encode_modify`` writes a ModifyRequest (RFC 4511 §4.6) in BER by hand: a DN, attribute names and values as
  OCTET STRINGs — no filter, nothing to escape. The unit tests prove it byte-identical to ldap3's encoder.
- Search requests (the filter!) are always built by ldap3 (``search_operation``: its filter parser and
  escaping) and encoded by ldap3's pyasn1 encoder; only the finished bytes are kept (``_search_op``, an LRU
  cache keyed by the request's fields), so the verify of a batch re-sends the snapshot's exact bytes instead
  of parsing and encoding a 200-term filter again.
- Answers are split into messages by ldap3's own ``receiving()`` and decoded by its BER decoder
  (``decode_message_fast``); results by ``ldap_result_to_dict_fast``. Only the last step — search entries to
  ``{"dn", "attributes": {name: [bytes]}}`` — is ours, because ldap3's formatter costs ≈ 0.2 ms per entry.

Failures: socket/TLS errors and timeouts surface as the ldap3 exceptions the session already maps
(``LDAPSocketReceiveError``, ``LDAPSocketSendError``); a server that closes the connection or sends a notice of
disconnection raises ``LDAPSessionTerminatedByServerError``. Result codes are returned, never raised here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import ldap3
from ldap3.core import exceptions as lx
from ldap3.operation.search import search_operation
from ldap3.protocol.convert import build_controls_list
from ldap3.protocol.rfc2696 import paged_search_control
from ldap3.protocol.rfc4511 import ProtocolOp
from ldap3.strategy.base import BaseStrategy
from ldap3.utils.asn1 import decode_message_fast, encode, ldap_result_to_dict_fast

__all__ = ["WINDOW", "Reply", "encode_modify", "exchange", "frame", "search_request"]

WINDOW = 64  # unanswered requests at most: ≈ 15 KB of modifies, far below any socket buffer
PAGED_OID = "1.2.840.113556.1.4.319"
_OPS = {ldap3.MODIFY_ADD: 0, ldap3.MODIFY_DELETE: 1, ldap3.MODIFY_REPLACE: 2}
_SEARCH_ENTRY, _SEARCH_DONE, _SEARCH_REF, _EXTENDED = 4, 5, 19, 24
_DISCONNECTION = b"1.3.6.1.4.1.1466.20036"

Change = tuple[str, str, Sequence[Any]]  # (ldap3.MODIFY_*, attribute, values)


# -- BER ----------------------------------------------------------------------------------------------------
def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _octets(value: Any) -> bytes:
    if isinstance(value, bytes):
        return _tlv(0x04, value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise lx.LDAPInvalidValueError(f"modify value of type {type(value).__name__} is not supported")
    return _tlv(0x04, str(value).encode("utf-8"))


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def encode_modify(dn: str, changes: Sequence[Change]) -> bytes:
    """The protocolOp of ``ModifyRequest(dn, changes)``, e.g. ``[(MODIFY_DELETE, "userAccountControl", ["512"])]``."""
    parts = []
    for op, attribute, values in changes:
        if op not in _OPS:
            raise lx.LDAPChangeError(f"unknown modify operation {op!r}")
        vals = _tlv(0x31, b"".join(_octets(v) for v in values))
        parts.append(_tlv(0x30, _tlv(0x0A, bytes([_OPS[op]])) + _tlv(0x30, _octets(attribute) + vals)))
    return _tlv(0x66, _octets(dn) + _tlv(0x30, b"".join(parts)))


def frame(message_id: int, op: bytes, controls: bytes = b"") -> bytes:
    """An LDAPMessage: ``SEQUENCE { messageID, protocolOp, [0] controls OPTIONAL }``."""
    return _tlv(0x30, _integer(message_id) + op + controls)


@functools.lru_cache(maxsize=64)
def _search_op(base: str, filt: str, scope: str, attributes: tuple[str, ...], size_limit: int,
               auto_escape: bool, auto_encode: bool, check_names: bool) -> bytes:
    request = search_operation(base, filt, scope, ldap3.DEREF_NEVER, list(attributes), size_limit, 0, False,
                               auto_escape, auto_encode, None, validator=None, check_names=check_names)
    return bytes(encode(ProtocolOp().setComponentByName("searchRequest", request)))


def search_request(conn: ldap3.Connection, base: str, filt: str, attributes: Sequence[str], *,
                   scope: str = ldap3.SUBTREE, size_limit: int = 0, cached: bool = True) -> bytes:
    """The protocolOp of a SearchRequest, built and escaped by ldap3 exactly as ``conn.search`` would.

    ``cached=False`` for one-off requests (base reads of single entries) so they do not evict batch filters.
    """
    build = _search_op if cached else _search_op.__wrapped__
    return build(base, filt, scope, tuple(attributes), size_limit, bool(conn.auto_escape),
                 bool(conn.auto_encode), bool(conn.check_names))


def paged_control(size: int, cookie: bytes | None) -> bytes:
    """``[0] Controls`` holding a simple paged results control (RFC 2696), encoded by ldap3."""
    return bytes(encode(build_controls_list([paged_search_control(False, size, cookie)])))


# -- exchange -----------------------------------------------------------------------------------------------
class Reply:
    """Everything the server answered to one request: search entries (raw values) and the final result."""

    __slots__ = ("controls", "entries", "result")

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self.controls: dict[str, Any] = {}

    @property
    def code(self) -> int:
        return int(self.result.get("result", -1))

    @property
    def cookie(self) -> bytes:
        value = self.controls.get(PAGED_OID, {}).get("value") or {}
        return bytes(value.get("cookie") or b"")


def _entry(payload: Any) -> dict[str, Any]:
    attributes: dict[str, list[bytes]] = {}
    for attribute in payload[1][3]:
        name = bytes(attribute[3][0][3]).decode("utf-8")
        attributes[name] = [bytes(v[3]) for v in attribute[3][1][3]]
    return {"dn": bytes(payload[0][3]).decode("utf-8"), "attributes": attributes}


def _messages(conn: ldap3.Connection) -> Iterator[dict[str, Any]]:
    messages = conn.strategy.receiving()
    if not messages:
        raise lx.LDAPSessionTerminatedByServerError("the server closed the connection")
    for raw in messages:
        yield decode_message_fast(raw)


def exchange(conn: ldap3.Connection, requests: Sequence[tuple[bytes, bytes]],
             window: int = WINDOW, *, cuts: Collection[int] = (),
             on_sent: Callable[[int], None] | None = None,
             on_answered: Callable[[int], None] | None = None) -> list[Reply]:
    """Send ``(protocolOp, controls)`` requests pipelined on ``conn``; return one Reply per request, in order.

    Crash tests (the agent's failpoints) need to stop a batch at an exact item although requests leave in
    bursts: ``cuts`` ends a burst once that many requests are written; ``on_sent(n)`` runs after each write
    with the number written so far (before any answer to them is read), ``on_answered(n)`` after the answer
    to the n-th request to complete was read. Without them the exchange is unchanged.
    """
    replies: list[Reply] = [Reply() for _ in requests]
    by_id: dict[int, int] = {}
    sent = done = 0
    with conn.connection_lock:
        if conn.closed or not conn.listening:
            raise lx.LDAPSocketOpenError("the connection is not open")
        while done < len(requests):
            if sent < len(requests) and sent - done < window:
                burst: list[bytes] = []
                while sent < len(requests) and sent - done < window and not (burst and sent in cuts):
                    message_id = conn.server.next_message_id()
                    by_id[message_id] = sent
                    burst.append(frame(message_id, *requests[sent]))
                    sent += 1
                try:
                    conn.socket.sendall(b"".join(burst))
                except OSError as exc:
                    raise lx.LDAPSocketSendError(f"error sending data: {exc}") from exc
                if on_sent is not None:
                    on_sent(sent)
            for message in _messages(conn):
                message_id = int(message["messageID"])
                if message_id == 0 or message_id not in by_id:
                    _unsolicited(message)
                    continue
                reply = replies[by_id[message_id]]
                op = message["protocolOp"]
                if op == _SEARCH_ENTRY:
                    reply.entries.append(_entry(message["payload"]))
                elif op == _SEARCH_REF:
                    continue
                else:
                    reply.result = ldap_result_to_dict_fast(message["payload"])
                    if message["controls"]:
                        reply.controls = _controls(message["controls"])
                    del by_id[message_id]
                    done += 1
                    if on_answered is not None:
                        on_answered(done)
    return replies


def _controls(raw: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for control in raw:
        oid, value = BaseStrategy.decode_control_fast(control[3])
        out[oid] = value
    return out


def _unsolicited(message: Mapping[str, Any]) -> None:
    """A notice of disconnection (or anything unexpected) ends the exchange: the connection is unusable."""
    name = b""
    if message["protocolOp"] == _EXTENDED:
        name = next((bytes(p[3]) for p in message["payload"] if (p[0], p[2]) == (2, 10)), b"")  # [10] responseName
    if name == _DISCONNECTION:
        raise lx.LDAPSessionTerminatedByServerError("the server sent a notice of disconnection")
    raise lx.LDAPSocketReceiveError(f"unexpected message {message['messageID']} from the server")
