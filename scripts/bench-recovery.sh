#!/usr/bin/env bash
# Recovery benchmark: time to drain a backlog into a fast mock Pinterest after an outage.
#   1. The gateway runs while Pinterest is unreachable; N events (default 100,000) are
#      acknowledged and wait in the durable queue.
#   2. The gateway stops (SIGTERM; the backlog stays on disk).
#   3. Pinterest is back (mock on loopback); the gateway restarts on the same queue; we time
#      until the mock has received every event.
# Reports the start-up time on the backlog (until /readyz answers 200), the restarted
# gateway's peak RSS (VmHWM: start-up and the whole drain), and the drain rate.
# Usage: scripts/bench-recovery.sh   (env: EVENTS=100000; MAX_BYTES=2147483648)
#   300,000-event backlog:   EVENTS=300000 scripts/bench-recovery.sh
#   a 1 GiB queue:           EVENTS=1800000 scripts/bench-recovery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}; PER_REQUEST=100; MAX_BYTES=${MAX_BYTES:-2147483648}
cargo build -q --release --bin tagbridge --example mock_pinterest
tmp=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}" recovery.XXXXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
config() { # $1 = api_base
  cat <<YAML
server: {listen: "127.0.0.1:19995", admin_listen: "127.0.0.1:19985"}
queue: {path: "$tmp/queue", max_bytes: $MAX_BYTES}
dispatch: {batch_max_events: 1000, batch_max_wait_ms: 1000, concurrency: 4, drain_s: 1,
           retry: {initial_ms: 60000, max_ms: 60000, give_up_after_s: 86400}}
logging: {format: json, level: warn}
tags:
  - {name: pinterest, type: pinterest, advertiser_id: "549755885175", access_token: "bench-token",
     api_base: "$1", log: "no"}
YAML
}
wait_port() { for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
python3 - "$PER_REQUEST" > "$tmp/body.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps([{"event_name": "purchase", "event_id": f"e{i}", "email": "jane@example.com",
                   "ip_override": "203.0.113.7", "user_agent": "UA", "value": 10.5, "currency": "EUR"}
                  for i in range(n)]))
PY
# 1. Outage: nothing listens on the api_base port.
config "http://127.0.0.1:19994" > "$tmp/down.yaml"
target/release/tagbridge serve --config "$tmp/down.yaml" >/dev/null 2>&1 & gw=$!
wait_port http://127.0.0.1:19995/healthz
start=$(date +%s.%N)
seq $((EVENTS / PER_REQUEST)) | xargs -P 8 -I{} curl -fsS -o /dev/null -X POST --data-binary @"$tmp/body.json" http://127.0.0.1:19995/data
ingest_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e-s}')
kill -TERM $gw; wait $gw || true
stats=$(target/release/tagbridge queue stats --config "$tmp/down.yaml")
depth=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["depth"])' "$stats")
qbytes=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["disk_bytes"])' "$stats")
# 2. Pinterest is back.
target/release/examples/mock_pinterest 127.0.0.1:19994 2>/dev/null & pids+=($!)
wait_port http://127.0.0.1:19994/count
start=$(date +%s.%N)
target/release/tagbridge serve --config "$tmp/down.yaml" >/dev/null 2>&1 & gw=$!; pids+=($gw)
until curl -fsS -o /dev/null http://127.0.0.1:19995/readyz 2>/dev/null; do sleep 0.01; done
ready_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e-s}')
rss_ready=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")
while [ "$(curl -fsS http://127.0.0.1:19994/count)" -lt "$depth" ]; do sleep 0.05; done
drain_s=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e-s}')
requests=$(curl -fsS http://127.0.0.1:19994/requests)
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$gw/status")
kill -TERM $gw; wait $gw || true
left=$(target/release/tagbridge queue stats --config "$tmp/down.yaml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["depth"])')
printf 'backlog: %s events acknowledged in %.1f s (%.0f events/s, %s per request, 8 clients)\n' "$depth" "$ingest_s" "$(awk -v n="$depth" -v s="$ingest_s" 'BEGIN {print n/s}')" "$PER_REQUEST"
printf 'recovery: %s events delivered in %.2f s after restart (%.0f events/s) in %s requests; %s left in queue\n' "$depth" "$drain_s" "$(awk -v n="$depth" -v s="$drain_s" 'BEGIN {print n/s}')" "$requests" "$left"
printf 'start-up on the backlog (%s MiB of queue files): ready after %.2f s; peak RSS %s MiB at ready, %s MiB over the drain\n' "$((qbytes / 1048576))" "$ready_s" "$((rss_ready / 1024))" "$((rss_peak / 1024))"
