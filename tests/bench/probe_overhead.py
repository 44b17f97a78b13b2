#!/usr/bin/env python3
"""What the probe costs the application.

Part 1 runs an allocation-heavy workload in fresh processes: bare, under tracemalloc
alone, under the probe in "always" mode, and with the probe idle in "on-demand" mode, and
prints the probe's cost over tracemalloc's own and the idle probe's cost over bare.
Part 2 builds heaps of 10k, 100k and 1M live traces and times one probe snapshot step
(take + filter + group + diff), its encoding and sending, against the standard library's
take_snapshot() + compare_to() on the same heap.
Part 3 is sampled mode, side by side in one run: bare, tracemalloc at 1 frame, and the
probe in sampled mode (a diff every second) at 512 KiB (the default), 128 KiB and 32 KiB,
and with its hooks in place but sampling off ("hooks-only", 16 GiB between samples),
on the allocation-heavy workload and on a small WSGI app (wsgiref) under load from a
client process, and with pass-through hooks that only call the allocator they replaced
("floor", no probe); then the resident memory the sampler adds at 1M live objects.
Part 4 counts instructions (callgrind, valgrind installed) of bare, floor, hooks-only and
sampled-512k on both workloads, the sampler started without the probe thread.

    PYTHONPATH=agent/python:BUILD/python python3 tests/bench/probe_overhead.py \
        [--rounds N] [--quick] [--part 1|2|3|4|all]

(BUILD/python holds the compiled apm_probe._sampler; without it part 3 says so and stops.)

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


# "hooks-only": the sampler's hooks in place at 16 GiB between samples (none in a run), the
# probe thread reporting as usual: what the allocator hooks cost by themselves.
SAMPLED = {"hooks-only": 1 << 34, "sampled-512k": 512 << 10, "sampled-128k": 128 << 10,
           "sampled-32k": 32 << 10}
# "floor": pass-through hooks on the three domains (_sampler.passthrough()), no probe: what
# any PyMem_SetAllocator hook costs on this interpreter before it does any work of its own.
SAMPLED_CONFIGS = ("bare", "floor", "tracemalloc") + tuple(SAMPLED)
# Part 4 counts instructions under callgrind with the sampler started directly (no probe
# thread, fixed seed), so that a count is the hooks' and the interpreter's alone.
COUNTED_CONFIGS = ("bare", "floor", "hooks-only", "sampled-512k")
COUNTED_SIZES = {"alloc": (10, 40), "wsgi": (100, 400)}

WSGI_CLIENT = """
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
for i in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/users?page=%d&size=50" % (i % 20))
    body = c.getresponse().read()
    assert len(body) > 1000
    c.close()
