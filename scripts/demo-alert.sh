#!/usr/bin/env bash
# `make demo-alert`: an alert from the real Alertmanager binary becomes a verified isolation of a lab host, then
# its TTL release. Everything runs inside the lab's management namespace (its own loopback): the lab, the daemon,
# Debian's prometheus-alertmanager (own storage directory, clustering off), and curl posting the alert to
# Alertmanager's API v2 as a Prometheus server would.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PREFIX=${DEMO_ALERT_PREFIX:-cam}
MGMT="ip netns exec $PREFIX-mgmt"
say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
DAEMON_PID=""; AM_PID=""
cleanup() {
  say "cleaning up"
  [ -n "$AM_PID" ] && kill "$AM_PID" 2>/dev/null || true
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  agent lab down --prefix "$PREFIX" || true
}
trap cleanup EXIT

say "1. build the practice lab '$PREFIX' (network namespaces, real sshd, nftables)"
rm -rf "var/lab/$PREFIX/agent.db"* "var/lab/$PREFIX/audit" "var/lab/$PREFIX/evidence"   # a fresh journal
run agent lab up --prefix "$PREFIX" --rebuild
LABCFG=$(agent lab status --prefix "$PREFIX" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"])')
DIR=$(dirname "$LABCFG")/alert-demo
rm -rf "$DIR" && mkdir -p "$DIR/am-data"
python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$DIR/am.token" && chmod 600 "$DIR/am.token"
cat > "$DIR/rules.yaml" <<YAML
rules:
  - name: cryptominer-isolate
    match: {source: alertmanager, rule_id: CryptominerDetected, min_severity: 75}
    runbook: isolate-host
    params: {capture_evidence: false}
    policy: auto
    ttl: 40s
YAML
{ cat "$LABCFG"; cat <<YAML
rules: $DIR/rules.yaml
daemon:
  listen: 127.0.0.1:8787
  sweep_interval: 2s
  sources:
    alertmanager: {format: alertmanager, token: file:$DIR/am.token}
YAML
} > "$DIR/agent.yaml"
export AGENT_CONFIG="$DIR/agent.yaml"
cat > "$DIR/alertmanager.yml" <<YAML
route: {receiver: agent, group_by: [alertname], group_wait: 1s, group_interval: 5s, repeat_interval: 1h}
receivers:
  - name: agent
    webhook_configs:
      - url: http://127.0.0.1:8787/alerts/alertmanager
        send_resolved: true
        http_config: {authorization: {type: Bearer, credentials_file: $DIR/am.token}}
YAML
run agent check-config

say "2. start the daemon and Alertmanager on the management host"
$MGMT agent daemon > "$DIR/daemon.log" 2>&1 & DAEMON_PID=$!
$MGMT prometheus-alertmanager --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/am-data" \
  --web.listen-address=127.0.0.1:9093 --cluster.listen-address= > "$DIR/alertmanager.log" 2>&1 & AM_PID=$!
for _ in $(seq 100); do
  $MGMT curl -fsS http://127.0.0.1:8787/healthz >/dev/null 2>&1 && $MGMT curl -fsS http://127.0.0.1:9093/-/ready \
    >/dev/null 2>&1 && break
  sleep 0.2
done
run $MGMT curl -fsS http://127.0.0.1:8787/healthz; echo

say "3. reachability before: victim is open"
run agent lab probe --prefix "$PREFIX"

say "4. Prometheus fires CryptominerDetected for victim (posted to Alertmanager's API v2)"
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
run $MGMT curl -fsS -XPOST -H 'Content-Type: application/json' http://127.0.0.1:9093/api/v2/alerts -d \
  "[{\"labels\": {\"alertname\": \"CryptominerDetected\", \"instance\": \"victim:9100\", \"job\": \"node\",
     \"severity\": \"critical\"}, \"annotations\": {\"summary\": \"xmrig mining pool traffic from victim\"},
     \"startsAt\": \"$NOW\"}]"
echo
say "5. Alertmanager notifies the daemon; the rule isolates victim (verified on the target)"
INC=""
for _ in $(seq 150); do
  INC=$($MGMT agent incidents list --json | python3 -c '
import json, sys
rows = [i for i in json.load(sys.stdin) if i["status"] == "contained"]
print(rows[0]["id"] if rows else "")')
  [ -n "$INC" ] && break
  sleep 0.2
done
[ -n "$INC" ] || { echo "no contained incident; daemon log:"; tail -30 "$DIR/daemon.log"; exit 1; }
run $MGMT agent incidents show "$INC"
run agent lab probe --prefix "$PREFIX"

say "6. the rule's TTL (40s) expires: the daemon releases victim by itself"
for _ in $(seq 120); do
  STATUS=$($MGMT agent incidents list --json | python3 -c "
import json, sys
print(next(i['status'] for i in json.load(sys.stdin) if i['id'] == '$INC'))")
  [ "$STATUS" = "released" ] && break
  sleep 1
done
echo "incident $INC: $STATUS"
run agent lab probe --prefix "$PREFIX"
run $MGMT agent status

say "7. stop the daemon (SIGTERM: it signs a checkpoint at close); the audit trail of all of it verifies"
kill -TERM "$DAEMON_PID" && wait "$DAEMON_PID" || true
DAEMON_PID=""
run agent audit verify
