#!/bin/sh
# The demo: installs what is missing, builds, then starts the collector (its
# LMDB store in a temporary data directory), an agent sampling every process
# on this host each second, and a leaking Python service run under apm-run
# (the probe inside, on demand), all on loopback; asks for a tracemalloc
# trace of the service and shows what apm-cli sees: series, then the
# allocation sites that grow (apm-cli top). Stops everything cleanly on
# Ctrl-C or after --duration SECONDS.
set -eu
cd "$(dirname "$0")/.."

duration=0
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=${2:?--duration needs a number of seconds}; shift 2 ;;
    --duration=*) duration=${1#--duration=}; shift ;;
    -h|--help) echo "usage: deploy/demo.sh [--duration SECONDS]"; exit 0 ;;
    *) echo "deploy/demo.sh: unknown argument '$1'" >&2; exit 1 ;;
    esac
done

./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
echo "demo: built apm-collector, apm-agent and apm-cli in build/"

# Debian's interpreter, on purpose: the probe must work with it.
PY=/usr/bin/python3
work=$(mktemp -d /tmp/apm-demo.XXXXXX)
ingest=127.0.0.1:17411
http=127.0.0.1:17412
export APM_SERVER="http://$http"
cli=build/cli/apm-cli
pids=""

stop() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    echo "demo: logs and data were in $work (removed)"
    rm -rf "$work"
    exit 0
}
trap stop INT TERM EXIT

build/server/apm-collector --foreground --data-dir "$work/data" --listen "$ingest" \
    --http "$http" --token-file "$work/token" 2>"$work/collector.log" &
pids="$pids $!"
i=0
until $cli status >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: collector did not start:"; cat "$work/collector.log"; exit 1; }
    sleep 0.1
done
echo "demo: collector up (ingest $ingest, HTTP $http, store $work/data)"

build/agent/apm-agent --collector "$ingest" --interval 1s --token-file "$work/token" \
    --host demo-host --probe-socket "$work/probe.sock" 2>"$work/agent.log" &
pids="$pids $!"
echo "demo: agent sampling every process each second"

APM_PROBE_SOCKET="$work/probe.sock" APM_PROBE_MODE=on-demand APM_PROBE_INTERVAL=5 \
    $PY agent/python/apm-run $PY deploy/demo/leaky_service.py >"$work/leaky.log" 2>&1 &
leaky=$!
pids="$pids $leaky"
echo "demo: leaky_service.py started under apm-run (pid $leaky; it leaks ~0.8 MB/s into a global dict)"
traced=no

start=$(date +%s)
while :; do
    sleep 5
    echo
    echo "===== $(date +%T) apm-cli hosts"
    $cli hosts || true
    echo "===== apm-cli series --process leaky_service.py"
    $cli series --process leaky_service.py || true
    if [ "$traced" = no ] && $cli trace --pid "$leaky" --for 10m 2>/dev/null; then
        traced=yes
    fi
    echo "===== apm-cli top --pid $leaky"
    $cli top --pid "$leaky" --window 10m || true
    echo "===== apm-cli series --metric rss (first rows)"
    $cli series --metric rss 2>/dev/null | head -n 12 || true
    now=$(date +%s)
    if [ "$duration" -gt 0 ] && [ $((now - start)) -ge "$duration" ]; then
        break
    fi
done
stop
