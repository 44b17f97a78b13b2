#!/bin/sh
# Online backup under ingest: fills a store of MB megabytes (tests/bench/store_fill.c),
# starts apm-collector on it, and runs the same open-loop load twice (AGENTS
# agents x SERIES series, RATE batches/s each, SECONDS long, acks after fsync):
# once alone, once with `apm-cli backup` asked for 2 s in. Prints the backup's
# answer (size, duration) and, for both runs, the send-to-ack latencies: with
# SECONDS not much longer than the backup, the max of the second run is the
# longest ingest stall during the backup, next to the first's. Builds a Release tree in build-bench/. Figures
# only, no pass/fail.
#
#   tests/bench/backup_stall.sh [MB [AGENTS [SERIES [RATE [SECONDS]]]]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
mb=${1:-300}
agents=${2:-100}
series=${3:-500}
rate=${4:-2}
secs=${5:-10}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector apm-cli collector_load store_fill >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-bench

"$build/tests/store_fill" "$data" "$mb"
bench_collector "$build/server/apm-collector" --log-level warn --max-connections 2000 \
    --max-unauthenticated 1000 --max-unauthenticated-per-address 1000
sleep 2

load() {
    bench_load --agents "$agents" --series "$series" --rate "$rate" --duration "$secs" --name "$1"
}

echo "== $agents agents x $series series at $rate batches/s each, $secs s, no backup"
load alone

echo
echo "== the same, with an online backup asked for after 2 s"
load withbackup > "$work/load.out" &
lpid=$!
sleep 2
"$build/cli/apm-cli" --server "http://127.0.0.1:$((port + 1))" backup "$work/backup"
wait "$lpid"
lpid=""
cat "$work/load.out"
du -sh "$work/data/data.mdb" "$work/backup/data.mdb"
