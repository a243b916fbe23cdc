#!/usr/bin/env bash
# `make bench`: every benchmark prints its figure and the ratio against a baseline measured in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
status=0
for b in bench/contain_vs_ssh.py bench/firewall_batch.py bench/ad_disable.py bench/audit_throughput.py bench/daemon_alerts.py; do
  [ -f "$b" ] || continue
  printf '\n\033[1m== %s\033[0m\n' "$b"
  args=()
  [ "$b" = bench/audit_throughput.py ] && args=(--records "${BENCH_VERIFY_RECORDS:-1000000}")
  python "$b" "${args[@]}" || status=1
done
exit $status
