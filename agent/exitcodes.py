"""Documented exit codes of the ``agent`` command (also listed in ``agent --help`` and the README)."""

from __future__ import annotations

DONE = 0          # everything asked for is done (or was already so: idempotent no-op)
FAILED = 1        # the action(s) failed; the journal and audit log say why
USAGE = 2         # bad command line, configuration, runbook or input value; nothing was touched
REFUSED = 3       # a guard refused (protected asset, unsupported OS, host key, no confirmation); nothing touched
PARTIAL = 4       # some targets done, others failed
NOT_VERIFIED = 5  # `audit verify`: the audit log failed verification
INTERRUPTED = 130  # Ctrl-C: the journal is consistent; unfinished actions are reconciled on the next start

TABLE = """exit codes:
  0  done (including "already contained" no-ops)
  1  failed
  2  usage, configuration, runbook or input error (nothing touched)
  3  refused by a guard or not confirmed (nothing touched)
  4  partial: some targets done, some failed
  5  audit log verification failed
  130 interrupted (journal consistent; reconciled on next start)"""
