"""Pure checks of the AD batch path: the hand-written BER is ldap3's to the byte, the pipelined exchange matches
answers by message ID and fails cleanly, and ``accounts`` lists are validated before anything connects."""

from __future__ import annotations

import threading
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as lx
from ldap3.operation.modify import modify_operation
from ldap3.operation.search import parse_filter
from ldap3.protocol.convert import build_controls_list
from ldap3.protocol.rfc2696 import paged_search_control
from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
from ldap3.utils.asn1 import encode

import connectors.active_directory as ad
from connectors.active_directory import batch, wire
from connectors.active_directory.accounts import guid_value, name_filter
from connectors.active_directory.session import ADSession
from connectors.errors import InvalidInput, Unreachable
from connectors.types import ConnectorContext, Credentials, Secret

from .test_ad_validation import OPTS, target

D, A, R = ldap3.MODIFY_DELETE, ldap3.MODIFY_ADD, ldap3.MODIFY_REPLACE


def ldap3_message(message_id: int, op_name: str, request: Any, controls: Any = None) -> bytes:
    """What ldap3's own ``send`` puts on the wire for this request."""
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName(op_name, request)
    built = build_controls_list(controls)
    if built is not None:
        message["controls"] = built
    return bytes(encode(message))


class TestEncoding:
    @pytest.mark.parametrize("dn", ["CN=a,DC=lab,DC=test", "CN=Smith\\, John (IT),CN=Users,DC=lab,DC=test",
                                    "CN=" + "x" * 130 + ",DC=lab,DC=test", "CN=" + "é" * 200 + ",DC=lab,DC=test"])
    @pytest.mark.parametrize("message_id", [1, 127, 128, 255, 256, 65535, 70000])
    def test_modify_is_byte_identical_to_ldap3(self, dn, message_id):
        """Our ModifyRequest framing equals ldap3's pyasn1 encoding, for short and long (multi-byte) lengths."""
        changes = [(D, "userAccountControl", ["512"]), (A, "userAccountControl", ["514"]),
                   (R, "logonHours", [bytes(21)]), (R, "description", []), (A, "description", ["ü" * 300, "b"])]
        grouped: dict[str, list[Any]] = {}
        for op, attribute, values in changes:
            grouped.setdefault(attribute, []).append((op, values))
        request = modify_operation(dn, grouped, True, None, None, False)
        assert wire.frame(message_id, wire.encode_modify(dn, changes)) == ldap3_message(message_id, "modifyRequest",
                                                                                          request)

    def test_search_and_paged_control_are_ldap3s(self):
        """Search requests are built by ldap3 (its filter parser and escaping); the paged control too."""
        from ldap3.operation.search import search_operation

        filt = name_filter(["a*)(x", "CN=Smith\\, J,CN=Users,DC=lab,DC=test", "名前"])
        request = search_operation("DC=lab,DC=test", filt, ldap3.SUBTREE, ldap3.DEREF_NEVER, ["cn", "objectGUID"],
                                   0, 0, False, True, True, None, validator=None, check_names=True)
        conn = type("Conn", (), {"auto_escape": True, "auto_encode": True, "check_names": True})()
        ours = wire.frame(9, wire.search_request(conn, "DC=lab,DC=test", filt, ["cn", "objectGUID"]),
                          wire.paged_control(1000, b"cookie"))
        assert ours == ldap3_message(9, "searchRequest", request, [paged_search_control(False, 1000, b"cookie")])

    def test_unsupported_values_are_refused(self):
        """Only str, int and bytes values are encoded; an unknown operation is an error, not a guess."""
        with pytest.raises(lx.LDAPInvalidValueError):
            wire.encode_modify("CN=a,DC=x", [(R, "description", [1.5])])
        with pytest.raises(lx.LDAPChangeError):
            wire.encode_modify("CN=a,DC=x", [("MODIFY_INCREMENT", "uidNumber", ["1"])])


class TestFilters:
    def test_name_filter_escapes_every_value(self):
        """Filter metacharacters in names become escapes; ldap3 parses the result into 2 terms per name."""
        filt = name_filter(["a*", ")(", "x\\", "CN=q\\, r,DC=lab,DC=test"])
        assert "a\\2a" in filt and "\\29\\28" in filt and "x\\5c" in filt and "*" not in filt
        assert "(distinguishedName=CN=q\\5c, r,DC=lab,DC=test)" in filt
        tree = parse_filter(filt, None, True, True, None, False)
        assert tree is not None

    def test_guid_value(self):
        """objectGUID values are the little-endian bytes, escaped by ldap3."""
        assert guid_value("00112233-4455-6677-8899-aabbccddeeff") == (
            "\\33\\22\\11\\00\\55\\44\\77\\66\\88\\99\\aa\\bb\\cc\\dd\\ee\\ff")


