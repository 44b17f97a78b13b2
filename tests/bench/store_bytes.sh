#!/bin/sh
# Bytes per stored sample and durable ingest rate of the store alone.
# Builds an optimised (unsanitised, warnings not fatal) copy of the server library in
# build-bench/ and runs tests/bench/store_bytes.c three ways. Figures only.
#
#   tests/bench/store_bytes.sh [TRACE_DIR]   (default ../shared/leakbench/traces)
#   APM_BENCH_PACK_MS=-1 stores without packed periods (the layout before them), for comparison.
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

"$build/store_bytes" bytes "$traces"
"$build/store_bytes" synth
"$build/store_bytes" synth 86400
"$build/store_bytes" rate "${APM_BENCH_ROUNDS:-21}"
