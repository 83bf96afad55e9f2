#!/usr/bin/env bash
# Ingest throughput, side by side in one run (ratios are what to compare; absolute numbers
# drift from machine to machine and minute to minute).
#
# Servers, all on loopback, all started once:
#   bare          axum: read the body, answer 204                 (examples/bare.rs)
#   durable floor bare + a writer thread: one write + one fdatasync per group, answer after
#                 it                                               (examples/durable_floor.rs)
#   write floor   the same, answer after the write, fdatasync every 100 ms
#   gateway/sync0 tagbridge, queue.sync_interval_ms: 0   (answer after fdatasync)
#   gateway/sync100 tagbridge, queue.sync_interval_ms: 100 (answer after the write)
# and a mock Pinterest (examples/mock_pinterest.rs) the gateways deliver to.
#
# Workload: one realistic 3-event batch per request (page_view, add_to_cart with an item,
# purchase with two items) on each endpoint: /g/collect (scripts/gtag-batch.lua), /data
# (scripts/data-batch.lua), /mp/collect (scripts/mp-batch.lua). wrk, 1 thread, 32
# connections, DUR seconds per round; ROUNDS rounds alternating the servers; the median
# round is reported.
#
# Reports per endpoint: req/s, p99 and CPU per request of each server (user + system time
# of its process over the round, divided by its requests), of wrk, and in the gateway rounds
# of the mock Pinterest (all share the machine); the ratios the targets are stated in
# (sync0 / durable floor, sync100 / bare, p99 sync0 / p99 durable floor); the gateways'
# fsyncs per second; the CPU per request each target leaves the gateway (all cores busy at
# the target rate, minus wrk's and the mock's share) beside what it uses; then events per
# Pinterest call, events delivered vs acknowledged, and each gateway's peak RSS.
#
# Usage: scripts/bench-ingest.sh          (env: DUR=8 ROUNDS=3 CONN=32 ENDPOINTS="gtag data mp")
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8}; ROUNDS=${ROUNDS:-3}; CONN=${CONN:-32}; ENDPOINTS=${ENDPOINTS:-"gtag data mp"}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
command -v curl >/dev/null || { echo "needs curl"; exit 1; }
cargo build -q --release --bin tagbridge --example mock_pinterest --example bare --example durable_floor

tmp=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}" bench.XXXXXX); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

MOCK=127.0.0.1:19999 BARE=127.0.0.1:19998 FLOOR=127.0.0.1:19996 WFLOOR=127.0.0.1:19995
G0=127.0.0.1:19997 G0_ADMIN=127.0.0.1:19987 G100=127.0.0.1:19994 G100_ADMIN=127.0.0.1:19984

for a in $MOCK $BARE $FLOOR $WFLOOR $G0 $G0_ADMIN $G100 $G100_ADMIN; do
  if (exec 3<>"/dev/tcp/${a%:*}/${a##*:}") 2>/dev/null; then echo "$a is in use (a stray server?)"; exit 1; fi
done
target/release/examples/mock_pinterest "$MOCK" 2>/dev/null & pids+=($!); mockpid=$!
target/release/examples/bare "$BARE" 2>/dev/null & pids+=($!); barepid=$!
target/release/examples/durable_floor "$FLOOR" "$tmp/floor" 2>/dev/null & pids+=($!); floorpid=$!
target/release/examples/durable_floor "$WFLOOR" "$tmp/wfloor" 100 2>/dev/null & pids+=($!); wfloorpid=$!

gateway() { # $1 listen, $2 admin, $3 sync_interval_ms, $4 queue dir
  cat > "$tmp/$3.yaml" <<YAML
server: {listen: "$1", admin_listen: "$2", ingest_key: "bench-secret"}
queue: {path: "$4", sync_interval_ms: $3, min_free_bytes: 0}
dispatch: {batch_max_events: 1000, batch_max_wait_ms: 200, concurrency: 4, drain_s: 20}
logging: {format: json, level: warn}
tags:
  - {name: pinterest, type: pinterest, advertiser_id: "549755885175", access_token: "bench-token",
     api_base: "http://$MOCK", log: "no"}
YAML
  target/release/tagbridge serve --config "$tmp/$3.yaml" >"$tmp/$3.log" 2>&1 &
  pids+=($!)
  echo $!
}
# (not `$(gateway ...)`: a command substitution's subshell would keep the pid from `pids`)
gateway "$G0" "$G0_ADMIN" 0 "$tmp/q0" >/dev/null; gpid0=${pids[-1]}
gateway "$G100" "$G100_ADMIN" 100 "$tmp/q100" >/dev/null; gpid100=${pids[-1]}

