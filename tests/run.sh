#!/bin/sh
# The whole test suite, as CI runs it: installs what is missing, then builds
# and runs every test twice, in a normal build and under ASan+UBSan.
#   tests/run.sh            both builds
#   APM_TEST_BUILDS=normal  tests/run.sh    one of them (normal | sanitize)
set -eu
cd "$(dirname "$0")/.."

./deploy/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
builds=${APM_TEST_BUILDS:-"normal sanitize"}

for b in $builds; do
    case "$b" in
    normal) dir=build flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DAPM_SANITIZE=OFF" ;;
    sanitize) dir=build-asan flags="-DCMAKE_BUILD_TYPE=Debug -DAPM_SANITIZE=ON" ;;
    *) echo "tests/run.sh: unknown build '$b' (normal or sanitize)" >&2; exit 1 ;;
    esac
    echo "== $b build ($dir)"
    # shellcheck disable=SC2086
    cmake -S . -B "$dir" $flags >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== $b tests"
    (cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure --timeout 600 -j "$jobs")
done

echo "== formatting"
if command -v clang-format >/dev/null 2>&1; then
    files=$(git ls-files '*.c' '*.h' 2>/dev/null || true)
    if [ -n "$files" ]; then
        # shellcheck disable=SC2086
        clang-format --dry-run --Werror $files
    fi
fi
echo "all tests passed"
