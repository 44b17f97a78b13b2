#!/usr/bin/env python3
"""Collector memory per series: a raw agent defines N processes, one rss series each.

Starts a real collector (limits raised so that nothing is refused), reads its RSS
(/proc/PID/status VmRSS), has a raw agent (tests/integration/wire.py) define N processes
with one rss series each in batches of 1,000, each process sampled --samples times, waits
for every ack, reads RSS again, then lets process-grace pass, makes one more batch go
through (it triggers the sweeps) and reads RSS a last time. Prints the figures as one JSON
line.

    APM_BUILD_DIR=build python3 tests/bench/cardinality_rss.py [--processes 20000]
        [--samples 3] [--grace 5s] [--metric rss|pss]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Cluster, wait_for  # noqa: E402
from wire import RawAgent, batch, process_def, samples, series_def  # noqa: E402

PER_BATCH = 1000


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def analysed(c: Cluster) -> int:
    return c.get("/api/v1/status")["analysis"]["series"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--grace", default="5s")
    ap.add_argument("--metric", choices=["rss", "pss"], default="rss",
                    help="rss is analysed; pss is only stored")
    o = ap.parse_args()
    grace_s = float(o.grace.rstrip("s"))
    metric = 1 if o.metric == "rss" else 2
    c = Cluster()
    try:
        c.start_collector("--process-grace", o.grace,
                          "--max-processes-per-agent", str(o.processes * 2),
                          "--max-series-per-agent", str(o.processes * 2))
        with open(c.token_file, "rb") as f:
            token = f.read().strip()
        pid = c.collector.p.pid
        time.sleep(0.5)
        before = rss_kib(pid)
        a = RawAgent(c.ingest_port, token, b"bench-agent", b"bench-host")
        now = int(time.time() * 1000) - o.samples * 1000
        seq = 0
        t0 = time.monotonic()
        for start in range(0, o.processes, PER_BATCH):
            n = min(PER_BATCH, o.processes - start)
            strings = [f"worker-{start + i}.py".encode() for i in range(n)]
            procs = [process_def(start + i + 1, 100000 + start + i, now - 60000, start + i + 1)
                     for i in range(n)]
            sers = [series_def(start + i + 1, start + i + 1, metric) for i in range(n)]
            smp = [samples(start + i + 1, [0] + [1000] * (o.samples - 1),
                           [(1 << 20) + i * 4096] + [4096] * (o.samples - 1)) for i in range(n)]
            seq += 1
            a.send(batch(seq, now, strings=strings, processes=procs, series=sers,
                         sample_msgs=smp))
        a.wait_ack(seq)
        define_s = time.monotonic() - t0
        if o.metric == "rss":
            wait_for("analysis caught up", lambda: analysed(c) >= o.processes,
                     60 + o.processes * o.samples / 10000)
        time.sleep(1.0)
        loaded = rss_kib(pid)
        peak_analysed = analysed(c)
        # Let process-grace pass, then one batch of one new process moves the clocks on.
        time.sleep(grace_s + 1.0)
        later = int(time.time() * 1000)
        seq += 1
        k = o.processes + 1
        a.send(batch(seq, later, strings=[b"late.py"],
                     processes=[process_def(k, 99, later - 1000, k)],
                     series=[series_def(k, k, 1)], sample_msgs=[samples(k, [0], [1 << 20])]))
        a.wait_ack(seq)
        wait_for("analysis forgot the dead", lambda: analysed(c) <= 10, 30)
        time.sleep(1.0)
        after = rss_kib(pid)
        a.close()
        st = c.get("/api/v1/status")
        print(json.dumps({
            "processes": o.processes, "series": o.processes, "metric": o.metric,
            "samples_each": o.samples, "store_forgotten": st["store"]["forgotten"],
            "define_seconds": round(define_s, 2),
            "rss_kib_before": before, "rss_kib_loaded": loaded, "rss_kib_after_grace": after,
            "bytes_per_series_loaded": round((loaded - before) * 1024 / o.processes),
            "bytes_per_series_after_grace": round((after - before) * 1024 / o.processes),
            "analysed_peak": peak_analysed, "analysed_after_grace": st["analysis"]["series"],
            "analysis_evicted": st["analysis"]["evicted"],
        }))
        return 0
    finally:
        c.close()
        c.cleanup()


if __name__ == "__main__":
    sys.exit(main())
