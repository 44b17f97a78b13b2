#!/bin/sh
# The fault matrix's full-disk scenario (a 32 MiB tmpfs filled while the LMDB map
# grows from 64 KiB; needs root), N times in a row against BUILD's programs; stops at
# the first failure. The test command runs it once (integration_test_fault_matrix).
#
#   tests/bench/fault_disk_full.sh [BUILD_DIR [N]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
n=${2:-5}
i=0
while [ $i -lt "$n" ]; do
    i=$((i + 1))
    out=$(APM_BUILD_DIR=$build /usr/bin/python3 "$src/tests/integration/test_fault_matrix.py" \
        FaultMatrixTest.test_full_disk_and_map_growth 2>&1) && rc=0 || rc=$?
    echo "run $i: $(printf '%s\n' "$out" | grep -E '^full disk, |full disk, map' | sed 's/.*\(full disk, map\)/\1/' | head -1)"
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | tail -20
        echo "FAILED at run $i of $n"
        exit 1
    fi
done
echo "OK: $n runs in a row"
