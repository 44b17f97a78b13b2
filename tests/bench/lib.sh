# Sourced by the benchmarks that start a collector (tests/bench/*.sh): their
# work directory and ports, starting and stopping the collector, and the
# cleanup on exit, in one place. POSIX sh; bench_load needs $build, the
# caller's build tree.
# shellcheck shell=sh disable=SC2154
#
#   . "$src/tests/bench/lib.sh"
#   bench_init PREFIX
#       $work: a new directory /tmp/PREFIX.XXXXXX; $port: ingest's port, from
#       this shell's pid; $http: the HTTP port, $port + 1 (a script may pick
#       both again before it starts a collector); $data: the collector's data
#       directory, $work/data (likewise). $cpid (the collector) and
#       $lpid (a load running in the background) are empty. On exit, INT or
#       TERM, bench_cleanup runs: a script with more to stop defines its own
#       cleanup that calls it last, and sets its own trap.
#   bench_collector BIN [FLAG...]
#       starts collector BIN in the background on $data, ingest on
#       $port, HTTP on $http, the token in $work/token, then the FLAGs; its
#       pid in $cpid. Redirections of the call go to the collector.
#   bench_collector_for_load BIN [FLAG...]
#       bench_collector with warnings only in the log and room for the
#       thousands of connections of tests/collector_load (2000 agents, as
#       many unauthenticated at once, from one address).
#   bench_wait_token
#       waits up to 5 s for the collector to write its token ($work/token).
#   bench_load [FLAG...]
#       runs $build/tests/collector_load against that collector (its
#       address and token), with the FLAGs.
#   bench_stop_collector
#       SIGTERM to $cpid, waits for it to exit; $cpid empty.
#   bench_stop PID SIGNAL
#       SIGNAL to PID if it runs, waits for it; never fails.

bench_init() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    port=$((20000 + $$ % 20000))
    http=$((port + 1))
    data=$work/data
    cpid=""
    lpid=""
    # The signal bench_cleanup stops a collector still running with.
    bench_cleanup_signal=${bench_cleanup_signal:-TERM}
    trap bench_cleanup EXIT INT TERM
}

# bench_stop PID SIGNAL: sends SIGNAL to PID if it still runs and waits for it;
# always 0, so that its status (137 after KILL) cannot end a script under set -e,
# nor the cleanup before it removes $work.
bench_stop() {
    kill -"$2" "$1" 2>/dev/null || return 0
    wait "$1" 2>/dev/null || true
}

# Stops the load and the collector still running, removes $work.
bench_cleanup() {
    [ -z "$lpid" ] || bench_stop "$lpid" TERM
    [ -z "$cpid" ] || bench_stop "$cpid" "$bench_cleanup_signal"
    rm -rf "$work"
}

bench_collector() {
    bench_bin=$1
    shift
    "$bench_bin" --foreground --data-dir "$data" --listen "127.0.0.1:$port" \
        --http "127.0.0.1:$http" --token-file "$work/token" "$@" &
    cpid=$!
}

bench_collector_for_load() {
    bench_bin=$1
    shift
    bench_collector "$bench_bin" --log-level warn --max-connections 2000 \
        --max-unauthenticated 2000 --max-unauthenticated-per-address 2000 "$@"
}

bench_wait_token() {
    bench_i=0
    while [ ! -s "$work/token" ] && [ $bench_i -lt 50 ]; do
        sleep 0.1
        bench_i=$((bench_i + 1))
    done
}

bench_load() {
    "$build/tests/collector_load" --collector "127.0.0.1:$port" --token-file "$work/token" "$@"
}

bench_stop_collector() {
    bench_stop "$cpid" TERM
    cpid=""
}
