"""Failpoints: named places where a test can make the agent die, to prove crash recovery for real.

``AGENT_FAILPOINTS=after-apply`` makes the run SIGKILL itself right after a connector's apply returned and before
the result is journaled — the worst moment for a containment tool; ``after-apply:pause`` sleeps there instead
(3 s), so a test can press Ctrl-C or kill the process mid-run deterministically; ``after-apply:stop`` stops the
process there (SIGSTOP) until the test continues it (SIGCONT), to order a race between two processes. Several
names: comma-separated. The variable is read when the failpoint is reached (never at import), so a warm child
honours its *client's* value, and in a warm run the client dies with the child (see :mod:`agent.runctx`). A
no-op otherwise.

Every name used in the code is listed in :data:`NAMES` (a test checks the list against the code); ``K`` stands for
a number in a name (``batch-after-item:3``).
"""

from __future__ import annotations

from agent.runctx import armed, failpoint

__all__ = ["NAMES", "armed", "failpoint"]

NAMES = (
    "after-intent",      # intent journaled, nothing opened yet
    "before-snapshot",   # session open, snapshot not read
    "after-snapshot",    # snapshot read, not journaled yet
    "before-apply",      # snapshot journaled, state applying, nothing sent yet
    "after-apply",       # apply returned, result not journaled
    "before-verify",     # result journaled (state verifying), not read back yet
    "after-verify",      # read back, 'done' not journaled yet
    "after-undo",        # undo returned, not journaled yet
    "isolate-after-load",      # ssh_linux: ruleset loaded under an armed dead-man timer, nothing read back
    "isolate-before-confirm",  # ssh_linux: rules read back right, the timer not confirmed yet
    "isolate-after-confirm",   # ssh_linux: timer confirmed through a fresh connection, result not returned yet
    "batch-after-item:K",      # firewall dialects: the device accepted the K-th line of a batch (K = 1, 2, ...)
    "ad-batch-sent:K",         # active_directory: the first K pipelined modifies of a batch (disable or its
                               # undo) are written to the DC, no answer to them read yet
    "ad-batch-answered:K",     # active_directory: the DC's answer to the K-th modify of a batch was read
    "ad-group-removed:K",      # active_directory: the K-th privileged membership of remove_privileged_groups
                               # removed (the DC answered), the others not sent yet
    "ad-group-restored:K",     # active_directory: its undo re-added the K-th recorded membership, others not yet
    "worker-after-claim",      # a site worker's claim (and its worker.claimed record) committed, nothing else
    "worker-after-claim:K",    # the same, at the K-th action this worker process claimed (fresh or taken over)
    "reapply-gated",           # a site worker holds a drifted action's gate (agent/workers/gate.py), found no
                               # release under way and journaled the drift; nothing re-sent yet
    "audit-drain-appended",    # the chain's writer appended (and fsynced) site workers' queued audit records,
                               # not yet deleted from the outbox (agent/audit/drain.py)
)
