#!/bin/sh
# The fault matrix, long version: the scenarios of tests/integration/test_fault_matrix.py
# with more kill -9 / cut cycles each (default 30; the test command runs 4). Each scenario
# prints its checker line: produced, acked, acked lost, duplicated, unacked, phantom.
#
#   tests/bench/fault_matrix_long.sh [CYCLES [BUILD_DIR]]
set -eu
cycles=${1:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$src/build}
cmake --build "$build" -j2 --target apm-collector fault_agent >/dev/null
APM_FAULT_CYCLES=$cycles APM_BUILD_DIR=$build APM_SOURCE_DIR=$src \
    python3 "$src/tests/integration/test_fault_matrix.py" 2>&1 |
    grep -E '^(test_|[a-z].*: produced|Ran|OK|FAILED)' | sed 's/^test_.* \.\.\. //'
