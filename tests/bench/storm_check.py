#!/usr/bin/env python3
"""Checks tests/bench/collector_load.c's ground truth (--truth FILE) against the store.

    storm_check.py --api http://127.0.0.1:7412 TRUTH

The truth holds "P SERIES NAME", then "A AGENT SEQ T_MS" per acked batch and "U AGENT SEQ T_MS"
per batch still unacked at exit. Every sample's value is a function of (agent, process, metric,
seq), the same as sample_value() in collector_load.c, so the checker rebuilds each batch's samples
and reads every series of the simulated hosts back through the HTTP API:
- an acked sample must be stored exactly once, with its value (else: lost, duplicated);
- an unacked one at most once;
- nothing else may be stored for those hosts (phantom).
Prints the counts; exits 1 if an acked sample is lost or anything is duplicated or phantom.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import sys
import time
import urllib.parse

METRICS = {1: "rss", 2: "pss", 3: "uss", 4: "swap", 5: "cgroup_usage"}


def sample_value(agent: int, proc: int, metric: int, seq: int) -> int:
    return 100000000 + seq * 4096 + ((agent * 31 + proc * 7 + metric) % 64) * 4096


def batch_samples(series: int, name: str, agent: int, seq: int, t_ms: int):
    procs = max(series // 5, 1)
    made = 0
    for p in range(procs):
        for m in range(1, 6):
            if made >= series:
                return
            made += 1
            yield (f"{name}-host-{agent}", 1000 + p, METRICS[m], t_ms,
                   sample_value(agent, p, m, seq))


class Api:
    def __init__(self, base: str) -> None:
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def get(self, path: str) -> dict:
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"storm_check: GET {path}: {r.status} {body[:200]!r}")
        return json.loads(body)

    def pages(self, path: str, key: str):
        cursor = None
        while True:
            sep = "&" if "?" in path else "?"
            doc = self.get(path + (f"{sep}cursor={urllib.parse.quote(cursor)}" if cursor else ""))
            yield from doc[key]
            if not doc.get("truncated"):
                return
            cursor = str(doc["next"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("truth")
    a = ap.parse_args()

    series, name = 0, ""
    acked: list[tuple[int, int, int]] = []
    unacked: list[tuple[int, int, int]] = []
    with open(a.truth) as f:
        for line in f:
            p = line.split()
            if p[0] == "P":
                series, name = int(p[1]), p[2]
            elif p[0] in "AU":
                (acked if p[0] == "A" else unacked).append((int(p[1]), int(p[2]), int(p[3])))

    started = time.time()
    api = Api(a.api)
    have: collections.Counter = collections.Counter()
    nseries = 0
    prefix = f"{name}-host-"
    for s in api.pages("/api/v1/series?limit=10000", "series"):
        if not (s.get("host") or "").startswith(prefix):
            continue
        nseries += 1
        for t, v in api.pages(f"/api/v1/series/{s['id']}/samples?limit=100000", "samples"):
            have[(s["host"], s["pid"], s["metric"], round(t * 1000), int(v))] += 1

    expected = set()
    lost = dup = unacked_stored = 0
    examples = []
    for kind, batches in (("acked", acked), ("unacked", unacked)):
        for agent, seq, t_ms in batches:
            for key in batch_samples(series, name, agent, seq, t_ms):
                expected.add(key)
                n = have.get(key, 0)
                if kind == "acked" and n == 0:
                    lost += 1
                    examples.append(("lost",) + key)
                if kind == "unacked" and n:
                    unacked_stored += 1
                if n > 1:
                    dup += 1
                    examples.append(("duplicated", n) + key)
    phantom = sum(n for key, n in have.items() if key not in expected)
    examples += [("phantom",) + k for k in have if k not in expected][:5]
    n_acked = len(acked) * series
    print(f"ground truth: {len(acked)} acked batches ({n_acked} samples), {len(unacked)} unacked "
          f"at exit ({len(unacked) * series} samples)")
    print(f"store: {nseries} series, {sum(have.values())} samples of the simulated hosts, "
          f"read in {time.time() - started:.1f} s")
    print(f"acked lost {lost}, duplicated {dup}, unacked stored {unacked_stored}, "
          f"phantom {phantom}" + (f"; e.g. {examples[:5]}" if examples else ""))
    return 1 if lost or dup or phantom else 0


if __name__ == "__main__":
    sys.exit(main())
