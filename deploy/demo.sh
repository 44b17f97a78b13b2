#!/bin/sh
# The demo: installs what is missing, builds, then starts on loopback the
# collector (its LMDB store in a temporary data directory), an agent sampling
# every process on this host twice a second, and a leaking Python service run
# under apm-run (the probe inside, in its default sampled mode: the build's
# apm_probe._sampler samples allocations all along, no tracemalloc) in a memory
# cgroup with a 768 MiB limit. It shows the chain as it happens: the host and
# its processes filling the store, the analysis calling the leak and asking
# the service's probe to look closer by itself (it samples more often for a
# while), and finally the alert printed by apm-cli: its sentence, forecast and
# suspect line, an estimate with its error ("+13 GiB/h ± 4 %").
# Ends there (about two minutes), on Ctrl-C, or after --duration N.
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
echo "demo: built apm-collector, apm-agent, apm-cli and the probe's sampler in build/"

# Debian's interpreter, on purpose: the probe must work with it.
PY=/usr/bin/python3
work=$(mktemp -d /tmp/apm-demo.XXXXXX)
ingest=127.0.0.1:17411
http=127.0.0.1:17412
export APM_SERVER="http://$http"
cli=build/cli/apm-cli
pids=""
leaky=""
cgroup=""
limit=$((768 * 1024 * 1024))

stop() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    [ -n "$leaky" ] && kill -TERM "$leaky" 2>/dev/null || true
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    [ -n "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
    echo "demo: logs and data were in $work (removed)"
    rm -rf "$work"
    exit 0
}
trap stop INT TERM EXIT

# A memory cgroup for the service, as a container runtime or systemd would
# give it: cgroup v2 (memory.max) or v1 (memory.limit_in_bytes). Without one
# (not root, no controller) the collector is told the limit instead.
make_cgroup() {
    name=apm-demo-$$
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers &&
        mkdir "/sys/fs/cgroup/$name" 2>/dev/null; then
        echo "$limit" >"/sys/fs/cgroup/$name/memory.max" && cgroup=/sys/fs/cgroup/$name && return 0
    fi
    if [ -d /sys/fs/cgroup/memory ] && mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null; then
        echo "$limit" >"/sys/fs/cgroup/memory/$name/memory.limit_in_bytes" &&
            cgroup=/sys/fs/cgroup/memory/$name && return 0
    fi
    return 1
}

{
    echo "[collector]"
    # Ask a suspected process's probe to look closer for 10 minutes: a sampling probe
    # samples 16 times as often (tracemalloc only where the sampler cannot load).
    echo "trace-on-suspicion = 10m"
    if ! make_cgroup; then
        echo "memory-limit = $limit"
    fi
    echo "[alerts]"
    echo "evaluate = 0.5s"
} >"$work/collector.conf"
if [ -n "$cgroup" ]; then
    echo "demo: memory cgroup $cgroup limited to 768 MiB for the service"
else
    echo "demo: no memory cgroup available: the collector is given a 768 MiB limit instead"
fi

build/server/apm-collector --foreground --config "$work/collector.conf" --data-dir "$work/data" \
    --listen "$ingest" --http "$http" --token-file "$work/token" 2>"$work/collector.log" &
pids="$pids $!"
i=0
until $cli status >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "demo: collector did not start:"; cat "$work/collector.log"; exit 1; }
    sleep 0.1
done
echo "demo: collector up (ingest $ingest, HTTP $http, store $work/data)"
echo "demo: the web page is at http://$http/"

build/agent/apm-agent --collector "$ingest" --interval 0.5s --token-file "$work/token" \
    --host demo-host --probe-socket "$work/probe.sock" 2>"$work/agent.log" &
pids="$pids $!"
echo "demo: agent sampling every process on this host twice a second"

# The service runs under apm-run (no code change) and joins its cgroup at once.
# build/python holds the compiled sampler (the .deb puts it beside the probe).
LEAKY_REQUESTS_PER_SECOND=1000 APM_PROBE_SOCKET="$work/probe.sock" APM_PROBE_INTERVAL=3 \
    PYTHONPATH="$PWD/build/python" \
    $PY agent/python/apm-run $PY deploy/demo/leaky_service.py >"$work/leaky.log" 2>&1 &
leaky=$!
[ -n "$cgroup" ] && echo "$leaky" >"$cgroup/cgroup.procs" 
echo "demo: leaky_service.py started under apm-run (pid $leaky, probe sampling); it leaks ~4 MiB/s (14 GiB/h)"
echo

start=$(date +%s)
shown_series=no
while :; do
    sleep 5
    now=$(date +%s)
    echo "===== $(date +%T) (+$((now - start))s)"
    if [ "$shown_series" = no ] && [ $((now - start)) -ge 10 ]; then
        echo "----- apm-cli hosts"
        $cli hosts || true
        echo "----- apm-cli series --metric rss (the largest of $($cli --json series --metric rss | grep -o '"id"' | wc -l) processes)"
        $cli series --metric rss 2>/dev/null | head -n 8 || true
        shown_series=yes
    fi
    echo "----- apm-cli forecast --pid $leaky"
    $cli forecast --pid "$leaky" || true
    echo "----- apm-cli alerts"
    $cli alerts || true
    # Done when an alert for the service (leak or exhaustion) fires with a forecast and a suspect line.
    if $cli --json alerts --state firing 2>/dev/null | $PY -c '
import json, sys
alerts = json.load(sys.stdin).get("alerts", [])
sys.exit(0 if any(a.get("pid") == int(sys.argv[1]) and (a.get("suspect") or {}).get("site")
                  and (a.get("forecast") or {}).get("t") for a in alerts) else 1)' "$leaky"; then
        echo
        echo "===== the alert (apm-cli alerts)"
        $cli alerts --state firing || true
        echo
        echo "===== the lines that grow (apm-cli top --pid $leaky)"
        $cli top --pid "$leaky" --limit 5 || true
        echo
        if $cli --json top --pid "$leaky" --limit 1 2>/dev/null | $PY -c '
import json, sys
sites = json.load(sys.stdin).get("sites", [])
sys.exit(0 if sites and sites[0].get("source") == "sampled" else 1)'; then
            echo "demo: the analysis saw the growth and the alert names the line and how sure it"
            echo "      is, from the sampler's estimates (± their standard error), with no"
            echo "      tracemalloc in the service."
        else
            echo "demo: the analysis saw the growth, asked the probe for a trace by itself, and the"
            echo "      alert names the line and how sure it is (from tracemalloc: the sampler did"
            echo "      not load here; see $work/leaky.log)."
        fi
        echo "      Point an agent at a real service: see docs/install.md."
        break
    fi
    if [ "$duration" -gt 0 ] && [ $((now - start)) -ge "$duration" ]; then
        echo "demo: --duration reached before the alert fired"
        break
    fi
    if [ $((now - start)) -ge 300 ]; then
        echo "demo: no alert after 5 minutes; see $work/*.log"
        $cli alerts --state all || true
        break
    fi
done
stop
