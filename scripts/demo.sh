#!/usr/bin/env bash
# `make demo`: build the practice lab, contain a real host, show before/after and the audit trail, clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export AGENT_CONFIG="$PWD/config/lab/agent.yaml"
MGMT="ip netns exec cal-mgmt"
say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
trap 'say "cleaning up"; agent lab down || true' EXIT

say "1. build the practice lab (network namespaces, real sshd, nftables)"
rm -rf var/lab/cal/agent.db* var/lab/cal/audit var/lab/cal/evidence   # a fresh journal for a fresh lab
run agent lab up --rebuild --with-ad
say "2. reachability before containment (baseline)"
run agent lab probe
say "3. dry run: exactly what would be sent to victim"
run $MGMT agent contain --host victim --dry-run
say "4. contain victim (from the management host)"
run $MGMT agent contain --host victim --reason "demo: ransomware beacon from victim" --ttl 4h --yes
INC=$($MGMT agent incidents list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
say "5. reachability after containment: only mgmt -> victim:22 is left"
run agent lab probe
say "6. a second contain changes nothing (idempotent)"
run $MGMT agent contain --host victim -p capture_evidence=false --incident "$INC" --yes
say "7. what is contained, and the journal of the incident"
run $MGMT agent status
run $MGMT agent incidents show "$INC"
say "8. the tamper-evident audit trail (hash-chained JSON lines, secrets redacted)"
python3 - "$INC" var/lab/cal/audit <<'PY'
import json, pathlib, sys
inc, folder = sys.argv[1], pathlib.Path(sys.argv[2])
for seg in sorted(folder.glob("*.jsonl")):
    for line in seg.read_text().splitlines():
        r = json.loads(line)
        if r.get("incident") == inc:
            what = r.get("to_state") or r.get("title") or r.get("runbook") or ""
            print(f"  #{r['seq']:<4} {r['ts'][11:23]}  {r['event']:<18} {r.get('target', ''):<8} {what:<12} "
                  f"hash {r['hash'][:12]}… prev {r['prev_hash'][:12]}…")
PY
run agent audit verify
say "9. the counsel report (timeline, actions, scope, notification checklist with deadlines)"
run $MGMT agent report --incident "$INC" --format pdf -o var/lab/cal/report-"$INC".pdf
say "10. release: the exact previous ruleset comes back"
run $MGMT agent release --host victim --reason "demo over" --yes
run agent lab probe
say "11. disconnect a breached account in Active Directory (real Samba DC in the lab)"
CA=var/lab/cal/dc/tls/ca.pem
$MGMT python scripts/ad_bind_check.py jdoe 'Lab-Demo-Passw0rd!' "$CA"
run $MGMT agent disable-account jdoe --with-groups --reason "demo: phished credentials" --yes
$MGMT python scripts/ad_bind_check.py jdoe 'Lab-Demo-Passw0rd!' "$CA"
run $MGMT agent disable-account breakglass --yes || true
run $MGMT agent enable-account jdoe --yes
$MGMT python scripts/ad_bind_check.py jdoe 'Lab-Demo-Passw0rd!' "$CA"
