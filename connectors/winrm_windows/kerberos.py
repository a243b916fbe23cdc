"""WinRM over Kerberos without a ticket cache: tickets from the configured password or keytab, via pyspnego.

pywinrm's own Kerberos path (its vendored requests-kerberos on pykerberos) can only use a ticket cache someone
filled with ``kinit``. Here the session's auth is a small ``requests`` auth that asks pyspnego for a Kerberos
context (``HTTP/<server_name>``, mutual authentication) with the configured password or keytab, and offers pywinrm's
message encryption the ``wrap_winrm``/``unwrap_winrm`` pair it expects (MS-WSMV 2.2.9.1 — the same
``HTTP-SPNEGO-session-encrypted`` framing as NTLM).

Nothing leaves the configuration: a private ``krb5.conf`` (realm → the inventory's KDC addresses, no DNS lookups,
no reverse DNS) and a ``MEMORY:`` credential cache are put in the environment only while a context is created or
stepped, under one lock — MIT krb5 reads ``KRB5_CONFIG`` when a library context is made, and the environment is
process-wide.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from connectors.errors import AuthError
from connectors.winrm_windows.options import WinRMSettings

__all__ = ["KerberosAuth", "install", "krb5_environment"]

_ENV_LOCK = threading.Lock()
_CONF_DIRS: list[Path] = []  # one private directory per process, made on first use


def _krb5_conf(settings: WinRMSettings) -> Path:
    """A private krb5.conf for this realm and these KDCs (written once per process per realm/KDC set)."""
    if not _CONF_DIRS:
        _CONF_DIRS.append(Path(tempfile.mkdtemp(prefix="agent-krb5-")))
    realm = str(settings.realm)
    key = "-".join([realm, *sorted(settings.kdc)]).replace(":", "_")
    path = _CONF_DIRS[0] / f"{key}.conf"
    if not path.exists():
        host_domain = (settings.server_name or "").partition(".")[2].lower()
        kdcs = "\n".join(f"    kdc = {k if ':' not in k else f'[{k}]'}" for k in settings.kdc)
        mapping = f"[domain_realm]\n  .{host_domain} = {realm}\n  {host_domain} = {realm}\n" if host_domain else ""
        path.write_text(f"""[libdefaults]
  default_realm = {realm}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
[realms]
  {realm} = {{
{kdcs}
  }}
{mapping}""")
        path.chmod(0o600)
    return path


@contextmanager
def krb5_environment(settings: WinRMSettings) -> Iterator[None]:
    """``KRB5_CONFIG`` = the private file and ``KRB5CCNAME`` = a memory cache, for the duration only."""
    conf = _krb5_conf(settings)
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")}
        os.environ["KRB5_CONFIG"] = str(conf)
        os.environ["KRB5CCNAME"] = "MEMORY:containment-agent"
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class KerberosAuth:
    """``requests`` auth: a Kerberos token on the first request, the server's mutual-auth token checked on the
    answer, then ``wrap_winrm``/``unwrap_winrm`` for message encryption."""

    def __init__(self, new_context: Callable[[], Any], settings: WinRMSettings) -> None:
        self._new_context = new_context
        self._settings = settings
        self.context: Any = None
        self.winrm_encryption_available = True
        self._resending = False

    def __call__(self, request: Any) -> Any:
        if self.context is None:
            with krb5_environment(self._settings):
                self.context = self._new_context()
                token = self.context.step()
            request.headers["Authorization"] = "Negotiate " + base64.b64encode(token or b"").decode()
        request.register_hook("response", self._on_response)
        return request

    def _on_response(self, response: Any, **kwargs: Any) -> Any:
        if response.status_code == 401:
            if self._may_resend(response):
                return self._authenticate_again(response, **kwargs)
            return response  # pywinrm raises InvalidCredentialsError -> AuthError
        header = response.headers.get("WWW-Authenticate", "")
        if header.lower().startswith("negotiate ") and not self.context.complete:
            with krb5_environment(self._settings):
                self.context.step(base64.b64decode(header.split(" ", 1)[1]))
        if not self.context.complete:
            raise AuthError("Kerberos: the WinRM service did not complete mutual authentication")
        return response

    def _may_resend(self, response: Any) -> bool:
        """A 401 after the context was complete means a new TCP connection (the server closed the old one, e.g.
        HTTP.sys's idle timeout): authenticate again and resend — unless the body was sealed with the old context
        (HTTP with message encryption), which only a new session can redo."""
        sealed = "multipart/encrypted" in str(response.request.headers.get("Content-Type", ""))
        return bool(self.context is not None and self.context.complete and not self._resending and not sealed)

    def _authenticate_again(self, response: Any, **kwargs: Any) -> Any:
        _ = response.content
        response.close()
        request = response.request.copy()
        with krb5_environment(self._settings):
            self.context = self._new_context()
            token = self.context.step()
        request.headers["Authorization"] = "Negotiate " + base64.b64encode(token or b"").decode()
        self._resending = True
        try:
            again = response.connection.send(request, **kwargs)
        finally:
            self._resending = False
        again.history.append(response)
        again.request = request
        return self._on_response(again, **kwargs)

    def wrap_winrm(self, host: Any, message: bytes) -> tuple[bytes, bytes]:
        wrapped = self.context.wrap_winrm(message)
        return wrapped.data, wrapped.header

    def unwrap_winrm(self, host: Any, message: bytes, signature: bytes) -> bytes:
        data: bytes = self.context.unwrap_winrm(signature, message)
        return data


def _context_factory(settings: WinRMSettings, username: str, password: str | None) -> Callable[[], Any]:
    import spnego

    principal = username if "@" in username else f"{username.split(chr(92))[-1]}@{settings.realm}"

    def make() -> Any:
        creds: Any
        if settings.keytab:
            creds = spnego.KerberosKeytab(keytab=settings.keytab, principal=principal)
        else:
            creds = spnego.Password(username=principal, password=password or "")
        return spnego.client(creds, hostname=str(settings.server_name), service="HTTP", protocol="kerberos")

    return make


def install(transport: Any, settings: WinRMSettings, username: str, password: str | None) -> None:
    """Make a pywinrm ``Transport`` authenticate with :class:`KerberosAuth` (pywinrm builds everything else:
    proxies off, certificate validation, headers; then message encryption over HTTP)."""
    original = transport.build_session
    factory = _context_factory(settings, username, password)

    def build_session() -> Any:
        if transport.session is not None:
            return transport.session
        method, encryption = transport.auth_method, transport.message_encryption
        transport.auth_method, transport.message_encryption = "basic", "never"
        try:
            session = original()
        finally:
            transport.auth_method, transport.message_encryption = method, encryption
        session.auth = KerberosAuth(factory, settings)
        if encryption == "always" or (encryption == "auto" and not transport.endpoint.lower().startswith("https")):
            transport.setup_encryption(session)
        return session

    transport.build_session = build_session
