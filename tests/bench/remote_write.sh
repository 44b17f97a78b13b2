#!/bin/sh
# Remote-write out next to ingest in: apm-collector takes a closed-loop load from
# collector_load (AGENTS x SERIES on loopback, acks after an fsynced commit) while it
# remote-writes every committed sample to a real Prometheus (Debian's `prometheus`,
# --web.enable-remote-write-receiver) on the same machine. Prints the durable ingest
# rate, the samples Prometheus acknowledged during the load window, how long the sender
# took to drain what was left after the load stopped, and the rate out over load + drain.
# Builds a Release tree. Figures only, no pass/fail.
#
#   tests/bench/remote_write.sh [AGENTS [SERIES [SECONDS [BATCH]]]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
agents=${1:-20}
series=${2:-500}
secs=${3:-20}
batch=${4:-2000}
prom=${PROMETHEUS:-/usr/bin/prometheus}
[ -x "$prom" ] || { echo "remote_write.sh: $prom missing (apt-get install prometheus)" >&2; exit 1; }

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-bench-rw
# Three ports the kernel says are free now (other programs on the machine use fixed ranges too).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
http=$(free_port)
pport=$(free_port)
ppid_=""
# The collector first: it may be sending to Prometheus.
cleanup() {
    [ -z "$cpid" ] || bench_stop_collector
    [ -z "$ppid_" ] || bench_stop "$ppid_" TERM
    bench_cleanup
}
trap cleanup EXIT INT TERM

printf 'global:\n  scrape_interval: 1m\n' >"$work/prometheus.yml"
"$prom" --config.file "$work/prometheus.yml" --storage.tsdb.path "$work/tsdb" \
    --web.listen-address "127.0.0.1:$pport" --web.enable-remote-write-receiver \
    --log.level warn 2>"$work/prometheus.log" &
ppid_=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$pport/-/ready" >/dev/null 2>&1 && break
    sleep 0.2
done

# start_collector [REMOTE-WRITE-URL]: a fresh data directory each time.
start_collector() {
    rm -rf "$data"
    rwflags=""
    [ $# -gt 0 ] && rwflags="--remote-write-url $1 --remote-write-batch-size $batch"
    # shellcheck disable=SC2086
    bench_collector_for_load "$build/server/apm-collector" $rwflags
    sleep 1
}
load() {
    bench_load --agents "$agents" --series "$series" --duration "$secs" || true
}

echo "== ingest alone: $agents agents x $series series, closed loop, ${secs}s"
start_collector
load
bench_stop_collector
echo

# counter MODULE NAME: one counter from the collector's status.
counter() {
    curl -sf "http://127.0.0.1:$http/api/v1/status" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['$1']['$2'])"
}
now() { date +%s.%N; }

echo "== the same with remote-write to Prometheus (batch $batch)"
start_collector "http://127.0.0.1:$pport/api/v1/write"
sent0=$(counter remote_write samples_sent)
committed0=$(counter writer samples)
t0=$(now)
load
t1=$(now)
sent1=$(counter remote_write samples_sent)
committed=$(counter writer samples)
# Drain: until every committed sample was acknowledged by Prometheus (or 300 s).
while :; do
    sent=$(counter remote_write samples_sent)
    [ "$sent" -ge "$committed" ] && break
    if awk -v a="$(now)" -v b="$t1" 'BEGIN { exit !(a - b > 300) }'; then
        echo "drain: gave up after 300 s"
        break
    fi
    sleep 0.5
done
t2=$(now)
echo
echo "committed: $((committed - committed0)) samples"
awk -v s0="$sent0" -v s1="$sent1" -v s="$sent" -v t0="$t0" -v t1="$t1" -v t2="$t2" \
    -v c="$((committed - committed0))" 'BEGIN {
    printf "remote-write during the load window: %.0f samples/s (%d of %d samples sent by its end)\n",
        (s1 - s0) / (t1 - t0), s1 - s0, c
    printf "drain after the load: %.1f s\n", t2 - t1
    printf "remote-write out over load + drain: %.0f samples/s\n", (s - s0) / (t2 - t0)
}'
echo "remote_write counters: retries $(counter remote_write retries), rejected $(counter remote_write rejected), overflows $(counter remote_write overflows), store reads $(counter remote_write store_reads)"