print(time.perf_counter() - t0)
"""


def wsgi_app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    """A small JSON API: parse the query, build a page of records, keep a little session
    state (bounded), render."""
    from urllib.parse import parse_qs

    query = parse_qs(environ.get("QUERY_STRING", ""))
    page, size = int(query.get("page", ["0"])[0]), int(query.get("size", ["20"])[0])
    rows = [{"id": page * size + i, "name": "user-%d" % (page * size + i),
             "email": "u%d@example.org" % i, "roles": ["reader", "writer"][: 1 + i % 2],
             "score": i * 1.5} for i in range(size)]
    SESSIONS[page] = rows[0]["name"]
    body = json.dumps({"page": page, "rows": rows}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


SESSIONS: Dict[int, str] = {}


def serve_wsgi(requests: int) -> float:
    """Serves `requests` requests of a client process; returns the client's wall time."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, wsgi_app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    out = subprocess.run([sys.executable, "-c", WSGI_CLIENT, str(port), str(requests)],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=""))
    server.shutdown()
    return float(out.stdout.strip())


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(config: str, rounds: int, sock: str, work: str = "alloc", direct: bool = False) -> None:
    import apm_probe

    if config == "floor":
        from apm_probe import _sampler

        _sampler.passthrough()
    elif direct and config in SAMPLED:
        from apm_probe import _sampler

        _sampler.start(sample_bytes=SAMPLED[config], seed=1)
    elif config in SAMPLED:
        if not apm_probe.start(socket=sock, mode="sampled", sample_bytes=SAMPLED[config],
                               interval=1.0) or apm_probe.stats().get("sampler") is None:
            raise SystemExit(f"the sampler did not start: {apm_probe.stats().get('sampler_error')}")
        if work == "heap":
            base = rss_kib()
            keep = [(i, str(i)) for i in range(1_000_000)]  # 1M live objects (+ their ints, strs)
            grown = rss_kib() - base
            st = apm_probe.stats()["sampler"]
            print(json.dumps({"rss_growth_kib": grown, "live_samples": st["live"],
                              "table_bytes": st["table_bytes"], "objects": len(keep)}))
            return
    elif work == "heap":
        base = rss_kib()
        keep = [(i, str(i)) for i in range(1_000_000)]
        print(json.dumps({"rss_growth_kib": rss_kib() - base, "live_samples": 0,
                          "table_bytes": 0, "objects": len(keep)}))
        return
    if work == "wsgi":
        if config == "tracemalloc":
            tracemalloc.start(1)
        serve_wsgi(50)  # warm up
        wall0, cpu0 = time.perf_counter(), time.process_time()
        wall = serve_wsgi(rounds)
        cpu = time.process_time() - cpu0  # the server's CPU (its threads, the probe's too)
        stats = apm_probe.stats()
        print(json.dumps({"wall": wall, "cpu": cpu, "snapshots": stats.get("snapshots", 0),
                          "probe_cpu": stats.get("cpu_s") or 0.0, "server_wall": time.perf_counter() - wall0}))
        return

    if config == "tracemalloc":
        tracemalloc.start(1)
    elif config in SAMPLED or config == "floor":
        pass
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


