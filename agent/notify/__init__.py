"""Notifications: the daemon tells people what needs them — an approval waiting, an action failed or in doubt,
drift found, a TTL release done — by e-mail (SMTP) and chat incoming webhooks (Slack, Microsoft Teams,
Mattermost).

The parts, each one job:
- :mod:`agent.notify.config` — the ``notifications:`` section of agent.yaml (channels, events, secrets by
  reference), errors with file, line and field;
- :mod:`agent.notify.events` — which *audit records* become which notice: a notice is derived from the record
  counsel will read, already redacted, so a person is never told something the log does not say;
- :mod:`agent.notify.formats` — the payload each product documents (Slack blocks, Mattermost attachments, Teams
  Adaptive Card message, a plain-text e-mail);
- :mod:`agent.notify.outbox` — the delivery queue in the agent database: a notice is queued in the same moment it
  is recognised, delivered by a worker thread with retries and backoff, so a dead SMTP server never delays a
  containment and a restart loses nothing;
- :mod:`agent.notify.deliver` — SMTP (STARTTLS, auth) and HTTPS POST, with every library error mapped;
- :mod:`agent.notify.worker` — the loop that delivers due notices and audits each attempt (never a secret).
"""

from __future__ import annotations

# Nothing is imported here: agent.config reads agent.notify.config on every CLI start, and the outbox and the
# worker need SQLAlchemy. Import the submodules you need.
__all__: list[str] = []
