"""Demo helper: try an LDAPS simple bind as a lab user and say whether the directory accepts it."""

from __future__ import annotations

import ssl
import sys

from ldap3 import Connection, Server, Tls
from ldap3.core.exceptions import LDAPException


def main() -> int:
    user, password, ca_file = sys.argv[1], sys.argv[2], sys.argv[3]
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
    server = Server("10.77.0.50", port=636, use_ssl=True, tls=tls, get_info=None, connect_timeout=5)
    try:
        conn = Connection(server, user=f"{user}@lab.test", password=password, auto_bind=True)
        conn.unbind()
        print(f"  LDAPS bind as {user}: ACCEPTED")
    except LDAPException as exc:
        print(f"  LDAPS bind as {user}: REFUSED ({type(exc).__name__}: {str(exc)[:80]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
