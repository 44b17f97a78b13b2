#!/bin/sh
# How many agents and series one collector holds on this machine: simulated
# agents (tests/bench/collector_load.c) with PROCS processes of 5 series each,
# one batch per INTERVAL seconds, reconnecting like apm-agent, spread over 16
# loopback source addresses. For each agent count in STEPS a fresh collector
# (Release, its defaults except max-connections 20000) takes SECONDS of load
# after WARMUP seconds (default 10: connecting and defining every series); the script prints one table row per step and stops
# after the first step that misses the bound: acked below 99 % of offered, or
# send-to-ack p99 above BOUND_MS (default: 1000 ms, the 1 s sampling interval;
# a batch acked later than the next one is due means a queue that grows).
# Besides the tool's figures (acked/s, send-to-ack, the collector's CPU, RSS and
# disk writes from /proc), each row has the collector's own commit latency:
# apm_writer_commit_seconds of /metrics over the measured time, as commits/s,
# the mean, and p50/p99 as the upper bound of their histogram bucket.
# Figures only, no pass/fail.
#
#   tests/bench/scaling.sh [PROCS [INTERVAL [SECONDS [STEPS...]]]]
#   e.g. tests/bench/scaling.sh 20 1 20 1000 2000 3000 4000 5000 6000
#   BOUND_MS=500, WARMUP=5, APM_COLLECTOR_ARGS="--max-analysed-series 200000" change the run.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${APM_BENCH_BUILD_DIR:-$src/build-bench}
procs=${1:-20}
interval=${2:-1}
secs=${3:-20}
[ $# -gt 3 ] && shift 3 || set -- 1000 2000 3000 4000 5000 6000
bound=${BOUND_MS:-1000}
warmup=${WARMUP:-10}

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAPM_SANITIZE=OFF >/dev/null
cmake --build "$build" -j2 --target apm-collector collector_load >/dev/null

. "$src/tests/bench/lib.sh"
bench_init apm-bench

rate=$(awk -v i="$interval" 'BEGIN { printf "%.6f", 1 / i }')
echo "== $procs processes x 5 series per agent, one batch every ${interval}s, ${secs}s measured," \
    "${warmup}s warm-up," \
    "bound: acked >= 99 % of offered and p99 <= ${bound} ms ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
printf '| agents | series | offered/s | acked/s | p50 ms | p99 ms | commits/s | commit mean ms | commit p50 ms | commit p99 ms | collector CPU | RSS MiB | disk writes MB/s | tool CPU | all connected after | refused | evicted handshakes | analysis refused_series |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for agents in "$@"; do
    rm -rf "$data"
    # shellcheck disable=SC2086
    bench_collector "$build/server/apm-collector" --log-level error --max-connections 20000 \
        ${APM_COLLECTOR_ARGS:-} 2>"$work/collector.log"
    bench_wait_token
    sleep 0.5
    "$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" \
        --agents "$agents" --procs "$procs" --rate "$rate" --duration "$secs" --reconnect --warmup "$warmup" \
        --sources 16 --collector-pid "$cpid" >"$work/load.out" 2>"$work/load.err" &
    lpid=$!
    # The commit histogram of /metrics when the measured time starts and once it is over.
    sleep "$warmup"
    curl -s "http://127.0.0.1:$((port + 1))/metrics" >"$work/metrics0" || true
    wait "$lpid" || true
    lpid=""
    curl -s "http://127.0.0.1:$((port + 1))/metrics" >"$work/metrics1" || true
    curl -s "http://127.0.0.1:$((port + 1))/api/v1/status" >"$work/status.json" || true
    bench_stop_collector
    row=$(python3 - "$work/load.out" "$work/status.json" "$agents" "$procs" "$bound" \
        "$work/metrics0" "$work/metrics1" <<'EOF'
import json, re, sys
out = open(sys.argv[1]).read()
try:
    st = json.load(open(sys.argv[2]))
except ValueError:
    st = {}
agents, procs, bound = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def num(pat, default=float("nan")):
    m = re.search(pat, out)
    return float(m.group(1)) if m else default
offered = num(r"offered: ([\d.]+)")
acked = num(r"acked: ([\d.]+)")
p50 = num(r"p50 ([\d.]+) ms")
p99 = num(r"p99 ([\d.]+) ms")
ccpu = num(r"collector: CPU (\d+) %")
rss = num(r"peak ([\d.]+) MiB")
tcpu = num(r"load tool CPU: (\d+) %")
conn = num(r"welcomed ([\d.]+) s after")
ing = st.get("ingest", {})
refused = ", ".join(f"{k} {ing[k]}" for k in ("refused_over_cap", "refused_processes",
                     "refused_series", "refused_sites", "overloaded", "store_errors", "auth_failures",
                     "handshake_timeouts", "idle_timeouts") if ing.get(k)) or "0"
disk = num(r"disk writes ([\d.]+) MB/s")
evicted = ing.get("evicted_unauthenticated", 0)
unanalysed = st.get("analysis", {}).get("refused_series", 0)
def hist(path):
    b = {}
    try:
        for line in open(path):
            m = re.match(r'apm_writer_commit_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
            if m:
                b[float(m.group(1))] = int(m.group(2))
            m = re.match(r"apm_writer_commit_seconds_(sum|count) ([\d.e+-]+)", line)
            if m:
                b[m.group(1)] = float(m.group(2))
    except OSError:
        pass
    return b
h0, h1 = hist(sys.argv[6]), hist(sys.argv[7])
n = h1.get("count", 0) - h0.get("count", 0)
def q(p):
    les = sorted(k for k in h1 if isinstance(k, float))
    for le in les:
        if h1[le] - h0.get(le, 0) >= p * n:
            return f"{le * 1000:g}"
    return "?"
commits = f"{n / float(out_secs):,.0f}" if n and (out_secs := num(r"([\d.]+) s measured")) else "?"
cmean = f"{(h1['sum'] - h0.get('sum', 0)) / n * 1000:.1f}" if n else "?"
ok = acked >= 0.99 * offered and p99 <= bound
print(f"| {agents:,} | {agents * procs * 5:,} | {offered:,.0f} | {acked:,.0f} | {p50:.0f} | {p99:.0f} "
      f"| {commits} | {cmean} | ≤ {q(0.5) if n else '?'} | ≤ {q(0.99) if n else '?'} "
      f"| {ccpu:.0f} % | {rss:.0f} | {disk:.1f} | {tcpu:.0f} % | {conn:.1f} s | {refused} | {evicted} "
      f"| {unanalysed} |{'' if ok else ' over the bound'}")
EOF
)
    echo "$row"
    case "$row" in *"over the bound"*) break ;; esac
done