def _tlv(tag: int, body: bytes) -> bytes:
    return wire._tlv(tag, body)


def _result(tag: int, message_id: int, code: int, message: str = "", extra: bytes = b"") -> bytes:
    body = _tlv(0x0A, bytes([code])) + _tlv(0x04, b"") + _tlv(0x04, message.encode()) + extra
    return _tlv(0x30, wire._integer(message_id) + _tlv(tag, body))


def _entry(message_id: int, dn: str, attributes: dict[str, list[bytes]]) -> bytes:
    attrs = b"".join(_tlv(0x30, _tlv(0x04, k.encode()) + _tlv(0x31, b"".join(_tlv(0x04, v) for v in vs)))
                     for k, vs in attributes.items())
    return _tlv(0x30, wire._integer(message_id) + _tlv(0x64, _tlv(0x04, dn.encode()) + _tlv(0x30, attrs)))


class FakeConn:
    """Enough of a bound ldap3 connection for :func:`wire.exchange`: records what is sent, answers from a script.

    ``answer(ids)`` gets the message IDs sent so far and returns the raw messages for the next receiving().
    """

    def __init__(self, answer):
        self.answer = answer
        self.sent: list[int] = []
        self.bursts = 0
        self.closed, self.listening = False, True
        self.connection_lock = threading.RLock()
        self.auto_escape = self.auto_encode = self.check_names = True
        counter = iter(range(1, 10_000))
        self.server = type("S", (), {"next_message_id": staticmethod(lambda: next(counter))})()
        self.socket = type("Sock", (), {"sendall": self._sendall})()
        self.strategy = type("St", (), {"receiving": self._receiving})()
        self.answered: set[int] = set()

    def _sendall(self, data: bytes) -> None:
        self.bursts += 1
        while data:
            length, offset = ldap3.utils.asn1.compute_ber_size(data)
            message = data[:offset + length]
            data = data[offset + length:]
            id_len = message[offset + 1]
            self.sent.append(int.from_bytes(message[offset + 2:offset + 2 + id_len], "big"))

    def _receiving(self) -> list[bytes]:
        return self.answer(self)


def _modify_answers(order: str = "reverse", code: int = 0):
    def answer(conn: FakeConn) -> list[bytes]:
        pending = [i for i in conn.sent if i not in conn.answered]
        if order == "reverse":
            pending.reverse()
        conn.answered.update(pending)
        return [_result(0x67, i, code) for i in pending]
    return answer


