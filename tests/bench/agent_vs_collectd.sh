#!/bin/sh
# The real apm-agent (sampling every process each second, shipping to a real
# collector on loopback) side by side with collectd's processes plugin
# (Debian collectd-core, every process matched, 1 s interval, csv output) on
# the same host in the same run. Prints CPU microseconds per process per
# sample and resident memory of each. Installs collectd-core if missing.
#
#   tests/bench/agent_vs_collectd.sh [SECONDS [EXTRA_IDLE_PROCESSES]]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
secs=${1:-30}
extra=${2:-300}

if ! command -v collectd >/dev/null 2>&1 && [ ! -x /usr/sbin/collectd ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends collectd-core >/dev/null
fi
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector apm-agent >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-bench-agent
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_cleanup
}
trap cleanup EXIT INT TERM

i=0
while [ "$i" -lt "$extra" ]; do
    sleep 3600 &
    pids="$pids $!"
    i=$((i + 1))
done

bench_collector "$build/server/apm-collector" --log-level warn
pids="$pids $cpid" # stopped with the others, before the wait for them all
sleep 1
"$build/agent/apm-agent" --collector "127.0.0.1:$port" --interval 1s --token-file "$work/token" \
    --log-level warn &
agent=$!
pids="$pids $agent"

mkdir -p "$work/csv"
cat >"$work/collectd.conf" <<CONF
Interval 1
BaseDir "$work"
PIDFile "$work/collectd.pid"
PluginDir "/usr/lib/collectd"
LoadPlugin processes
LoadPlugin csv
<Plugin csv>
  DataDir "$work/csv"
</Plugin>
<Plugin processes>
  CollectFileDescriptor false
  CollectContextSwitch false
  CollectMemoryMaps false
  ProcessMatch "all" ".*"
</Plugin>
CONF
/usr/sbin/collectd -f -C "$work/collectd.conf" >"$work/collectd.log" 2>&1 &
collectd=$!
pids="$pids $collectd"

tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

sleep 5 # both past their first scans, descriptors opened
a0=$(cpu_ticks "$agent"); c0=$(cpu_ticks "$collectd")
sleep "$secs"
a1=$(cpu_ticks "$agent"); c1=$(cpu_ticks "$collectd")
nproc_now=$(ls -d /proc/[0-9]* | wc -l)

echo "host: $(uname -r), $(nproc) CPUs, $nproc_now processes, $secs s at 1 sample/s"
awk -v a="$((a1 - a0))" -v c="$((c1 - c0))" -v t="$tck" -v n="$nproc_now" -v s="$secs" \
    -v ar="$(rss_kib "$agent")" -v cr="$(rss_kib "$collectd")" 'BEGIN {
    printf "%-34s %10s %14s %10s\n", "", "CPU %", "us/proc/sample", "RSS MiB";
    printf "%-34s %10.2f %14.1f %10.2f\n", "apm-agent (sample + encode + ship)", 100*a/t/s, 1e6*a/t/(n*s), ar/1024;
    printf "%-34s %10.2f %14.1f %10.2f\n", "collectd processes plugin (+csv)", 100*c/t/s, 1e6*c/t/(n*s), cr/1024;
}'
echo "(CPU from /proc/PID/stat utime+stime at $tck ticks/s: +-$((1000000 / tck)) us over the run)"
