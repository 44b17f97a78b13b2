"""A fast leak with no cgroup limit is called within two minutes, a cache that fills is not.

Two Python services run under apm-run with the probe at its defaults (on-demand tracing,
60 s interval), watched by an agent sampling every second, judged by the collector's
built-in rules (no rule configured, no memory limit configured, no cgroup limit: the limit
is the host's memory). One leaks 10 MB/s in a straight line; the other fills a cache at
the same rate for 40 s and then keeps it. The leaker must get a firing alert that names its
leaking line within 2 minutes of its start, and `apm-cli --json forecast` must show it
`growing` (with its rate) or `leak` before that, never `stable` with no rate once it has
grown for a minute. The cache must get no leak or exhaustion alert while it fills nor in
the two minutes after it stops (three times as long as it filled). The leaker stops by
itself after 170 s, so the test never takes more than about 1.7 GB of the host.
"""
from __future__ import annotations

import os
import sys
import textwrap
import time
import unittest
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(__file__))
from harness import SOURCE, Cluster, wait_for  # noqa: E402

PY = "/usr/bin/python3"
APM_RUN = os.path.join(SOURCE, "agent", "python", "apm-run")
RATE = 10_000_000  # bytes per second
LEAKER = textwrap.dedent(
    """
    import time
    keep = []
    print("leaker up", flush=True)
    start = time.monotonic()
    tick = start
    while time.monotonic() - start < 170:
        keep.append(bytearray(1_000_000))   # LEAK
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
    print("leaker done", flush=True)
    time.sleep(3600)
    """
)
LEAK_LINE = LEAKER.splitlines().index("    keep.append(bytearray(1_000_000))   # LEAK") + 1
CACHE = textwrap.dedent(
    """
    import time
    cache = {}
    print("cache up", flush=True)
    start = time.monotonic()
    tick = start
    i = 0
    while time.monotonic() - start < 40:
        cache[i] = bytearray(1_000_000)   # FILL
        i += 1
        tick += 0.1
        time.sleep(max(0.0, tick - time.monotonic()))
    print("cache full", flush=True)
    while True:
        # A warm cache is read, not grown.
        sum(len(cache[k]) for k in range(0, i, 50))
        time.sleep(0.1)
    """
)
FILL_S = 40
AFTER_FILL_S = 120
ALERT_WITHIN_S = 120


class FastLeakTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.leaker = os.path.join(self.c.dir, "fast_leaker.py")
        self.cache = os.path.join(self.c.dir, "cache_fill.py")
        for path, text in ((self.leaker, LEAKER), (self.cache, CACHE)):
            with open(path, "w") as f:
                f.write(text)

    def tearDown(self) -> None:
        self.c.close()
        self.c.cleanup()

    def row(self, rows: list[dict], pid: int) -> Optional[dict]:
        for r in rows:
            if r["pid"] == pid and r["metric"] == "rss":
                return r
        return None

    def alerts_of(self, pid: int, state: str = "all") -> list[dict]:
        return [a for a in self.c.cli_json("alerts", "--state", state)["alerts"]
                if a["pid"] == pid]

    def test_fast_leak_alerts_within_two_minutes_and_a_filled_cache_does_not(self) -> None:
        c = self.c
        try:
            c.start_collector()
            sock = os.path.join(c.dir, "probe.sock")
            c.start_agent("--probe-socket", sock, interval="1s")
            # The probe at its defaults: only where to find the agent is said.
            env = dict(os.environ, APM_PROBE_SOCKET=sock)
            for k in ("APM_PROBE_MODE", "APM_PROBE_INTERVAL"):
                env.pop(k, None)
            leaker = c.spawn("leaker", [PY, APM_RUN, PY, self.leaker], env=env)
            cache = c.spawn("cache", [PY, APM_RUN, PY, self.cache], env=env)
            started = time.monotonic()
            lpid, cpid = leaker.p.pid, cache.p.pid
            where = f"{self.leaker}:{LEAK_LINE}"
            seen: list[tuple[float, str, float]] = []  # (age, class, rate) of the leaker
            fired_at: Optional[float] = None
            named_at: Optional[float] = None
            first: Optional[dict] = None

            def look() -> Any:
                nonlocal fired_at, named_at, first
                age = time.monotonic() - started
                r = self.row(c.cli_json("forecast")["forecasts"], lpid)
                if r is not None and fired_at is None:
                    seen.append((age, r["class"], r["rate"]))
                for a in self.alerts_of(lpid, "firing"):
                    if fired_at is None:
                        fired_at, first = age, a
                    if where in a["summary"] and named_at is None:
                        named_at = age
                        print(f"summary at {age:.0f}s: {a['summary']}")
                return named_at is not None

            try:
                wait_for("a firing alert naming the leaking line", look,
                         timeout=ALERT_WITHIN_S + 30, every=2)
            finally:
                print("leaker as forecast shows it:",
                      ", ".join(f"{t:.0f}s {cls} {rate / 1e6:.1f}MB/s" for t, cls, rate in seen))
            print(f"leaker: first firing alert ({first['rule']}) after {fired_at:.0f}s, "
                  f"naming {where} after {named_at:.0f}s")
            self.assertLessEqual(named_at, ALERT_WITHIN_S, "the alert names the line too late")
            self.assertIn(first["rule"], ("leak", "exhaustion"))
            self.assertIn("host limit", first["summary"] + first["forecast"]["text"])

            # Before the alert the forecast showed the growth: growing with its rate, or leak;
            # once it had grown for a minute, never stable with no rate.
            growing = [s for s in seen if s[1] in ("growing", "leak") and s[2] > 0]
            self.assertTrue(growing, f"never shown growing or leak before the alert: {seen}")
            late = [s for s in seen if s[0] >= 60 and not (s[1] in ("growing", "leak") and s[2] > 0)]
            self.assertTrue(all(0.5 * RATE < s[2] < 2 * RATE for s in growing), growing)
            leaker.stop()

            # The cache: no leak or exhaustion alert, pending or firing, until well after it
            # stopped filling.
            until = started + FILL_S + AFTER_FILL_S
            while time.monotonic() < until:
                bad = [a for a in self.alerts_of(cpid) if a["rule"] in ("leak", "exhaustion")]
                self.assertEqual(bad, [], "the filled cache was alerted on")
                time.sleep(2)
            r = self.row(c.cli_json("forecast")["forecasts"], cpid)
            self.assertIsNotNone(r, "the cache was analysed")
            print(f"cache after {time.monotonic() - started:.0f}s: {r['class']} "
                  f"({r['confidence']:.2f}), rate {r['rate'] / 1e6:.2f} MB/s")
            self.assertTrue(cache.alive())
            self.assertEqual(late, [], "the leaker shown without its growth after a minute")
        except BaseException:
            c.dump_logs()
            raise


if __name__ == "__main__":
    unittest.main()