class TestExchange:
    def test_answers_in_any_order_are_matched_by_message_id(self):
        """Replies come back in request order whatever order the server answers in."""
        conn = FakeConn(_modify_answers("reverse"))
        ops = [(wire.encode_modify(f"CN=u{i},DC=x", [(R, "description", [str(i)])]), b"") for i in range(10)]
        replies = wire.exchange(conn, ops)
        assert [r.code for r in replies] == [0] * 10 and conn.sent == list(range(1, 11))

    def test_window_bounds_unanswered_requests(self):
        """At most ``window`` requests are in flight: 10 requests with a window of 4 take 3 bursts."""
        conn = FakeConn(_modify_answers("in order"))
        ops = [(wire.encode_modify(f"CN=u{i},DC=x", [(R, "description", ["v"])]), b"") for i in range(10)]
        assert len(wire.exchange(conn, ops, window=4)) == 10 and conn.bursts == 3

    def test_cuts_stop_a_burst_at_an_exact_request_for_the_failpoints(self):
        """A crash test stops the batch at item K: a burst ends once K requests are written, ``on_sent`` sees
        K before any answer to them is read, ``on_answered`` counts answers; without cuts: one burst."""
        events: list[tuple[str, int, int]] = []
        conn = FakeConn(_modify_answers("in order"))
        ops = [(wire.encode_modify(f"CN=u{i},DC=x", [(R, "description", ["v"])]), b"") for i in range(10)]
        wire.exchange(conn, ops, cuts={3}, on_sent=lambda n: events.append(("sent", n, len(conn.answered))),
                      on_answered=lambda n: events.append(("answered", n, 0)))
        assert events[0] == ("sent", 3, 0) and ("sent", 10, 3) in events  # 3 written, none answered yet
        assert [e[1] for e in events if e[0] == "answered"] == list(range(1, 11))
        plain = FakeConn(_modify_answers("in order"))
        wire.exchange(plain, ops)
        assert plain.bursts == 1 and conn.bursts == 2

    def test_session_arms_the_batch_failpoints_only_when_asked(self, monkeypatch):
        """``AGENT_FAILPOINTS=ad-batch-sent:K`` reaches the exchange as a cut at K and hooks calling the
        agent's failpoints (``ad-batch-sent:K``, ``ad-batch-answered:K``); unarmed, the exchange gets nothing."""
        from connectors.active_directory import session
        monkeypatch.delenv("AGENT_FAILPOINTS", raising=False)
        assert session._batch_failpoints() == {}
        monkeypatch.setenv("AGENT_FAILPOINTS", "ad-batch-sent:7:pause,after-apply")
        hooks = session._batch_failpoints()
        assert hooks["cuts"] == {7}
        reached: list[str] = []
        monkeypatch.setattr("agent.failpoints.failpoint", reached.append)
        hooks["on_sent"](7)
        hooks["on_answered"](2)
        assert reached == ["ad-batch-sent:7", "ad-batch-answered:2"]

    def test_search_entries_references_and_result(self):
        """Entries (raw values), a continuation reference (skipped) and the result with a paged cookie."""
        cookie = _tlv(0x30, _tlv(0x02, b"\x00") + _tlv(0x04, b"next"))
        control = _tlv(0x30, _tlv(0x04, wire.PAGED_OID.encode()) + _tlv(0x04, cookie))

        def answer(conn: FakeConn) -> list[bytes]:
            i = conn.sent[-1]
            ref = _tlv(0x30, wire._integer(i) + _tlv(0x73, _tlv(0x04, b"ldap://x/DC=y")))
            done = _tlv(0x30, wire._integer(i) + _tlv(0x65, _tlv(0x0A, b"\x00") + _tlv(0x04, b"")
                                                      + _tlv(0x04, b"")) + _tlv(0xA0, control))
            return [_entry(i, "CN=é,DC=x", {"sAMAccountName": [b"e"], "objectGUID": [b"\x00\xff"]}), ref, done]

        conn = FakeConn(answer)
        (reply,) = wire.exchange(conn, [(wire.search_request(conn, "DC=x", "(cn=a)", ["cn"]), b"")])
        assert reply.entries == [{"dn": "CN=é,DC=x", "attributes": {"sAMAccountName": [b"e"],
                                                                     "objectGUID": [b"\x00\xff"]}}]
        assert reply.code == 0 and reply.cookie == b"next"

    def test_notice_of_disconnection_and_closed_connection_raise(self):
        """The server's notice of disconnection (message 0) or a closed socket end the exchange with an error."""
        notice = _tlv(0x30, wire._integer(0) + _tlv(0x78, _tlv(0x0A, b"\x34") + _tlv(0x04, b"") + _tlv(0x04, b"bye")
                                                         + _tlv(0x8A, b"1.3.6.1.4.1.1466.20036")))
        op = [(wire.encode_modify("CN=u,DC=x", [(R, "description", ["v"])]), b"")]
        with pytest.raises(lx.LDAPSessionTerminatedByServerError):
            wire.exchange(FakeConn(lambda conn: [notice]), op)
        with pytest.raises(lx.LDAPSessionTerminatedByServerError):
            wire.exchange(FakeConn(lambda conn: []), op)
        with pytest.raises(lx.LDAPSocketReceiveError):
            wire.exchange(FakeConn(lambda conn: [_result(0x67, 999, 0)]), op)

    def test_session_maps_a_broken_exchange_and_marks_the_connection(self):
        """Through ADSession a failed exchange is Unreachable (transient) and the connection is not pooled again."""
        conn = FakeConn(lambda c: [])
        session = ADSession(conn, OPTS, Credentials("agent", Secret("x")), None)
        with pytest.raises(Unreachable) as caught:
            session.modify_many([("CN=u,DC=x", [(R, "description", ["v"])])])
        assert caught.value.transient and session.broken and session.modifies == 1

    def test_result_codes_are_returned_not_raised(self):
        """Per-request result codes come back as they are: the caller decides per account."""
        conn = FakeConn(_modify_answers("in order", code=16))
        session = ADSession(conn, OPTS, Credentials("agent", Secret("x")), None)
        results = session.modify_many([("CN=u,DC=x", [(D, "userAccountControl", ["512"])])])
        assert results[0]["result"] == 16 and not session.broken


