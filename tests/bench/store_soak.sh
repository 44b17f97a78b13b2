#!/bin/sh
# Accelerated soak of the store's retention: a Release collector with a short
# raw retention (2 min by default), short rollup retentions and a maintenance
# pass every second, under a steady load that starts one retention back and
# then keeps pace with the clock, for MINUTES (20 by default). Prints the data
# file's size every minute (it must hold within 10 % once the retention is
# reached) and, at the end, the longest maintenance slice (the longest time
# ingest waited for it) and the load's send-to-ack latencies. Figures only;
# tests/integration/test_retention.py is the short version in the test command.
#
#   tests/bench/store_soak.sh [MINUTES [AGENTS [SERIES [RETENTION]]]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
minutes=${1:-20}
agents=${2:-100}
series=${3:-500}
retention=${4:-2m}
step_ms=${APM_SOAK_STEP_MS:-100} # data time per batch: 10 samples/s per series

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF -DAPM_WERROR=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-soak

bench_collector_for_load "$build/server/apm-collector" \
    --retention "$retention" --rollup-1m-retention 5m --rollup-1h-retention 10m \
    --maintenance-period 1s 2>"$work/collector.log"
sleep 1
if ! kill -0 "$cpid" 2>/dev/null; then
    cpid=""
    echo "store_soak: the collector did not start:" >&2
    cat "$work/collector.log" >&2
    exit 1
fi

back=$(awk -v r="$retention" 'BEGIN {
    n = r + 0; u = substr(r, length(r)); m = u == "m" ? 60 : u == "h" ? 3600 : 1; print n * m }')
# Each agent sends 1.5 batches per data step until it catches up with the clock (after
# twice the retention, when the collector keeps up).
rate=$(awk -v s="$step_ms" 'BEGIN { printf "%.1f", 1500 / s }')
"$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
    --agents "$agents" --series "$series" --rate "$rate" --step-ms "$step_ms" \
    --back "$back" --duration $((minutes * 60)) >"$work/load.out" 2>&1 &
lpid=$!

status() {
    curl -s "http://127.0.0.1:$((port + 1))/api/v1/status"
}
echo "retention $retention, $agents agents x $series series, ${step_ms} ms of data per batch"
echo "minute  file_bytes  samples_stored  chunks  chunks_deleted  slice_max_us  rollup_bytes"
i=0
while [ "$i" -lt "$minutes" ] && kill -0 "$lpid" 2>/dev/null; do
    sleep 60
    i=$((i + 1))
    size=$(stat -c %s "$work/data/data.mdb")
    status | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]
print(s["samples"], s["chunks"], s["chunks_deleted"], s["slice_max"], s["rollup_bytes"])' |
        { read -r samples chunks deleted slice rollup
          printf "%6d  %10d  %14d  %6d  %14d  %12d  %12d\n" "$i" "$size" "$samples" "$chunks" \
              "$deleted" "$slice" "$rollup"; }
done
wait "$lpid" || true
lpid=""
echo
cat "$work/load.out"
status | python3 -c 'import json,sys; s=json.load(sys.stdin)["store"]
print("longest maintenance slice (ingest stall): %.1f ms" % (s["slice_max"] / 1000))
print("map: %d bytes, grown %d times; series removed %d; full %d" %
      (s["map_size"], s["map_grows"], s["series_removed"], s["full"]))'
grep -c . "$work/collector.log" >/dev/null && tail -5 "$work/collector.log" || true
