"""The ``daemon:`` section of ``agent.yaml``: where to listen, who may post alerts, and the safety limits.

Every key with its default (secrets are *references*, ``env:NAME`` or ``file:PATH``, never inline)::

    daemon:
      listen: 127.0.0.1:8787          # HOST:PORT of the webhook/API server (`agent daemon --listen` overrides)
      max_body_bytes: 262144          # larger requests get 413 (Content-Length and the streamed size are checked)
      dedupe_window: 1h               # same (runbook, target) within this time joins the open incident
      blast_radius:                   # an alert storm must never isolate the whole network
        hosts: 5                      #   at most this many hosts isolated automatically per window
        accounts: 5                   #   at most this many accounts disabled automatically per window
        window: 1h                    #   beyond the limits, plans wait for a person's approval
      approval_ttl: 4h                # a pending approval expires (status "expired", audited) after this
      reverify_interval: 5m           # how often every active containment is verified on its target
      drift_policy: reapply           # reapply | alert: what to do when a containment was removed behind our back
      sweep_interval: 30s             # schedule missing TTL jobs, expire overdue approvals
      retry_interval: 1m              # transient failures (unreachable, timeout) are retried after this ...
      retry_attempts: 3               # ... at most this many times
      shutdown_grace: 30s             # on SIGTERM, wait this long for running actions before interrupting them
      header_timeout: 10s             # request line + headers must arrive within this, else 408 and close
      body_timeout: 30s               # the whole body within this after the headers, else 408 and close
      tls:                            # HTTPS instead of HTTP (recommended off loopback)
        cert: /etc/containment-agent/daemon.crt   # PEM certificate chain
        key: /etc/containment-agent/daemon.key    # PEM private key (a file path; never inline)
        client_ca: /etc/containment-agent/senders-ca.pem  # optional: mTLS, senders must present a cert from it
      sources:                        # POST /alerts/{name}; unknown names get 404
        wazuh:
          format: wazuh               # wazuh | elastic | splunk | alertmanager | suricata | generic (default: name)
          hmac_secret: env:AGENT_WAZUH_HMAC   # X-Agent-Timestamp + X-Agent-Signature (see agent.intake.auth)
          replay_window: 5m           # signed timestamps older/newer than this are refused; nonces remembered
          require_timestamp: true     # false: also accept body-only signatures (replayable; avoid)
        alertmanager:
          token: env:AGENT_AM_TOKEN   # header Authorization: Bearer <token>
        splunk:
          token: env:AGENT_SPLUNK_TOKEN
          url_token: true             # ?token=... accepted: Splunk's webhook action cannot set headers (weaker)
      api_tokens:                     # GET /incidents, /approvals and approve/deny; the name is the identity
        alice: env:AGENT_API_ALICE    # audited as approver "alice"

Why references: agent.yaml is committed and pasted into tickets; see :mod:`agent.secrets`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.errors import ConfigError, InputError
from agent.secrets import SecretRef, parse_ref
from agent.validate import INVENTORY_NAME, duration

__all__ = ["FORMATS", "DaemonConfig", "SourceConfig", "load_daemon_config"]

FORMATS = ("wazuh", "elastic", "splunk", "alertmanager", "suricata", "generic")
_KEYS = {"listen", "max_body_bytes", "dedupe_window", "blast_radius", "approval_ttl", "reverify_interval",
         "drift_policy", "sweep_interval", "retry_interval", "retry_attempts", "shutdown_grace", "sources",
         "api_tokens", "header_timeout", "body_timeout", "tls"}


@dataclass(frozen=True)
class SourceConfig:
    """One alert source: its payload format and how its requests authenticate."""

    name: str
    format: str
    hmac_secret: SecretRef | None = None
    token: SecretRef | None = None
    replay_window: timedelta = timedelta(minutes=5)
    require_timestamp: bool = True  # False: body-only HMAC signatures are accepted too (replayable)
    url_token: bool = False  # True: ?token= in the URL is accepted (weaker: URLs get logged)


@dataclass(frozen=True)
class DaemonConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    max_body_bytes: int = 256 * 1024
    dedupe_window: timedelta = timedelta(hours=1)
    max_hosts: int = 5
    max_accounts: int = 5
    blast_window: timedelta = timedelta(hours=1)
    approval_ttl: timedelta = timedelta(hours=4)
    reverify_interval: timedelta = timedelta(minutes=5)
    drift_policy: str = "reapply"
    sweep_interval: timedelta = timedelta(seconds=30)
    retry_interval: timedelta = timedelta(minutes=1)
    retry_attempts: int = 3
    shutdown_grace: timedelta = timedelta(seconds=30)
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    api_tokens: Mapping[str, SecretRef] = field(default_factory=dict)
    header_timeout: timedelta = timedelta(seconds=10)
    body_timeout: timedelta = timedelta(seconds=30)
    tls: dict[str, str] | None = None


def _err(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(message, file=str(path), field=f"daemon.{key}")


def parse_listen(text: str, *, where: str = "listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8787`` for IPv6; port 0 picks a free port) → (host, port)."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(f"{where}: {text!r} is not HOST:PORT (example: 127.0.0.1:8787)")
    return host, int(port)


def _tls(raw: Any, base: Path, settings_path: Path) -> dict[str, str] | None:
    """``daemon.tls``: cert and key files (and client_ca for mTLS), relative to agent.yaml, checked readable now."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) - {"cert", "key", "client_ca"} or not {"cert", "key"} <= set(raw):
        raise _err(settings_path, "tls", "a mapping with cert and key (and optionally client_ca for mTLS)")
    out: dict[str, str] = {}
    for key, value in raw.items():
        path = (base / str(value)).resolve()
        if not path.is_file():
            raise _err(settings_path, f"tls.{key}", f"{value!r} is not a readable file")
        out[key] = str(path)
    import ssl
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(out["cert"], out["key"])
        if "client_ca" in out:
            ctx.load_verify_locations(out["client_ca"])
    except (ssl.SSLError, OSError) as exc:
        raise _err(settings_path, "tls", f"the certificate, key or CA cannot be loaded: {exc}") from None
    return out