class TestAccountsArgument:
    def test_accounts_list_is_validated_entry_by_entry(self):
        """Each entry is checked like ``account``; the error names its index."""
        conn = ad.ActiveDirectoryConnector()
        conn.validate(target(), "disable_account", {"accounts": ["alice", "bob@lab.test", "CN=c,DC=lab,DC=test"]})
        with pytest.raises(InvalidInput, match=r"accounts\[1\]"):
            conn.validate(target(), "disable_account", {"accounts": ["alice", "a*"]})
        for bad in ([], "alice", None, ["x"] * (batch.MAX_ACCOUNTS + 1)):
            with pytest.raises(InvalidInput):
                conn.validate(target(), "disable_account", {"accounts": bad})
        assert conn.pool.opened == 0

    def test_protected_names_refuse_the_whole_batch_before_connecting(self):
        """Every protected name is listed in one error; nothing is connected."""
        conn = ad.ActiveDirectoryConnector()
        with pytest.raises(InvalidInput, match="protected") as caught:
            conn.validate(target(protected_accounts=["breakglass"]), "disable_account",
                          {"accounts": ["alice", "krbtgt", "Breakglass@lab.test", "administrator"]})
        assert caught.value.detail["accounts"] == ["krbtgt", "Breakglass@lab.test", "administrator"]
        assert conn.pool.opened == 0

    def test_accounts_only_for_disable_and_not_with_account(self):
        """Other actions take one account; giving both keys is an error."""
        conn = ad.ActiveDirectoryConnector()
        with pytest.raises(InvalidInput, match="only disable_account"):
            conn.validate(target(), "expire_sessions", {"accounts": ["alice"]})
        with pytest.raises(InvalidInput, match="either"):
            conn.validate(target(), "disable_account", {"account": "alice", "accounts": ["bob"]})

    def test_batch_preview_needs_no_connection(self):
        """The preview names the accounts, the single search and the compare-and-swap modifies."""
        conn = ad.ActiveDirectoryConnector()
        names = [f"u{i}" for i in range(12)]
        lines = conn.preview(target(), "disable_account", {"accounts": names}, ConnectorContext())
        assert "12 users in 1 request" in lines[0] and "'u0'" in lines[0] and "2 more" in lines[0]
        assert any("compare-and-swap" in line for line in lines) and conn.pool.opened == 0

    def test_single_preview_names_the_compare_and_swap(self):
        lines = ad.ActiveDirectoryConnector().preview(target(), "disable_account", {"account": "alice"},
                                                      ConnectorContext())
        assert "delete <old> add <old | 0x2>" in lines[0]


class TestAlreadySo:
    def test_snapshots_that_already_show_the_effect(self):
        """What the AD connector answers the engine after a crash (ConnectorBase.already_so): from the snapshot
        shapes its own snapshot functions write (disable.py, batch.py, groups.py)."""
        import base64

        from connectors.active_directory import ActiveDirectoryConnector
        from connectors.types import Snapshot
        conn = ActiveDirectoryConnector(pooled=False)
        zero = base64.b64encode(bytes(21)).decode()
        assert conn.already_so("disable_account", Snapshot({"account": {}, "userAccountControl": 0x202})) is True
        assert conn.already_so("disable_account", Snapshot({"account": {}, "userAccountControl": 0x200})) is False
        batch_snap = {"accounts": [{"status": "ok", "userAccountControl": 0x202}, {"status": "not_found"}]}
        assert conn.already_so("disable_account", Snapshot(batch_snap)) is True
        batch_snap["accounts"].append({"status": "ok", "userAccountControl": 0x10200})
        assert conn.already_so("disable_account", Snapshot(batch_snap)) is False
        assert conn.already_so("remove_privileged_groups", Snapshot({"to_remove": []})) is True
        assert conn.already_so("remove_privileged_groups", Snapshot({"to_remove": ["CN=x"]})) is False
        assert conn.already_so("expire_sessions", Snapshot({"logonHours": zero})) is True
        assert conn.already_so("expire_sessions", Snapshot({"logonHours": None})) is False
        assert conn.already_so("reset_password", Snapshot({})) is None
