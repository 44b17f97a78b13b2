#!/bin/sh
# What the collector logs while its disk is full. Mounts a small tmpfs (needs
# root), runs apm-collector on it with one agent sending every 0.1 s, fills
# the disk with dd for 10 s, frees it, and counts the log lines of those 10 s:
# all of them, the store's, and ingest's lines about agents closed for a failed
# commit. Figures only, no pass/fail.
#
#   tests/bench/disk_full_log.sh [COLLECTOR [AGENT]]   (default: build/...)
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
collector=${1:-$src/build/server/apm-collector}
agent=${2:-$src/build/agent/apm-agent}
mnt=$(mktemp -d /tmp/apm-full.XXXXXX)
. "$src/tests/bench/lib.sh"
bench_init apm-full-work
data=$mnt/data
mount -t tmpfs -o size=8m tmpfs "$mnt" || exit 1
bench_collector "$collector" >"$work/collector.log" 2>&1
sleep 0.5
"$agent" --collector "127.0.0.1:$port" --token-file "$work/token" --interval 0.1s --host full \
    >"$work/agent.log" 2>&1 &
lpid=$!
sleep 1
start=$(wc -l <"$work/collector.log")
dd if=/dev/zero of="$mnt/fill" bs=64k 2>/dev/null
sleep 10
tail -n +"$((start + 1))" "$work/collector.log" >"$work/full.log"
rm "$mnt/fill"
sleep 3
kill "$lpid" 2>/dev/null
lpid=""
bench_stop_collector
echo "log lines in 10 s of full disk: $(wc -l <"$work/full.log") (store: $(grep -c 'store:' "$work/full.log"), agents closed for a failed commit: $(grep -c 'store could not commit' "$work/full.log"), agent reconnects: $(grep -c 'connected from' "$work/full.log"))"
umount "$mnt"
rmdir "$mnt"
rm -rf "$work"
