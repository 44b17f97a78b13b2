#!/bin/sh
# Chunk formats compared on leakbench and the synthetic 1 s fleet: payload bytes per sample
# by trace kind and on the tuning / held-out halves, and encode / decode ns per sample.
# Builds an optimised copy of the store library in build-bench/ (as store_bytes.sh). Figures only.
#
#   tests/bench/chunk_codec.sh [TRACE_DIR] [CHUNK_SAMPLES] [priors]   (default ../shared/leakbench/traces 120)
#   with "priors": prints formats 2 and 3's prior table (server/store/chunk_rc.c) instead
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
traces=${1:-$src/../shared/leakbench/traces}
[ -n "$traces" ] || traces=$src/../shared/leakbench/traces

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF -DAPM_WERROR=OFF >/dev/null
cmake --build "$build" -j2 --target apm_server_store >/dev/null
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$src" -I"$build" \
    -o "$build/chunk_codec" "$src/tests/bench/chunk_codec.c" \
    "$build/server/libapm_server_store.a" "$build/common/libapm_common.a" -lm
uptime
"$build/chunk_codec" "$traces" "${2:-120}" ${3:-}
