"""Every pywinrm / requests / spnego exception the WinRM connector can meet maps to one ConnectorError."""

from __future__ import annotations

import pytest
import requests
import spnego.exceptions
import winrm.exceptions as wx

from connectors.errors import AuthError, ConnectorError, Rejected, Timeout, TLSError, Unreachable
from connectors.winrm_windows.errors import decode_clixml, map_exception


def _fault(subcode: str, code: int = 500) -> wx.WSManFaultError:
    return wx.WSManFaultError(code=code, message="Bad HTTP response", response="<s:Envelope/>",
                              reason="The WS-Management service reports something. ", fault_code="s:Receiver",
                              fault_subcode=subcode, wsman_fault_code=2150858793)


CASES: list[tuple[BaseException, type[ConnectorError]]] = [
    (wx.InvalidCredentialsError("the specified credentials were rejected by the server"), AuthError),
    (wx.BasicAuthDisabledError(), AuthError),
    (wx.WinRMTransportError("http", 401, ""), AuthError),
    (wx.WinRMTransportError("http", 403, ""), AuthError),
    (wx.WinRMTransportError("http", 500, "not xml"), Rejected),
    (wx.WinRMTransportError("http", 502, ""), Unreachable),
    (wx.WinRMTransportError("http", 503, ""), Unreachable),
    (wx.WinRMTransportError("http", 504, ""), Unreachable),
    (wx.WinRMTransportError("http", 400, ""), Rejected),
    (wx.WinRMOperationTimeoutError(), Timeout),
    (_fault("w:TimedOut"), Timeout),
    (_fault("w:InvalidSelectors"), Rejected),
    (_fault("w:AccessDenied"), AuthError),
    (requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), TLSError),
    (requests.exceptions.ConnectTimeout("connect timed out"), Timeout),
    (requests.exceptions.ReadTimeout("read timed out"), Timeout),
    (requests.exceptions.ConnectionError("Connection refused"), Unreachable),
    (requests.exceptions.ChunkedEncodingError("broken"), Unreachable),
    (ConnectionResetError(104, "reset"), Unreachable),
    (spnego.exceptions.SpnegoError(spnego.exceptions.ErrorCode.failure, context_msg="bad token"), AuthError),
    (wx.WinRMError("message encryption is set to 'always' but ..."), Rejected),
    (TimeoutError(), Timeout),
]


class TestMapException:
    @pytest.mark.parametrize(("exc", "expected"), CASES, ids=[f"{type(e).__name__}-{i}" for i, (e, _) in
                                                              enumerate(CASES)])
    def test_library_exception_mapped(self, exc: BaseException, expected: type[ConnectorError]) -> None:
        """Each library exception becomes exactly the expected class, naming where it happened."""
        got = map_exception(exc, where="run command")
        assert type(got) is expected
        assert got.message.startswith("run command:")

    def test_transient_classification(self) -> None:
        """Transport trouble is transient (retry may help); credentials, certificates and refusals are not."""
        assert map_exception(wx.WinRMTransportError("http", 503, ""), where="x").transient
        assert map_exception(requests.exceptions.ReadTimeout(), where="x").transient
        assert not map_exception(wx.InvalidCredentialsError("no"), where="x").transient
        assert not map_exception(requests.exceptions.SSLError("bad cert"), where="x").transient
        assert not map_exception(wx.WinRMTransportError("http", 500, ""), where="x").transient

    def test_unknown_exception_is_generic_connector_error(self) -> None:
        """Anything unforeseen is still a ConnectorError (library exceptions never escape) without its text."""
        got = map_exception(KeyError("password=hunter2"), where="open shell")
        assert type(got) is ConnectorError and "hunter2" not in str(got)

    def test_connector_errors_pass_through(self) -> None:
        """An already-translated error is returned unchanged."""
        err = Rejected("x")
        assert map_exception(err, where="y") is err


CLIXML = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
          '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
          '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>'
          '<S S="Error">New-NetFirewallRule : The address is invalid &amp; &lt;bad&gt;_x000D__x000A_</S>'
          '<S S="Error">At line:3 char:1_x000D__x000A_</S><S S="Error">+ New-NetFirewallRule -Name x_x000D__x000A_</S>'
          '<S S="Verbose">not an error</S></Objs>')


class TestDecodeClixml:
    def test_error_strings_decoded(self) -> None:
        """Error strings are joined, XML and _xHHHH_ escapes undone, progress and other streams dropped."""
        text = decode_clixml(CLIXML)
        assert text.splitlines() == ["New-NetFirewallRule : The address is invalid & <bad>", "At line:3 char:1",
                                     "+ New-NetFirewallRule -Name x"]

    def test_plain_text_unchanged(self) -> None:
        """cmd.exe errors are plain text and come back as they are."""
        assert decode_clixml("The command line is too long.\r\n") == "The command line is too long."

    def test_broken_clixml_returned_raw(self) -> None:
        """Unparseable CLIXML is returned verbatim rather than lost."""
        assert decode_clixml("#< CLIXML\r\n<Objs><S") .startswith("#< CLIXML")


class TestKerberosErrorsArePermanent:
    def test_kerberos_exchange_errors_are_auth_errors(self) -> None:
        """A Kerberos failure (unknown SPN, clock skew, bad password) is permanent: AuthError, never retried."""
        from winrm.vendor.requests_kerberos.exceptions import KerberosExchangeError, MutualAuthenticationError

        for exc in (KerberosExchangeError("authGSSClientStep() failed: Server not found in Kerberos database"),
                    MutualAuthenticationError("unable to authenticate the server")):
            mapped = map_exception(exc, where="open shell")
            assert isinstance(mapped, AuthError) and not mapped.transient, exc

    def test_gssapi_errors_are_auth_errors(self) -> None:
        """python-gssapi failures (e.g. KDC unreachable while getting a ticket) are AuthError too."""
        gssapi = pytest.importorskip("gssapi")
        err = gssapi.exceptions.GSSError(851968, 2529638919)
        assert isinstance(map_exception(err, where="open shell"), AuthError)

    def test_krb5_errors_are_auth_errors(self) -> None:
        """The KDC refusing the password (pre-authentication failed) is AuthError, never Unreachable."""
        krb5 = pytest.importorskip("krb5")
        err = krb5.Krb5Error(krb5.init_context(), -1765328360)
        assert isinstance(map_exception(err, where="open shell"), AuthError)
