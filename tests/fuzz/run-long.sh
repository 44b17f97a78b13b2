#!/bin/sh
# Runs every libFuzzer target (tests/fuzz/fuzz_*.c) for MINUTES minutes each,
# one after the other, starting from its checked-in corpus, and prints a line
# per target: executions, executions per second, corpus size, and the crash
# input if one was found. New inputs go to a work directory, never into the
# checked-in corpus; add a crash input there by hand with its fix.
#   tests/fuzz/run-long.sh [MINUTES] [TARGET...]      (default 1 minute, all targets)
#   APM_FUZZ_BUILD=DIR   the clang -DAPM_FUZZ=ON build (default build-fuzz, configured
#                        and built when missing)
#   APM_FUZZ_WORK=DIR    where new corpus entries, crashes and logs go (default a new
#                        directory under /tmp, kept for inspection)
# Exit status 1 when any target crashed, hung or leaked.
set -eu
cd "$(dirname "$0")/../.."
src=$(pwd)

minutes=${1:-1}
[ $# -gt 0 ] && shift
case "$minutes" in
'' | *[!0-9]* | 0) echo "run-long.sh: MINUTES must be a whole number from 1, got '$minutes'" >&2; exit 2 ;;
esac
build=${APM_FUZZ_BUILD:-$src/build-fuzz}
work=${APM_FUZZ_WORK:-$(mktemp -d /tmp/apm-fuzz-XXXXXX)}
jobs=$(nproc 2>/dev/null || echo 2)

if ! command -v clang >/dev/null 2>&1; then
    echo "run-long.sh: clang is missing: run deploy/install-deps.sh" >&2
    exit 2
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=clang cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPM_FUZZ=ON \
        -DAPM_SANITIZE=OFF -DAPM_TSAN=OFF -DAPM_WERROR=ON >/dev/null
fi
cmake --build "$build" -j "$jobs" >/dev/null

targets="$*"
if [ -z "$targets" ]; then
    for f in "$src"/tests/fuzz/fuzz_*.c; do
        t=$(basename "$f" .c)
        targets="$targets ${t#fuzz_}"
    done
fi

status=0
summary=""
for t in $targets; do
    bin=$build/tests/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "run-long.sh: no target '$t' ($bin)" >&2
        exit 2
    fi
    mkdir -p "$work/$t/corpus" "$work/$t/crashes"
    log=$work/$t/log
    echo "== fuzz_$t for ${minutes} min (log $log)"
    rc=0
    # The first directory receives new inputs; the checked-in corpus is only read.
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time=$((minutes * 60)) -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/$t/crashes/" \
        "$work/$t/corpus" "$src/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    units=$(find "$work/$t/corpus" "$src/tests/fuzz/corpus/$t" -type f | wc -l)
    crash=$(find "$work/$t/crashes" -type f | head -n 1)
    line="$t execs=${execs:-?} per_s=${rate:-?} corpus=$units"
    if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
        status=1
        line="$line FAILED rc=$rc input=${crash:-none}"
        grep -m 3 -E "ERROR: |runtime error|SUMMARY" "$log" || true
    fi
    echo "$line"
    summary="$summary
$line"
done
echo "== summary (${minutes} min per target, work $work)$summary"
exit $status
