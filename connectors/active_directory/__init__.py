"""Active Directory connector (ldap3): disable accounts, remove privileged memberships, reset passwords,
block logons, capture evidence — over LDAPS/StartTLS with certificate and server-name validation."""

from __future__ import annotations

from connectors.active_directory.accounts import Account, validate_account
from connectors.active_directory.connector import ACTIONS, ActiveDirectoryConnector
from connectors.active_directory.options import DEFAULT_PRIVILEGED_GROUPS, DirectoryOptions
from connectors.active_directory.password import generate_password
from connectors.active_directory.session import ADSession, ConnectionPool, StrictTls

__all__ = [
    "ACTIONS",
    "DEFAULT_PRIVILEGED_GROUPS",
    "ADSession",
    "Account",
    "ActiveDirectoryConnector",
    "ConnectionPool",
    "DirectoryOptions",
    "StrictTls",
    "generate_password",
    "validate_account",
]
