#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, then builds
# and runs every test in three builds, warnings as errors in each:
#   normal    Release (-O3), every test;
#   sanitize  ASan+UBSan (Debug), every test but the slow real-peer ones;
#   tsan      ThreadSanitizer (RelWithDebInfo), every test but the slow real-peer ones.
# The real-peer tests (ctest label "peer": Alertmanager, the Debian packages)
# exercise a peer's side more than our threads and memory, so they run once.
#   tests/run.sh                            all three builds
#   APM_TEST_BUILDS="normal tsan" tests/run.sh   some of them
#   APM_BUILD_ROOT=/tmp/apm tests/run.sh         build trees under /tmp/apm, not here
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)

./deploy/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
builds=${APM_TEST_BUILDS:-"normal sanitize tsan"}
root=${APM_BUILD_ROOT:-.}
common="-DAPM_WERROR=ON -DAPM_FUZZ=OFF"
timings=""

for b in $builds; do
    case "$b" in
    normal)
        dir=$root/build select=""
        flags="-DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF -DAPM_TSAN=OFF" ;;
    sanitize)
        dir=$root/build-asan select="-LE peer"
        flags="-DCMAKE_BUILD_TYPE=Debug -DAPM_SANITIZE=ON -DAPM_TSAN=OFF" ;;
    tsan)
        dir=$root/build-tsan select="-LE peer"
        flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPM_SANITIZE=OFF -DAPM_TSAN=ON" ;;
    *) echo "tests/run.sh: unknown build '$b' (normal, sanitize or tsan)" >&2; exit 1 ;;
    esac
    start=$(date +%s)
    echo "== $b build ($dir)"
    # shellcheck disable=SC2086
    cmake -S . -B "$dir" $flags $common >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== $b tests"
    # The sanitizers' options reach the programs that integration tests start, too.
    # shellcheck disable=SC2086
    (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$src/tests/tsan.supp" \
        ctest --output-on-failure --timeout 600 -j "$jobs" $select)
    secs=$(($(date +%s) - start))
    echo "== $b build and tests: ${secs}s"
    timings="$timings $b=${secs}s"
done

echo "== formatting"
if command -v clang-format >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h' 2>/dev/null || true)
    if [ -n "$files" ]; then
        # shellcheck disable=SC2086
        clang-format --dry-run --Werror $files
    fi
fi
echo "== times:$timings"
echo "all tests passed"
