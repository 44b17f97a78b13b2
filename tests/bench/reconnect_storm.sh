#!/bin/sh
# 1,000 agents reconnecting after a collector restart: the load tool's
# simulated agents (tests/bench/collector_load.c --reconnect, which backs off
# like apm-agent: full jitter in [0, min(30 s, 200 ms x 2^attempt)]) send a
# batch a second each; the collector is killed with SIGKILL, restarted on the
# same data directory and port after DOWN seconds, and the tool prints how
# long until every agent was welcomed back and the reconnections per second.
# The collector runs with its defaults (max-connections 1024, 64 connections
# still in their handshake, 16 per address: loopback is one address, so the
# herd also shows what the per-address budget costs).
# Then the ground truth: the tool logs every batch it made and whether it was
# acked (agents keep their instance, queue the batches they make while the
# collector is away and resend what was not acked after the reconnect, as
# apm-agent does), and tests/bench/storm_check.py reads every
# series of the simulated hosts back through the HTTP API of the restarted
# collector: acked samples lost, duplicated, phantom (exit 1 if any).
# Builds a Release tree in build-bench/.
#
#   tests/bench/reconnect_storm.sh [AGENTS [DOWN_SECONDS [SERIES]]]
#   APM_COLLECTOR_ARGS="--max-unauthenticated-per-address 1100" adds flags.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
agents=${1:-1000}
down=${2:-2}
series=${3:-10}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_cleanup_signal=KILL
bench_init apm-bench

start_collector() {
    # shellcheck disable=SC2086
    bench_collector "$build/server/apm-collector" --log-level warn ${APM_COLLECTOR_ARGS:-}
    bench_wait_token
}

start_collector
sleep 1
# Runs 2 s of warm-up, then 40 s measured: the outage comes 10 s in.
"$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
    --agents "$agents" --series "$series" --rate 1 --duration 40 --reconnect --truth "$work/truth" \
    > "$work/load.out" 2>&1 &
lpid=$!
sleep 12
echo "== SIGKILL of the collector with $agents agents connected; restart after ${down}s"
kill -KILL "$cpid"
wait "$cpid" 2>/dev/null || true
cpid=""
sleep "$down"
start_collector
wait "$lpid" || true
lpid=""
cat "$work/load.out"
echo "== ground truth against the store"
python3 "$src/tests/bench/storm_check.py" --api "http://127.0.0.1:$((port + 1))" "$work/truth"