wait_port() { for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1"; exit 1; }
wait_port "http://$MOCK/count"; wait_port "http://$BARE/x"; wait_port "http://$G0/healthz"; wait_port "http://$G100/healthz"
for a in "$G0" "$G100"; do # a port held by a stray process would answer for the gateway
  if ! kill -0 "$gpid0" 2>/dev/null || ! kill -0 "$gpid100" 2>/dev/null; then
    echo "a gateway did not start:"; cat "$tmp"/*.log; exit 1; fi; done
for a in "$FLOOR" "$WFLOOR"; do for _ in $(seq 1 50); do curl -s -o /dev/null -X POST "http://$a/x" && break; sleep 0.1; done; done

metric() { curl -fsS "http://$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
# wrk's p99 in ms from its --latency output.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
# CPU time (user + system, in clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
run_wrk() { # $1 url, $2 script -> "rps p99ms requests wrk_cpu_s"
  # `times` after wrk, in the same subshell: its second line is wrk's user and system time.
  local out; out=$(wrk -t1 -c"$CONN" -d"${DUR}s" --latency -s "$2" "$1"; times)
  local wcpu; wcpu=$(tail -n1 <<<"$out" | awk '{t=0; for (i=1;i<=2;i++) {split($i,a,/[ms]/); t+=a[1]*60+a[2]}; printf "%.3f", t}')
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
  local p99; p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [ -n "$non2xx" ]; then echo "!! $non2xx non-2xx answers from $1" >&2; fi
  echo "$rps $p99 ${n:-0} $wcpu"
}
# Microseconds of CPU per request from two tick readings.
per_req() { awk -v a="$1" -v b="$2" -v n="$3" -v t="$TICK" 'BEGIN {printf "%.1f", (n ? (b - a) * 1e6 / t / n : 0)}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P99 SYNCS CPU MOCKCPU WRKCPU
ack0=$(metric "$G0_ADMIN" tagbridge_events_queued_total); ack0=${ack0:-0}
ack100=$(metric "$G100_ADMIN" tagbridge_events_queued_total); ack100=${ack100:-0}
for ep in $ENDPOINTS; do
  case $ep in
    gtag) path="/g/collect"; script=scripts/gtag-batch.lua ;;
    data) path="/data"; script=scripts/data-batch.lua ;;
    mp) path="/mp/collect"; script=scripts/mp-batch.lua ;;
  esac
  for r in $(seq 1 "$ROUNDS"); do
    for s in bare floor wfloor sync0 sync100; do
      case $s in
        bare) addr=$BARE; pid=$barepid ;; floor) addr=$FLOOR; pid=$floorpid ;;
        wfloor) addr=$WFLOOR; pid=$wfloorpid ;;
        sync0) addr=$G0; admin=$G0_ADMIN; pid=$gpid0 ;;
        sync100) addr=$G100; admin=$G100_ADMIN; pid=$gpid100 ;;
      esac
      c0=0; [ "${s#sync}" != "$s" ] && c0=$(metric "$admin" tagbridge_queue_commits_total)
      t0=$(ticks "$pid"); m0=$(ticks "$mockpid")
      read -r rps p99 n wcpu < <(run_wrk "http://$addr$path" "$script")
      t1=$(ticks "$pid"); m1=$(ticks "$mockpid")
      CPU[$ep.$s]+="$(per_req "$t0" "$t1" "$n") "; MOCKCPU[$ep.$s]+="$(per_req "$m0" "$m1" "$n") "
      WRKCPU[$ep.$s]+="$(per_req 0 "$(awk -v c="$wcpu" -v t="$TICK" 'BEGIN {print c * t}')" "$n") "
      if [ "${s#sync}" != "$s" ]; then
        c1=$(metric "$admin" tagbridge_queue_commits_total)
        SYNCS[$ep.$s]+="$(awk -v a="${c0:-0}" -v b="${c1:-0}" -v d="$DUR" 'BEGIN {printf "%.0f", (b-a)/d}') "
      fi
      RPS[$ep.$s]+="$rps "; P99[$ep.$s]+="$p99 "
    done
  done
done

# Let the gateways deliver what they acknowledged, then count.
sleep 2
acked=$(( $(metric "$G0_ADMIN" tagbridge_events_queued_total) - ack0 + $(metric "$G100_ADMIN" tagbridge_events_queued_total) - ack100 ))
for _ in $(seq 1 100); do
  d0=$(metric "$G0_ADMIN" tagbridge_queue_pending_events); d1=$(metric "$G100_ADMIN" tagbridge_queue_pending_events)
  [ "${d0%.*}" = 0 ] && [ "${d1%.*}" = 0 ] && break; sleep 0.2
done
events=$(curl -fsS "http://$MOCK/count"); calls=$(curl -fsS "http://$MOCK/requests")
rss0=$(awk '/VmHWM/ {print $2}' "/proc/$gpid0/status"); rss100=$(awk '/VmHWM/ {print $2}' "/proc/$gpid100/status")

med() { tr ' ' '\n' <<<"${1% }" | median; }
echo "wrk: 1 thread, $CONN connections, ${DUR}s × $ROUNDS rounds (median), $(nproc) cores, $(date -u +%F)"
printf '%-10s %-16s %10s %9s %10s %12s %12s %13s\n' endpoint server "req/s" "p99 ms" "fsyncs/s" "CPU us/req" "wrk us/req" "mock us/req"
for ep in $ENDPOINTS; do
  for s in bare floor wfloor sync0 sync100; do
    name=$s; case $s in bare) name="bare axum";; floor) name="durable floor";; wfloor) name="write floor";;
      sync0) name="gateway sync 0";; sync100) name="gateway sync 100";; esac
    sy=""; [ -n "${SYNCS[$ep.$s]:-}" ] && sy=$(med "${SYNCS[$ep.$s]}")
    mk=""; [ "${s#sync}" != "$s" ] && mk=$(med "${MOCKCPU[$ep.$s]}")
    printf '%-10s %-16s %10.0f %9.2f %10s %12s %12s %13s\n' "$ep" "$name" "$(med "${RPS[$ep.$s]}")" \
      "$(med "${P99[$ep.$s]}")" "$sy" "$(med "${CPU[$ep.$s]}")" "$(med "${WRKCPU[$ep.$s]}")" "$mk"
  done
done
echo
printf '%-10s %22s %22s %22s %18s\n' endpoint "sync0 / durable floor" "sync100 / bare" "p99 sync0 / floor" "sync100 / write floor"
for ep in $ENDPOINTS; do
  awk -v ep="$ep" -v g0="$(med "${RPS[$ep.sync0]}")" -v fl="$(med "${RPS[$ep.floor]}")" \
      -v g1="$(med "${RPS[$ep.sync100]}")" -v ba="$(med "${RPS[$ep.bare]}")" -v wf="$(med "${RPS[$ep.wfloor]}")" \
      -v p0="$(med "${P99[$ep.sync0]}")" -v pf="$(med "${P99[$ep.floor]}")" \
      'BEGIN {printf "%-10s %22.2f %22.2f %22.2f %18.2f\n", ep, g0/fl, g1/ba, p0/pf, g1/wf}'
done
echo
# What the targets leave the gateway: the CPU per request that this machine's cores, fully
# used, allow at the target rate, minus what wrk and the mock Pinterest spend per request
# (wrk's as measured against the yardstick; it costs more per request at lower rates).
cores=$(nproc)
printf '%-10s %34s %34s\n' endpoint "sync100 target: budget / used us" "sync0 target: budget / used us"
for ep in $ENDPOINTS; do
  awk -v ep="$ep" -v c="$cores" -v ba="$(med "${RPS[$ep.bare]}")" -v fl="$(med "${RPS[$ep.floor]}")" \
      -v wb="$(med "${WRKCPU[$ep.bare]}")" -v wf="$(med "${WRKCPU[$ep.floor]}")" \
      -v m1="$(med "${MOCKCPU[$ep.sync100]}")" -v m0="$(med "${MOCKCPU[$ep.sync0]}")" \
      -v g1="$(med "${CPU[$ep.sync100]}")" -v g0="$(med "${CPU[$ep.sync0]}")" \
      'BEGIN {b1 = c * 1e6 / (0.70 * ba) - wb - m1; b0 = c * 1e6 / (0.85 * fl) - wf - m0;
              printf "%-10s %34s %34s\n", ep, sprintf("%.1f / %.1f", b1, g1), sprintf("%.1f / %.1f", b0, g0)}'
done
echo
printf '%-44s %s\n' "events per Pinterest call" "$(awk -v e="$events" -v c="$calls" 'BEGIN {printf "%.0f", (c ? e/c : 0)}')"
printf '%-44s %s / %s\n' "events delivered / acknowledged" "$events" "$acked"
printf '%-44s %s / %s MiB\n' "peak RSS, gateway sync 0 / sync 100" "$(( rss0 / 1024 ))" "$(( rss100 / 1024 ))"
