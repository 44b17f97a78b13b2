#!/bin/sh
# The fault matrix's full-disk scenario (a 32 MiB tmpfs filled while the LMDB map
# grows from 1 MiB; needs root), N times against BUILD's programs. Not in the
# test command while it finds acked samples lost under ThreadSanitizer's timing.
#
#   tests/bench/fault_disk_full.sh [BUILD_DIR [N]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
n=${2:-5}
i=0
while [ $i -lt "$n" ]; do
    APM_FAULT_DISK=1 APM_BUILD_DIR=$build /usr/bin/python3 "$src/tests/integration/test_fault_matrix.py" \
        FaultMatrixTest.test_full_disk_and_map_growth 2>&1 | grep -E "^full disk|OK|FAIL" || true
    i=$((i + 1))
done
