#!/usr/bin/env bash
# `make bench`: every benchmark prints its figure and the ratio against a baseline measured in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
status=0
# the yardstick for CLI start-up (bench/cli_startup.py): ansible's own start, in a venv of its own
if [ ! -x var/bench/ansible/bin/ansible ]; then
  python3 -m venv var/bench/ansible && var/bench/ansible/bin/pip install -q 'ansible-core>=2.17,<2.18' >/dev/null 2>&1 \
    || echo "bench: could not install ansible-core (the start-up bench runs without its yardstick)"
fi
for b in bench/cli_startup.py bench/contain_vs_ssh.py bench/firewall_batch.py bench/ad_disable.py bench/cli_batch.py bench/audit_throughput.py bench/front_link.py bench/daemon_alerts.py bench/alert_path.py bench/fanout_vs_ssh.py bench/scaleout_sites.py; do
  [ -f "$b" ] || continue
  printf '\n\033[1m== %s\033[0m\n' "$b"
  args=()
  [ "$b" = bench/audit_throughput.py ] && args=(--records "${BENCH_VERIFY_RECORDS:-1000000}")
  [ "$b" = bench/cli_batch.py ] && args=(--build-lab --fsync)
  # the intake bench against a checkout of the code before a change, in the same run (see its docstring)
  [ "$b" = bench/daemon_alerts.py ] && [ -n "${BENCH_ALERTS_BASELINE:-}" ] && args=(--baseline "$BENCH_ALERTS_BASELINE")
  [ "$b" = bench/alert_path.py ] && [ -n "${BENCH_ALERTS_BASELINE:-}" ] && args=(--baseline "$BENCH_ALERTS_BASELINE")
  python "$b" "${args[@]}" || status=1
done
exit $status
