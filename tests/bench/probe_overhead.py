#!/usr/bin/env python3
"""What the probe costs the application.

Part 1 runs an allocation-heavy workload in fresh processes: bare, under tracemalloc
alone, under the probe in "always" mode, and with the probe idle in "on-demand" mode, and
prints the probe's cost over tracemalloc's own and the idle probe's cost over bare.
Part 2 builds heaps of 10k, 100k and 1M live traces and times one probe snapshot step
(take + filter + group + diff), its encoding and sending, against the standard library's
take_snapshot() + compare_to() on the same heap.

    PYTHONPATH=agent/python python3 tests/bench/probe_overhead.py [--rounds N] [--quick]

Figures come from here, never from unit tests. Run on a quiet machine: the idle overhead
is below the noise of a busy one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from typing import Any, Dict, List

CONFIGS = ("bare", "tracemalloc", "probe-always", "probe-idle")


def workload(rounds: int) -> None:
    """Allocation-heavy: short-lived dicts, tuples, strings and lists, plus a slowly
    growing cache, in the proportions of a request handler."""
    cache: Dict[int, Any] = {}
    for r in range(rounds):
        batch = []
        for i in range(2000):
            item = {"id": i, "name": "user-%d" % i, "tags": [i, i + 1, i + 2], "pair": (i, r)}
            batch.append(item)
        text = ",".join(d["name"] for d in batch)
        cache[r] = text[:64]
        del batch, text


def sink(path: str) -> threading.Thread:
    """A stand-in agent that reads and discards everything."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [None for _ in iter(lambda: c.recv(1 << 16), b"")],
                             daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def child(config: str, rounds: int, sock: str) -> None:
    import apm_probe

    if config == "tracemalloc":
        tracemalloc.start(1)
    elif config == "probe-always":
        apm_probe.start(socket=sock, mode="always", interval=1.0)
    elif config == "probe-idle":
        # Sixty times the default cadence, so the idle wake-ups show if they cost anything.
        apm_probe.start(socket=sock, mode="on-demand", interval=0.1)
    workload(5)  # warm up
    wall0, cpu0 = time.perf_counter(), time.process_time()
    workload(rounds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stats = apm_probe.stats()
    print(json.dumps({"wall": wall, "cpu": cpu, "snapshots": stats.get("snapshots", 0),
                      "probe_cpu": stats.get("cpu_s") or 0.0}))


def part1(rounds: int, repeats: int, sock: str) -> None:
    results: Dict[str, List[Dict[str, float]]] = {c: [] for c in CONFIGS}
    env = dict(os.environ)
    for rep in range(repeats):
        # Interleave configurations so drift in machine load hits all of them alike.
        order = CONFIGS if rep % 2 == 0 else tuple(reversed(CONFIGS))
        for config in order:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--rounds", str(rounds),
                                  "--socket", sock], env=env, capture_output=True, text=True, check=True)
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"Part 1: workload of {rounds} rounds, {repeats} fresh processes per configuration "
          f"(probe interval 1 s always, 0.1 s idle)")
    print(f"  {'configuration':<14} {'median wall s':>14} {'min wall s':>11} {'median cpu s':>13} "
          f"{'snapshots':>10} {'probe thread cpu s':>19}")
    med: Dict[str, float] = {}
    mins: Dict[str, float] = {}
    for config in CONFIGS:
        walls = [r["wall"] for r in results[config]]
        cpus = [r["cpu"] for r in results[config]]
        med[config] = statistics.median(walls)
        mins[config] = min(walls)
        snaps = statistics.median([r["snapshots"] for r in results[config]])
        probe_cpu = statistics.median([r["probe_cpu"] for r in results[config]])
        print(f"  {config:<14} {med[config]:>14.4f} {mins[config]:>11.4f} {statistics.median(cpus):>13.4f} "
              f"{snaps:>10.0f} {probe_cpu:>19.4f}")

    def pct(a: float, b: float) -> str:
        return f"{(a / b - 1) * 100:+.2f}%"

    print(f"  tracemalloc over bare:                {pct(med['tracemalloc'], med['bare'])} (median), "
          f"{pct(mins['tracemalloc'], mins['bare'])} (min)")
    print(f"  probe (always) over tracemalloc:      {pct(med['probe-always'], med['tracemalloc'])} (median), "
          f"{pct(mins['probe-always'], mins['tracemalloc'])} (min)")
    print(f"  probe idle (on-demand) over bare:     {pct(med['probe-idle'], med['bare'])} (median), "
          f"{pct(mins['probe-idle'], mins['bare'])} (min)")
    # Wall-clock ratios drown in a busy machine's noise; the probe thread's own CPU time
    # does not. Per run: probe thread CPU over the workload's wall time.
    for config in ("probe-always", "probe-idle"):
        shares = [r["probe_cpu"] / r["wall"] for r in results[config]]
        print(f"  {config} thread CPU / workload wall: {statistics.median(shares) * 100:.3f}% (median), "
              f"{max(shares) * 100:.3f}% (max)")
    paired = [i["wall"] / b["wall"] - 1 for i, b in zip(results["probe-idle"], results["bare"])]
    print(f"  idle over bare, median of adjacent-run ratios: {statistics.median(paired) * 100:+.2f}%")