def load_daemon_config(raw: Mapping[str, Any], settings_path: Path) -> DaemonConfig:
    """Validate the raw ``daemon:`` mapping; errors name the file and the ``daemon.<key>`` field."""
    base = settings_path.resolve().parent
    unknown = set(raw) - _KEYS
    if unknown:
        raise _err(settings_path, min(unknown), f"unknown key (known: {', '.join(sorted(_KEYS))})")

    def dur(key: str, default: timedelta, node: Mapping[str, Any] = raw, prefix: str = "") -> timedelta:
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return timedelta(seconds=value)
        try:
            return duration(str(node[key]), field=f"daemon.{prefix}{key}")
        except InputError as exc:
            raise ConfigError(str(exc), file=str(settings_path)) from None

    def integer(key: str, default: int, lo: int, hi: int, node: Mapping[str, Any] = raw, prefix: str = "") -> int:
        value = node.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise _err(settings_path, prefix + key, f"{value!r} must be an integer between {lo} and {hi}")
        return value

    host, port = "127.0.0.1", 8787
    if "listen" in raw:
        try:
            host, port = parse_listen(str(raw["listen"]), where="daemon.listen")
        except InputError as exc:
            raise ConfigError(str(exc), file=str(settings_path)) from None
    blast = raw.get("blast_radius") or {}
    if not isinstance(blast, Mapping) or set(blast) - {"hosts", "accounts", "window"}:
        raise _err(settings_path, "blast_radius", "must be a mapping with hosts, accounts, window")
    policy = raw.get("drift_policy", "reapply")
    if policy not in ("reapply", "alert"):
        raise _err(settings_path, "drift_policy", f"{policy!r} is not one of reapply, alert")

    def ref(value: Any, key: str) -> SecretRef:
        parsed = parse_ref(str(value), base) if isinstance(value, str) else None
        if parsed is None:
            raise _err(settings_path, key, "must be a secret reference env:NAME or file:PATH (never inline)")
        return parsed

    sources: dict[str, SourceConfig] = {}
    for name, given in (raw.get("sources") or {}).items():
        key = f"sources.{name}"
        if not isinstance(name, str) or not INVENTORY_NAME.fullmatch(name):
            raise _err(settings_path, key, "source name: letters, digits, '.', '_', '-'")
        spec = given or {}
        allowed = {"format", "hmac_secret", "token", "replay_window", "require_timestamp", "url_token"}
        if not isinstance(spec, Mapping) or set(spec) - allowed:
            bad = min(set(spec) - allowed) if isinstance(spec, Mapping) else ""
            raise _err(settings_path, f"{key}.{bad}" if bad else key, f"allowed keys: {', '.join(sorted(allowed))}")
        for flag in ("require_timestamp", "url_token"):
            if flag in spec and not isinstance(spec[flag], bool):
                raise _err(settings_path, f"{key}.{flag}", f"{spec[flag]!r} must be true or false")
        if spec.get("url_token") and "token" not in spec:
            raise _err(settings_path, f"{key}.url_token", "needs token: the URL carries that token")
        fmt = spec.get("format", name)
        if fmt not in FORMATS:
            raise _err(settings_path, key + ".format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
        hmac_ref = ref(spec["hmac_secret"], key + ".hmac_secret") if "hmac_secret" in spec else None
        token_ref = ref(spec["token"], key + ".token") if "token" in spec else None
        if hmac_ref is None and token_ref is None:
            raise _err(settings_path, key, "needs hmac_secret or token: unauthenticated sources are not allowed")
        sources[name] = SourceConfig(name, fmt, hmac_ref, token_ref,
                                     replay_window=dur("replay_window", timedelta(minutes=5), spec, key + "."),
                                     require_timestamp=bool(spec.get("require_timestamp", True)),
                                     url_token=bool(spec.get("url_token", False)))
    tokens: dict[str, SecretRef] = {}
    for name, value in (raw.get("api_tokens") or {}).items():
        if not isinstance(name, str) or not INVENTORY_NAME.fullmatch(name):
            raise _err(settings_path, f"api_tokens.{name}", "identity: letters, digits, '.', '_', '-'")
        tokens[name] = ref(value, f"api_tokens.{name}")
    tls = _tls(raw.get("tls"), base, settings_path)
    return DaemonConfig(
        host=host, port=port, tls=tls,
        header_timeout=dur("header_timeout", timedelta(seconds=10)),
        body_timeout=dur("body_timeout", timedelta(seconds=30)),
        max_body_bytes=integer("max_body_bytes", 256 * 1024, 1024, 64 * 1024 * 1024),
        dedupe_window=dur("dedupe_window", timedelta(hours=1)),
        max_hosts=integer("hosts", 5, 0, 100000, blast, "blast_radius."),
        max_accounts=integer("accounts", 5, 0, 100000, blast, "blast_radius."),
        blast_window=dur("window", timedelta(hours=1), blast, "blast_radius."),
        approval_ttl=dur("approval_ttl", timedelta(hours=4)),
        reverify_interval=dur("reverify_interval", timedelta(minutes=5)),
        drift_policy=str(policy),
        sweep_interval=dur("sweep_interval", timedelta(seconds=30)),
        retry_interval=dur("retry_interval", timedelta(minutes=1)),
        retry_attempts=integer("retry_attempts", 3, 0, 100),
        shutdown_grace=dur("shutdown_grace", timedelta(seconds=30)),
        sources=sources, api_tokens=tokens,
    )
