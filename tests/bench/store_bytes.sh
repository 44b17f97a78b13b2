#!/bin/sh
# Bytes per stored sample and durable ingest rate of the store alone.
# Builds an optimised (unsanitised, warnings not fatal) copy of the server library in
# build-bench/ and runs tests/bench/store_bytes.c three ways. Figures only.
#
#   tests/bench/store_bytes.sh [TRACE_DIR]   (default ../shared/leakbench/traces)
#   APM_BENCH_PACK_MS=-1 stores without packed periods (the layout before them), for comparison.
#   APM_BENCH_FLEET=S    series of the issue's fleet (500 processes x 2 metrics x 24 h at 1 s:
#                        1000, the default; 0 skips it). Generated as stored, never held in memory;
#                        Prometheus's input for it is a ~4.5 GB OpenMetrics file in /tmp, deleted after.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
traces=${1:-$src/../shared/leakbench/traces}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF -DAPM_WERROR=OFF >/dev/null
cmake --build "$build" -j2 --target apm_server_core >/dev/null
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$src" -I"$build" \
    -o "$build/store_bytes" "$src/tests/bench/store_bytes.c" \
    "$build/server/libapm_server_core.a" "$build/server/libapm_server_store.a" \
    "$build/common/libapm_common.a" \
    "$build/proto/libapm_proto.a" \
    $(pkg-config --libs lmdb libuv jansson inih libprotobuf-c) -lpthread -lm

# Prometheus's TSDB on the same samples: promtool writes them as blocks (2 h each, as its
# head would cut them; promtool does not compact them further), and the blocks' bytes count.
prom() { # LABEL ARGS...
    label=$1
    shift
    if ! command -v promtool >/dev/null; then
        echo "$label: Prometheus: promtool not installed (Debian's prometheus package)"
        return
    fi
    work=$(mktemp -d /tmp/apm-bench-prom-XXXXXX)
    trap 'rm -rf "$work"' EXIT
    "$build/store_bytes" openmetrics "$@" >"$work/in.om"
    n=$(grep -c '^rss' "$work/in.om")
    t0=$(date +%s.%N)
    promtool tsdb create-blocks-from openmetrics -q "$work/in.om" "$work/tsdb" >/dev/null
    t1=$(date +%s.%N)
    bytes=$(du -sb "$work/tsdb" | cut -f1)
    blocks=$(ls "$work/tsdb" | wc -l)
    echo "$label: Prometheus TSDB (promtool $(promtool --version 2>&1 | sed -n '1s/.*version \([^ ]*\).*/\1/p')):" \
        "$bytes bytes in $blocks blocks for $n samples:" \
        "$(awk -v b="$bytes" -v n="$n" 'BEGIN { printf "%.3f", b / n }') bytes/sample;" \
        "promtool took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
    rm -rf "$work"
    trap - EXIT
}

# Wall time of one command, printed after it.
timed() {
    t0=$(date +%s.%N)
    "$@"
    echo "  (wall time $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
}

uptime
"$build/store_bytes" bytes "$traces"
prom leakbench bytes "$traces"
"$build/store_bytes" synth
prom "synthetic 1 s" synth
"$build/store_bytes" synth 86400
prom "synthetic 1 s, 24 h" synth 86400
fleet=${APM_BENCH_FLEET:-1000}
if [ "$fleet" -gt 0 ]; then
    uptime
    timed "$build/store_bytes" synth 86400 "$fleet"
    uptime
    prom "synthetic 1 s, $fleet series x 24 h" synth 86400 "$fleet"
    uptime
fi
"$build/store_bytes" rate "${APM_BENCH_ROUNDS:-21}"
