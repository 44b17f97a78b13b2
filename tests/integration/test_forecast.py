"""Live analysis end to end: agent -> collector -> analyzer -> verdicts -> apm-cli forecast.

A Python process leaks steadily (4 MiB/s) and another holds a flat footprint, sampled every
0.5 s. Within a bounded time `apm-cli --json forecast --process leaker.py` shows class `leak`
with a forecast against the configured limit, the flat process is not called a leak, the
per-series analysis endpoint answers, and the collector has asked the agent for a tracemalloc
window for the leaking process.
"""
from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, wait_for  # noqa: E402

PY = "/usr/bin/python3"
INTERVAL_S = 0.5
LIMIT = 400 * 1024 * 1024

LEAKER = r"""
import time
kept = []
for i in range(150):
    kept.append(bytearray(2 * 1024 * 1024))
    time.sleep(0.5)
print("done", flush=True)
while True:
    time.sleep(1)
"""

FLAT = r"""
import time
base = bytearray(60 * 1024 * 1024)
spare = None
i = 0
while True:
    spare = bytearray(1024 * 1024) if i % 2 == 0 else None
    i += 1
    time.sleep(0.5)
"""


class ForecastTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.c = Cluster()
        try:
            scripts = {}
            for name, text in (("leaker.py", LEAKER), ("flat.py", FLAT)):
                scripts[name] = os.path.join(cls.c.dir, name)
                with open(scripts[name], "w") as f:
                    f.write(text)
            # The leaker grows from its first sample: this test is about the chain from agent
            # to forecast, so its growth is judged at once, without the start-up doubt
            # (test_fast_leak.py keeps the defaults).
            conf = os.path.join(cls.c.dir, "collector.conf")
            with open(conf, "w") as f:
                f.write("[analysis]\nstartup = 0\n")
            cls.c.start_collector("--memory-limit", str(LIMIT), "--config", conf)
            cls.c.start_agent(interval=f"{INTERVAL_S}s")
            cls.flat = cls.c.spawn("flat", [PY, scripts["flat.py"]])
            cls.leaker = cls.c.spawn("leaker", [PY, scripts["leaker.py"]])
        except BaseException:
            cls.c.dump_logs()
            cls.c.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()
        cls.c.cleanup()

    def run(self, result=None):  # noqa: ANN001 - unittest's signature
        r = super().run(result)
        if result is not None and (result.failures or result.errors):
            self.c.dump_logs()
        return r

    def row(self, name: str, pid: int) -> dict:
        doc = self.c.cli_json("forecast", "--process", name)
        rows = [r for r in doc["forecasts"] if r["pid"] == pid]
        return rows[0] if rows else {}

    def test_leak_is_forecast_and_flat_is_not(self) -> None:
        started = time.monotonic()

        def leak_with_forecast() -> dict:
            r = self.row("leaker.py", self.leaker.p.pid)
            return r if r.get("class") == "leak" and r.get("exhaustion_t") is not None else {}

        r = wait_for("a leak verdict with a forecast", leak_with_forecast, timeout=240, every=1)
        elapsed = time.monotonic() - started
        self.assertEqual(r["metric"], "rss")
        self.assertEqual(r["host"], "it-host")
        self.assertEqual(r["limit"], LIMIT)
        self.assertEqual(r["limit_source"], "configured")
        self.assertGreater(r["confidence"], 0.5)
        # 2 MiB every 0.5 s; Python's own overhead makes it a little more.
        self.assertGreater(r["rate"], 2.5 * 1024 * 1024)
        self.assertLess(r["rate"], 6 * 1024 * 1024)
        self.assertLessEqual(r["exhaustion_lo_t"], r["exhaustion_t"])
        self.assertGreater(r["time_to_exhaustion"], 0)
        self.assertIsInstance(r["suspects"], list)
        sys.stderr.write(f"leak verdict after {elapsed:.0f}s: {r}\n")

        # The flat process has been judged too, and not as a leak.
        flat = wait_for("a verdict on the flat process",
                        lambda: self.row("flat.py", self.flat.p.pid), timeout=90, every=1)
        self.assertNotEqual(flat["class"], "leak")
        self.assertIsNone(flat["exhaustion_t"])

        # One series' analysis, and the table.
        one = self.c.get(f"/api/v1/series/{r['series']}/analysis")
        self.assertEqual(one["process"], r["process"])
        table = self.c.cli("forecast", "--process", "leaker.py").stdout
        self.assertIn("leaker.py", table)
        self.assertIn("leak (", table)
        self.assertIn("configured", table)

        # Suspicion asked the agent for a tracemalloc window for the leaker, once: as soon as
        # it grew, or when it looked like a leak. (Other processes on this machine are
        # watched too, so only the leaker's lines count.)
        prefix = f"collector: {r['process']} "
        asked = ("looks like a leak", "grows with no verdict yet")

        def requests() -> list[str]:
            return [ln for ln in self.c.collector.output().splitlines()
                    if prefix in ln and any(prefix + a in ln for a in asked)]

        wait_for("a trace request", requests, timeout=10)
        lines = requests()
        self.assertEqual(len(lines), 1, lines)
        self.assertGreaterEqual(self.c.get("/api/v1/status")["analysis"]["trace_requests"], 1)

if __name__ == "__main__":
    unittest.main()
