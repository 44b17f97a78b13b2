#!/bin/sh
# Measures what sampling costs the agent: CPU microseconds per process per
# sample and the RSS of a program that only runs the sampler at 1 Hz over the
# real /proc (see agent_sampling.c for what is printed).
#
# usage: tests/bench/agent_sampling.sh [EXTRA_PROCS [TICKS [INTERVAL_MS [SMAPS_BUDGET_US]]]]
#   EXTRA_PROCS  idle processes started for the run, so the host looks busier (default 300)
#   TICKS        samples taken (default 30); INTERVAL_MS between them (default 1000)
#   SMAPS_BUDGET_US  per process per tick (default: the sampler's own, 4)
# The helper is built with -O2 from the sources, without sanitizers, into
# ${BUILD_DIR:-/tmp}/apm-agent-sampling.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
extra=${1:-300}
ticks=${2:-30}
interval=${3:-1000}
budget=${4:-0}
bin=${BUILD_DIR:-/tmp}/apm-agent-sampling

${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -I"$src" -o "$bin" \
    "$src/tests/bench/agent_sampling.c" "$src/agent/sampler.c" "$src/agent/procfs.c" \
    "$src/agent/cgroup.c" "$src/agent/watch.c" "$src/common/analysis/model.c" \
    "$src/common/base/error.c" "$src/common/base/hashmap.c" "$src/common/base/timeutil.c" -lm

pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
i=0
while [ "$i" -lt "$extra" ]; do
    sleep 3600 &
    pids="$pids $!"
    i=$((i + 1))
done

echo "host: $(uname -r), $(nproc) CPUs, $(ls -d /proc/[0-9]* | wc -l) processes"
echo "run: $ticks samples every $interval ms, $extra extra idle processes"
"$bin" "$ticks" "$interval" "$budget"
