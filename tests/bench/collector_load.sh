#!/bin/sh
# Durable ingest rate and send-to-ack latency of apm-collector under
# PRODUCT.md's load shape: 100 simulated agents x 500 series on loopback, each
# sending its next batch as soon as the previous one is acked (acks follow an
# fsynced LMDB commit); then the same at half the measured rate, fixed, for
# latency at half load; then one agent alone. Builds a Release tree in
# build-bench/. Figures only, no pass/fail.
#
#   tests/bench/collector_load.sh [AGENTS [SERIES [SECONDS]]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
agents=${1:-100}
series=${2:-500}
secs=${3:-20}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load >/dev/null

work=$(mktemp -d /tmp/apm-bench.XXXXXX)
port=$((20000 + $$ % 20000))
cpid=""
cleanup() {
    [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

start_collector() {
    rm -rf "$work/data"
    "$build/server/apm-collector" --foreground --data-dir "$work/data" \
        --listen "127.0.0.1:$port" --http "127.0.0.1:$((port + 1))" \
        --token-file "$work/token" --log-level warn --max-connections 2000 \
        --max-unauthenticated 2000 --max-unauthenticated-per-address 2000 &
    cpid=$!
    sleep 1
}
stop_collector() {
    kill -TERM "$cpid"; wait "$cpid" 2>/dev/null || true; cpid=""
}

echo "== closed loop: $agents agents x $series series"
start_collector
out=$("$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
    --agents "$agents" --series "$series" --duration "$secs")
echo "$out"
rate=$(echo "$out" | awk '/^acked:/ {print $2}')
stop_collector

half=$(awk -v r="$rate" -v a="$agents" -v s="$series" 'BEGIN { printf "%.3f", r / 2 / a / s }')
echo
echo "== half load: $agents agents x $series series at $half batches/s each"
start_collector
"$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
    --agents "$agents" --series "$series" --duration "$secs" --rate "$half"
stop_collector

echo
echo "== one agent x $series series, closed loop"
start_collector
"$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
    --agents 1 --series "$series" --duration "$secs"
stop_collector
