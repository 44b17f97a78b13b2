#!/bin/sh
# Ingest side by side, in one run: apm-collector (acks after an fsynced LMDB
# commit) under collector_load, then Debian's Prometheus remote-write receiver
# (--web.enable-remote-write-receiver, own TSDB dir, no fsync per request)
# under rw_load, with the same load shape: AGENTS x SERIES, one sample per
# series per batch, each agent sending its next batch when the previous one is
# acked (closed loop); then each at half its measured rate for the p99 at half
# load. Every batch's samples are STEP_MS of data time after the previous one's
# (for both), so Prometheus's head passes its 3 h compaction span during the
# run: the script prints how many head compactions Prometheus did in the
# closed-loop run. Figures only, no pass/fail; prints the load average too.
#
#   tests/bench/vs_prometheus.sh [SECONDS [AGENTS [SERIES [STEP_MS [HALF_SECONDS]]]]]
#   defaults:                     90        100      500      30000     30
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
secs=${1:-90}
agents=${2:-100}
series=${3:-500}
step=${4:-30000}
half_secs=${5:-30}

command -v prometheus >/dev/null || { echo "vs_prometheus: needs Debian's prometheus package" >&2; exit 1; }
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load rw_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-vsprom
field() { echo "$1" | awk -v k="$2" '$1 == k {print $2}'; }
p99() { echo "$1" | sed -n 's/.*p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \2/p'; }

start_collector() {
    rm -rf "$data"
    bench_collector_for_load "$build/server/apm-collector"
    sleep 1
}
start_prometheus() {
    rm -rf "$work/tsdb"
    printf 'global:\n  scrape_interval: 1m\n' >"$work/prom.yml"
    prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/tsdb" \
        --web.listen-address="127.0.0.1:$((port + 2))" --web.enable-remote-write-receiver \
        --log.level=warn 2>"$work/prom.log" &
    cpid=$! # the one server running, stopped as the collector is
    sleep 3
}
compactions() {
    curl -s "http://127.0.0.1:$((port + 2))/metrics" |
        awk '$1 == "prometheus_tsdb_compactions_total" {print $2}'
}

echo "== apm-collector, closed loop: $agents agents x $series series, ${secs} s, step ${step} ms"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_collector
ours=$(bench_load --agents "$agents" --series "$series" --duration "$secs" --step-ms "$step")
echo "$ours"
bench_stop_collector
ours_rate=$(field "$ours" acked:)
half=$(awk -v r="$ours_rate" -v a="$agents" -v s="$series" 'BEGIN { printf "%.3f", r / 2 / a / s }')
echo "== apm-collector, half load: $half batches/s per agent, ${half_secs} s"
start_collector
ours_half=$(bench_load --agents "$agents" --series "$series" --duration "$half_secs" \
    --step-ms "$step" --rate "$half")
echo "$ours_half"
bench_stop_collector
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 {print $3}') remote write, closed loop: same shape"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
start_prometheus
prom=$("$build/tests/rw_load" --port "$((port + 2))" --agents "$agents" --series "$series" \
    --duration "$secs" --step-ms "$step")
echo "$prom"
echo "head compactions during the run: $(compactions)"
bench_stop_collector
prom_rate=$(field "$prom" acked:)
phalf=$(awk -v r="$prom_rate" -v a="$agents" -v s="$series" 'BEGIN { printf "%.3f", r / 2 / a / s }')
echo "== Prometheus, half load: $phalf batches/s per agent, ${half_secs} s"
start_prometheus
prom_half=$("$build/tests/rw_load" --port "$((port + 2))" --agents "$agents" \
    --series "$series" --duration "$half_secs" --step-ms "$step" --rate "$phalf")
echo "$prom_half"
bench_stop_collector
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "                 samples/s   p50/p99 ms (full)   p50/p99 ms (half load)"
printf "apm-collector  %11s   %-19s %s\n" "$ours_rate" "$(p99 "$ours")" "$(p99 "$ours_half")"
printf "prometheus     %11s   %-19s %s\n" "$prom_rate" "$(p99 "$prom")" "$(p99 "$prom_half")"
