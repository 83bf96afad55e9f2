#!/usr/bin/env bash
# Ingest load benchmark, side by side in one run on this machine (ratios are what to compare):
#   1. a bare axum handler answering 204 (the yardstick),
#   2. tagbridge /data: parse, map, hash, durable enqueue (group commit, fsync), dispatch to a
#      mock Pinterest on loopback,
#   3. the same with the queue in memory (`queue.path: ":memory:"`).
# Reports requests/s, the ratios, fsyncs/s during run 2, events per Pinterest request, and
# the gateway's peak resident memory.
# Usage: scripts/bench-ingest.sh   (env: DUR=10 CONN=64 THREADS=1)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; CONN=${CONN:-64}; THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build -q --release --bin tagbridge --example mock_pinterest --example bare
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
target/release/examples/mock_pinterest 127.0.0.1:19999 2>/dev/null & pids+=($!)
target/release/examples/bare 127.0.0.1:19998 2>/dev/null & pids+=($!)

gateway_config() { # $1 = queue path
  cat <<YAML
server: {listen: "127.0.0.1:19997", max_body_bytes: 65536}
queue: {path: "$1"}
dispatch: {batch_max_events: 1000, batch_max_wait_ms: 200, concurrency: 4, drain_s: 20}
logging: {format: json, level: warn}
tags:
  - {name: pinterest, type: pinterest, advertiser_id: "549755885175", access_token: "bench-token",
     api_base: "http://127.0.0.1:19999", log: "no"}
YAML
}
wait_port() { for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
rps() { wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" -s scripts/post-event.lua "$1" | awk '/Requests\/sec/ {print $2}'; }
commits() { curl -fsS http://127.0.0.1:19997/metrics | awk '/^tagbridge_queue_commits_total/ {print $2}'; }

wait_port http://127.0.0.1:19998/x
bare=$(rps http://127.0.0.1:19998/data)

run_gateway() { # $1 = queue path; prints "rps fsyncs_per_s peak_rss_kib"
  gateway_config "$1" > "$tmp/g.yaml"
  target/release/tagbridge serve --config "$tmp/g.yaml" >/dev/null 2>&1 & local pid=$!
  wait_port http://127.0.0.1:19997/healthz
  local c0; c0=$(commits); c0=${c0:-0}
  local r; r=$(rps http://127.0.0.1:19997/data)
  local c1; c1=$(commits); c1=${c1:-0}
  local rss; rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  echo "$r $(awk -v a="$c0" -v b="$c1" -v d="$DUR" 'BEGIN {printf "%.0f", (b-a)/d}') $rss"
}
read -r durable fsyncs rss_durable < <(run_gateway "$tmp/queue")
read -r memory _ rss_memory < <(run_gateway ":memory:")
events=$(curl -fsS http://127.0.0.1:19999/count); requests=$(curl -fsS http://127.0.0.1:19999/requests)

echo "wrk: ${THREADS} thread(s), ${CONN} connections, ${DUR}s each, $(nproc) cores"
printf '%-44s %10s req/s\n' "bare axum 204" "$bare"
printf '%-44s %10s req/s  (%.0f%% of bare)\n' "tagbridge /data, durable queue" "$durable" "$(awk -v a="$durable" -v b="$bare" 'BEGIN {print 100*a/b}')"
printf '%-44s %10s req/s  (%.0f%% of bare)\n' "tagbridge /data, queue in memory" "$memory" "$(awk -v a="$memory" -v b="$bare" 'BEGIN {print 100*a/b}')"
printf '%-44s %10.2f\n' "durable / in-memory" "$(awk -v a="$durable" -v b="$memory" 'BEGIN {print a/b}')"
printf '%-44s %10s\n' "fsyncs/s (group commits) during the durable run" "$fsyncs"
printf '%-44s %10s\n' "events per Pinterest request (both runs)" "$(awk -v e="$events" -v r="$requests" 'BEGIN {printf "%.0f", e/r}')"
printf '%-44s %10s / %s KiB\n' "peak RSS (durable / in-memory)" "$rss_durable" "$rss_memory"
