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

. "$src/tests/bench/lib.sh"
bench_init apm-bench

start_collector() {
    rm -rf "$data"
    bench_collector_for_load "$build/server/apm-collector"
    sleep 1
}

echo "== closed loop: $agents agents x $series series"
start_collector
out=$(bench_load --agents "$agents" --series "$series" --duration "$secs")
echo "$out"
rate=$(echo "$out" | awk '/^acked:/ {print $2}')
bench_stop_collector

half=$(awk -v r="$rate" -v a="$agents" -v s="$series" 'BEGIN { printf "%.3f", r / 2 / a / s }')
echo
echo "== half load: $agents agents x $series series at $half batches/s each"
start_collector
bench_load --agents "$agents" --series "$series" --duration "$secs" --rate "$half"
bench_stop_collector

echo
echo "== one agent x $series series, closed loop"
start_collector
bench_load --agents 1 --series "$series" --duration "$secs"
bench_stop_collector
