"""The web console: incidents, what is contained now, pending approvals, the counsel checklist — for people.

Server-rendered HTML (Jinja2, no JavaScript framework, no CDN: every asset ships in the package), served by
``agent console`` next to the daemon on the same database. Operators sign in with a name and password (argon2id
hashes in the agent database, ``agent operators add``); roles decide what they may do; every login and decision
is audited with the operator's name. Parts: :mod:`~agent.console.auth` (operators, sessions, CSRF, rights),
:mod:`~agent.console.pages` (what each page shows, read from the journal and the audit log),
:mod:`~agent.console.app` (routes, security headers).
"""
