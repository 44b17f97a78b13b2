#!/bin/sh
# The analysis thread's CPU per analysed sample in two collector builds,
# alternated: 100 agents x 500 series (collector_load) at a fixed rate, so
# that both analyse the same histories. Prints per run the acked rate, the
# analysis thread's CPU (its ticks in /proc, the thread found by a 2 s perf
# sample as the one running worker_main) over apm_analysis_samples_total,
# and the load average. Needs perf. Figures only, no pass/fail.
#
#   tests/bench/analysis_cpu_ab.sh OLD_COLLECTOR NEW_COLLECTOR [ROUNDS [SECONDS [BATCHES_PER_S]]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
old=$1
new=$2
rounds=${3:-2}
secs=${4:-60}
rate=${5:-4}
command -v perf >/dev/null || { echo "analysis_cpu_ab: needs perf" >&2; exit 1; }
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target collector_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-ab

for r in $(seq 1 "$rounds"); do
    for v in old new; do
        bin=$old
        [ "$v" = new ] && bin=$new
        rm -rf "$data"
        bench_collector_for_load "$bin"
        sleep 1
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        (sleep 5; perf record -F 49 -g -p "$cpid" -o "$work/perf.data" -- sleep 2 >/dev/null 2>&1) &
        ppid=$!
        out=$(bench_load --agents 100 --series 500 --duration "$secs" \
            --rate "$rate" --collector-pid "$cpid")
        wait "$ppid"
        tid=$(perf script -i "$work/perf.data" 2>/dev/null |
            awk '/^apm-collector/ {t = $2} /worker_main/ {print t; exit}')
        ticks=$(awk '{print $14 + $15}' "/proc/$cpid/task/$tid/stat" 2>/dev/null || echo 0)
        metrics=$(curl -s "http://127.0.0.1:$((port + 1))/metrics")
        bench_stop_collector
        samples=$(echo "$metrics" | awk '$1 == "apm_analysis_samples_total" {print $2}')
        hz=$(getconf CLK_TCK)
        echo "$r $v: $(echo "$out" | awk '/^acked:/ {printf "acked %s samples/s, ", $2}')analysis" \
            "$(awk -v t="$ticks" -v n="${samples:-0}" -v hz="$hz" \
                'BEGIN { if (n > 0) printf "%.2f us CPU per sample over %d samples", t * 1e6 / hz / n, n }')," \
            "load average $load"
    done
done