def build_heap(n: int) -> List[Any]:
    """n live traces spread over 200 allocation sites (one line each)."""
    sites = 200
    src = "\n".join(f"def f{i}(n):\n    return [object() for _ in range(n)]" for i in range(sites))
    namespace: Dict[str, Any] = {}
    exec(compile(src, "/bench/sites.py", "exec"), namespace)
    keep: List[Any] = []
    per = max(1, n // sites)
    for i in range(sites):
        keep.append(namespace[f"f{i}"](per))
    keep.append(namespace)
    return keep


def grow(keep: List[Any], fraction: float) -> None:
    namespace = keep[-1]
    extra = int(sum(len(k) for k in keep[:-1]) * fraction)
    keep.insert(0, namespace["f7"](extra))


def part2(sizes: List[int]) -> None:
    from apm_probe import snapshot, wire
    from apm_probe.transport import Transport

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "s.sock")
    sink(path)
    print("Part 2: one snapshot step at scale (frames=1, key lineno, top 25), seconds of wall time")
    print(f"  {'live traces':>11} {'take_snapshot':>13} {'stdlib compare_to':>17} {'stdlib total':>12} "
          f"{'probe step':>10} {'encode+send':>11} {'probe total':>11} {'tm memory MiB':>13} {'B/trace':>8}")
    for n in sizes:
        gc.collect()
        tracemalloc.start(1)
        keep = build_heap(n)
        traces = len(tracemalloc.take_snapshot().traces)
        differ = snapshot.Differ("lineno", 25)
        differ.step()
        old = tracemalloc.take_snapshot()
        grow(keep, 0.01)
        # The standard library: take a snapshot, compare_to the previous one.
        t0 = time.perf_counter()
        new = tracemalloc.take_snapshot()
        t1 = time.perf_counter()
        new.compare_to(old, "lineno")[:25]
        t2 = time.perf_counter()
        del new, old
        gc.collect()
        # The probe: one step against its kept groups, then line and socket.
        transport = Transport(path, 4 << 20, 1.0, lambda: b'{"type":"hello"}\n')
        transport.pump(0.0)
        t3 = time.perf_counter()
        result = differ.step()
        t4 = time.perf_counter()
        top = [wire.site_entry("lineno", snapshot.frames_of(k, "lineno"), s, sd, c, cd)
               for k, s, sd, c, cd in result.top]
        transport.enqueue(wire.diff_line({"t": time.time(), "seq": 1}, top))
        while transport.buffered:
            transport.pump(0.0)
        t5 = time.perf_counter()
        memory = tracemalloc.get_tracemalloc_memory()
        transport.close()
        tracemalloc.stop()
        del keep, result
        print(f"  {traces:>11} {t1 - t0:>13.4f} {t2 - t1:>17.4f} {t2 - t0:>12.4f} {t4 - t3:>10.4f} "
              f"{t5 - t4:>11.4f} {t5 - t3:>11.4f} {memory / 2**20:>13.1f} {memory / max(traces, 1):>8.0f}")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--socket")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 1M heap")
    parser.add_argument("--part", choices=("1", "2", "all"), default="all")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds, args.socket)
        return
    print(f"Python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs")
    if args.part in ("1", "all"):
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "agent.sock")
        sink(path)
        part1(args.rounds if not args.quick else 150, 3 if args.quick else args.repeats, path)
    if args.part in ("2", "all"):
        part2([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])


if __name__ == "__main__":
    main()
