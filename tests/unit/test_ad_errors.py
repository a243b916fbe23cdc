"""Every ldap3 exception and LDAP result code the AD connector can meet maps to one connector error."""

from __future__ import annotations

import inspect
import ssl

import pytest
from ldap3.core import exceptions as lx

from connectors.active_directory.errors import from_exception, from_result
from connectors.errors import (
    AuthError,
    ConnectorError,
    InvalidInput,
    Rejected,
    Timeout,
    TLSError,
    Unreachable,
)

EXPECTED = {
    lx.LDAPResponseTimeoutError: Timeout,
    lx.LDAPSocketOpenError: Unreachable,
    lx.LDAPSocketReceiveError: Unreachable,
    lx.LDAPSocketSendError: Unreachable,
    lx.LDAPSocketCloseError: Unreachable,
    lx.LDAPSessionTerminatedByServerError: Unreachable,
    lx.LDAPCommunicationError: Unreachable,
    lx.LDAPMaximumRetriesError: Unreachable,
    lx.LDAPStartTLSError: TLSError,
    lx.LDAPCertificateError: TLSError,
    lx.LDAPSSLConfigurationError: TLSError,
    lx.LDAPBindError: AuthError,
    lx.LDAPPasswordIsMandatoryError: AuthError,
    lx.LDAPUserNameIsMandatoryError: AuthError,
    lx.LDAPInvalidFilterError: InvalidInput,
    lx.LDAPInvalidDnError: InvalidInput,
    lx.LDAPInvalidValueError: InvalidInput,
}

RESULTS = {
    49: AuthError, 48: AuthError, 8: TLSError, 13: TLSError, 50: Rejected, 3: Timeout, 51: Unreachable,
    52: Unreachable, 19: Rejected, 53: Rejected, 32: Rejected, 68: Rejected, 80: Rejected,
}


def _all_ldap3_exceptions() -> list[type[BaseException]]:
    return [cls for _, cls in inspect.getmembers(lx, inspect.isclass)
            if issubclass(cls, lx.LDAPException) and cls.__module__ == lx.__name__]


class TestExceptionMapping:
    @pytest.mark.parametrize(("exc_type", "expected"), list(EXPECTED.items()), ids=lambda x: getattr(x, "__name__", x))
    def test_exceptions_met_in_practice_map_to_the_documented_class(self, exc_type, expected):
        """The exceptions a DC conversation can raise map to the class the engine expects."""
        error = from_exception(exc_type("boom"), "bind")
        assert type(error) is expected
        assert error.transient is expected.transient

    def test_every_ldap3_exception_class_maps_to_a_specific_connector_error(self):
        """No ldap3 exception falls through to the bare ConnectorError base."""
        for cls in _all_ldap3_exceptions():
            if issubclass(cls, lx.LDAPOperationResult):
                exc = lx.LDAPOperationResult(result=50, description="insufficientAccessRights", message="")
            else:
                exc = cls("x")
            error = from_exception(exc, "op")
            assert isinstance(error, ConnectorError) and type(error) is not ConnectorError, cls.__name__

    def test_timeouts_hidden_in_socket_errors_are_timeouts(self):
        """ldap3 reports a receive timeout as a socket error whose text says 'timed out'."""
        assert type(from_exception(lx.LDAPSocketReceiveError("error receiving data: timed out"), "search")) is Timeout

    def test_operation_result_exceptions_use_the_result_code(self):
        """raise_exceptions-style result exceptions are classified by their LDAP result code."""
        exc = lx.LDAPOperationResult(result=49, description="invalidCredentials", message="... data 533, v1db1")
        error = from_exception(exc, "bind")
        assert isinstance(error, AuthError) and "account disabled" in str(error)


class TestHandshakeFailures:
    def test_certificate_verification_failure_is_tls(self):
        """An untrusted chain or wrong name recorded by StrictTls is a permanent TLSError."""
        failure = ssl.SSLCertVerificationError(1, "certificate verify failed")
        failure.verify_message, failure.verify_code = "Hostname mismatch", 62
        error = from_exception(lx.LDAPSocketOpenError("socket ssl wrapping error"), "connect", failure)
        assert type(error) is TLSError and "Hostname mismatch" in str(error) and not error.transient

    @pytest.mark.parametrize(("failure", "expected"), [
        (TimeoutError("The handshake operation timed out"), Timeout),
        (ConnectionResetError(104, "Connection reset by peer"), TLSError),
        (ssl.SSLError(1, "wrong version number"), TLSError),
        (ConnectionRefusedError(111, "refused"), Unreachable),
    ])
    def test_other_handshake_failures(self, failure, expected):
        """A silent peer times out; a peer that resets or speaks no TLS is a TLS problem, not a retry."""
        assert type(from_exception(lx.LDAPSocketOpenError("x"), "connect", failure)) is expected


class TestResultCodes:
    @pytest.mark.parametrize(("code", "expected"), list(RESULTS.items()))
    def test_result_codes(self, code, expected):
        """LDAP result codes map to the class that tells the engine whether to retry."""
        error = from_result({"result": code, "description": "d", "message": "m"}, "modify")
        assert type(error) is expected and error.detail["ldap_result"] == code

    @pytest.mark.parametrize(("data", "reason"), [("52e", "invalid credentials"), ("533", "account disabled"),
                                                  ("773", "must change"), ("775", "locked out"),
                                                  ("530", "logonHours")])
    def test_ad_bind_subcodes_are_explained(self, data, reason):
        """AD's 'data NNN' in a failed bind becomes words in the error."""
        msg = f"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1"
        assert reason in str(from_result({"result": 49, "description": "invalidCredentials", "message": msg}, "b"))
