#!/usr/bin/env python3
"""Collector RSS per connection, and whether it comes back after the connections close.

Starts apm-collector on loopback with a temporary data directory, then runs three rounds of
N connections each and reads VmRSS from /proc after every round (2 s after the last close):
  held:       N agents connect and stay (a valid Hello each, answered), then all close;
  sequential: N agents connect, say Hello, get the answer and close, one after another;
  strangers:  N idle unauthenticated sockets at once, then all close (since issue 12 the
              collector keeps at most 64 of them: the rest are closed as newer ones come).
Prints the RSS before and after each round and the growth per connection that stayed.

    tests/bench/conn_rss.py [--collector build/server/apm-collector] [-n 1000]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import free_port, hello_frame, rss_kib  # noqa: E402


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def hello(s: socket.socket, token: bytes, i: int) -> None:
    s.sendall(hello_frame(token, b"rss-agent-%d" % i, b"rss-host-%d" % i))
    hdr = s.recv(4)  # the HelloAck's header, at least: the collector answered
    if len(hdr) == 0:
        raise RuntimeError("the collector closed an agent connection at its Hello")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collector", default="build/server/apm-collector")
    ap.add_argument("-n", type=int, default=1000)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="apm-conn-rss-")
    port, http = free_port(), free_port()
    log = open(os.path.join(work, "collector.log"), "w")
    p = subprocess.Popen([args.collector, "--data-dir", f"{work}/data", "--listen",
                          f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}", "--token-file",
                          f"{work}/token", "--log-level", "error", "--max-connections",
                          str(args.n + 100)], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if os.path.exists(f"{work}/token"):
                try:
                    connect(port).close()
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        token = open(f"{work}/token", "rb").read().strip()
        # Warm-up: one agent, so that first-use allocations are not counted as growth.
        s = connect(port)
        hello(s, token, 0)
        s.close()
        time.sleep(1)

        def round_(name: str, run) -> None:
            before = rss_kib(p.pid)
            peak = run()
            time.sleep(2)
            after = rss_kib(p.pid)
            print(f"{name:10s} n={args.n}: RSS {before} KiB -> peak {peak} KiB -> {after} KiB "
                  f"after close; kept {(after - before) / args.n:.1f} KiB per connection, "
                  f"peak {(peak - before) / args.n:.1f} KiB per connection")

        def held() -> int:
            socks = []
            for i in range(args.n):  # as agents do: the Hello right after the connect
                socks.append(connect(port))
                hello(socks[-1], token, i + 1)
            peak = rss_kib(p.pid)
            for s in socks:
                s.close()
            return peak

        def sequential() -> int:
            peak = 0
            for i in range(args.n):
                s = connect(port)
                hello(s, token, i + 1)
                s.close()
                if i % 100 == 0:
                    peak = max(peak, rss_kib(p.pid))
            return peak

        def strangers() -> int:
            socks = [connect(port) for _ in range(args.n)]
            time.sleep(0.5)
            peak = rss_kib(p.pid)
            for s in socks:
                s.close()
            return peak

        round_("held", held)
        round_("sequential", sequential)
        round_("strangers", strangers)
        round_("held again", held)
    finally:
        p.terminate()
        p.wait(15)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