def run_children(configs: Any, work: str, rounds: int, repeats: int, sock: str) -> Dict[str, List[Dict[str, float]]]:
    results: Dict[str, List[Dict[str, float]]] = {c: [] for c in configs}
    for rep in range(repeats):
        order = configs if rep % 2 == 0 else tuple(reversed(configs))
        for config in order:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--work", work,
                                  "--rounds", str(rounds), "--socket", sock],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{config} {work}: {out.stderr.strip() or out.stdout.strip()}")
            results[config].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def part3(rounds: int, requests: int, repeats: int, sock: str, configs: Any = SAMPLED_CONFIGS) -> None:
    try:
        from apm_probe import _sampler  # noqa: F401
    except ImportError as exc:
        print(f"Part 3: apm_probe._sampler does not load ({exc}); put BUILD/python on PYTHONPATH")
        return
    for work, n, what in (("alloc", rounds, f"allocation-heavy workload, {rounds} rounds"),
                          ("wsgi", requests, f"WSGI app (wsgiref), {requests} requests from a client process")):
        results = run_children(configs, work, n, repeats, sock)
        print(f"Part 3: {what}, {repeats} fresh processes per configuration, sampled probe interval 1 s")
        # CPU time of the measured process (its probe thread included) suffers less than
        # wall time from other jobs on a shared machine; both are shown.
        print(f"  {'configuration':<14} {'median wall s':>14} {'min wall s':>11} {'wall over bare':>15} "
              f"{'(min)':>8} {'median cpu s':>13} {'min cpu s':>10} {'cpu over bare':>14} {'(min)':>8} "
              f"{'probe thread cpu s':>19}")
        for c in configs:
            row = [f"  {c:<14}"]
            for key, width in (("wall", 14), ("cpu", 13)):
                med = statistics.median([r[key] for r in results[c]])
                low = min(r[key] for r in results[c])
                bmed = statistics.median([r[key] for r in results["bare"]])
                blow = min(r[key] for r in results["bare"])
                row.append(f"{med:>{width}.4f} {low:>{10 if key == 'cpu' else 11}.4f} "
                           f"{(med / bmed - 1) * 100:>{14 if key == 'cpu' else 14}.2f}% "
                           f"{(low / blow - 1) * 100:>+7.2f}%")
            # The probe thread's share of the CPU column (its diffs at 60x the default cadence).
            row.append(f"{statistics.median([r['probe_cpu'] for r in results[c]]):>19.4f}")
            print(" ".join(row))
    heap_configs = tuple(c for c in SAMPLED if c != "hooks-only" and c in configs)
    if not heap_configs:
        return
    heap = run_children(("bare",) + heap_configs, "heap", 0, max(1, repeats // 2), sock)
    print("Part 3: resident memory at 1M live objects (1M tuples of an int and a str), "
          "VmRSS growth while building them")
    print(f"  {'configuration':<14} {'RSS growth MiB':>15} {'over bare MiB':>14} {'live samples':>13} "
          f"{'table reserved MiB':>19}")
    bare = statistics.median([r["rss_growth_kib"] for r in heap["bare"]])
    for c in heap:
        g = statistics.median([r["rss_growth_kib"] for r in heap[c]])
        print(f"  {c:<14} {g / 1024:>15.1f} {(g - bare) / 1024:>14.2f} "
              f"{statistics.median([r['live_samples'] for r in heap[c]]):>13.0f} "
              f"{statistics.median([r['table_bytes'] for r in heap[c]]) / 2**20:>19.1f}")


def callgrind_count(config: str, work: str, n: int, sock: str) -> int:
    """Instructions of one child under callgrind (the WSGI client is not traced)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        run = subprocess.run(["setarch", "-R", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                              sys.executable, __file__, "--child", config, "--work", work,
                              "--rounds", str(n), "--socket", sock, "--direct"],
                             capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
        if run.returncode != 0:
            raise SystemExit(f"callgrind {config} {work}: {run.stderr.strip()[-2000:]}")
        with open(out) as f:
            for line in f:
                if line.startswith(("totals:", "summary:")):
                    return int(line.split()[1])
    raise SystemExit(f"callgrind {config} {work}: no totals line")


def part4(sock: str) -> None:
    """Instruction counts: each configuration at two sizes, the difference taken so that
    start-up and warm-up cancel."""
    try:
        from apm_probe import _sampler  # noqa: F401
    except ImportError as exc:
        print(f"Part 4: apm_probe._sampler does not load ({exc}); put BUILD/python on PYTHONPATH")
        return
    for work, (small, large) in COUNTED_SIZES.items():
        unit = "rounds" if work == "alloc" else "requests (the server process)"
        print(f"Part 4: instructions (callgrind) of {large} minus {small} {unit}, {work} workload")
        print(f"  {'configuration':<14} {'instructions':>14} {'over bare':>10} {'over floor':>11}")
        counts = {c: callgrind_count(c, work, large, sock) - callgrind_count(c, work, small, sock)
                  for c in COUNTED_CONFIGS}
        for c in COUNTED_CONFIGS:
            print(f"  {c:<14} {counts[c]:>14,} {(counts[c] / counts['bare'] - 1) * 100:>+9.2f}% "
                  f"{(counts[c] / counts['floor'] - 1) * 100:>+10.2f}%")


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
    parser.add_argument("--work", choices=("alloc", "wsgi", "heap"), default="alloc")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no 1M heap")
    parser.add_argument("--part", choices=("1", "2", "3", "4", "all"), default="all")
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--configs", help="part 3: a comma-separated subset of " + ",".join(SAMPLED_CONFIGS))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds, args.socket, args.work, args.direct)
        return
    print(f"Python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs")
    if args.part in ("1", "all"):
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "agent.sock")
        sink(path)
        part1(args.rounds if not args.quick else 150, 3 if args.quick else args.repeats, path)
    if args.part in ("2", "all"):
        part2([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    if args.part in ("3", "all"):
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "agent.sock")
        sink(path)
        configs = tuple(args.configs.split(",")) if args.configs else SAMPLED_CONFIGS
        if "bare" not in configs or not set(configs) <= set(SAMPLED_CONFIGS):
            parser.error(f"--configs: bare and a subset of {','.join(SAMPLED_CONFIGS)}")
        part3(args.rounds if not args.quick else 150, args.requests if not args.quick else 500,
              3 if args.quick else args.repeats, path, configs)
    if args.part in ("4", "all"):
        tmp = tempfile.mkdtemp()
        path = os.path.join(tmp, "agent.sock")
        sink(path)
        part4(path)


if __name__ == "__main__":
    main()
