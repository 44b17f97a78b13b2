"""GET /metrics scraped by a real Prometheus (Debian's prometheus package) on loopback.

A Python service leaks 2 MiB every 0.5 s under the real agent and collector (memory limit
1 GiB, so that its forecast has a limit to run to). `promtool check metrics` accepts the
collector's /metrics as it is; a Prometheus of our own (its own port, its own TSDB in the
test's directory) scrapes it every second; then Prometheus's HTTP API (/api/v1/query) gives
back the leaking service's rss gauge, its verdict and its time to exhaustion with the band,
and they are plausible: the rss that of a process that has kept tens of MiB, the time to
exhaustion about what is left of the limit over the rate the leak runs at; the agent's own
health counters come back as it reported them, and the collector's as its registry keeps them.
Bounded: the
whole test takes well under 90 s.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, free_port, wait_for  # noqa: E402

PY = "/usr/bin/python3"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
LIMIT = 1024 * 1024 * 1024
LEAKER = r"""
import time
kept = []
for i in range(400):
    kept.append(bytearray(2 * 1024 * 1024))
    time.sleep(0.5)
while True:
    time.sleep(1)
"""


def ensure_prometheus() -> bool:
    """Installs the Debian package when it is missing and we may (as root)."""
    if os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       check=False)
    return os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL)


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not ensure_prometheus():
            raise unittest.SkipTest("prometheus is not installed (deploy/install-deps.sh)")
        cls.started = time.monotonic()
        cls.c = Cluster()
        try:
            script = os.path.join(cls.c.dir, "leaker.py")
            with open(script, "w") as f:
                f.write(LEAKER)
            conf = os.path.join(cls.c.dir, "collector.conf")
            with open(conf, "w") as f:
                # Judged at once, without the start-up doubt: this test is about the way out.
                f.write("[analysis]\nstartup = 0\n")
            cls.c.start_collector("--memory-limit", str(LIMIT), "--config", conf)
            cls.c.start_agent(interval="0.5s")
            cls.leaker = cls.c.spawn("leaker", [PY, script])
            cls.prom_port = free_port()
            prom_conf = os.path.join(cls.c.dir, "prometheus.yml")
            with open(prom_conf, "w") as f:
                f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n  - job_name: apm\n    metrics_path: /metrics\n"
                        f"    static_configs:\n      - targets: ['127.0.0.1:{cls.c.http_port}']\n")
            cls.prom = cls.c.spawn("prometheus", [
                PROMETHEUS, f"--config.file={prom_conf}",
                f"--storage.tsdb.path={os.path.join(cls.c.dir, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{cls.prom_port}",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"])
            wait_for("Prometheus ready", cls.prom_ready, timeout=30, every=0.2)
        except BaseException:
            cls.c.dump_logs()
            cls.c.close()
            cls.c.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()
        cls.c.cleanup()
        sys.stderr.write(f"test_prometheus took {time.monotonic() - cls.started:.0f}s\n")

    def run(self, result=None):  # noqa: ANN001 - unittest's signature
        r = super().run(result)
        if result is not None and (result.failures or result.errors):
            self.c.dump_logs()
        return r

    @classmethod
    def prom_ready(cls) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{cls.prom_port}/-/ready",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = (f"http://127.0.0.1:{self.prom_port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.loads(r.read())
        self.assertEqual(doc["status"], "success", doc)
        return doc["data"]["result"]

    def one(self, expr: str) -> float:
        """The value of expr's single series, or 0.0 while Prometheus has none."""
        rows = self.query(expr)
        return float(rows[0]["value"][1]) if len(rows) == 1 else 0.0

    def scrape(self) -> tuple[str, str]:
        with urllib.request.urlopen(self.c.url + "/metrics", timeout=5) as r:
            return r.headers["Content-Type"], r.read().decode()

    def test_prometheus_scrapes_the_leaking_service(self) -> None:
        pid = str(self.leaker.p.pid)
        sel = f'name="leaker.py",pid="{pid}"'

        # A forecast first, straight from the collector, so promtool sees every family.
        def forecast_exposed() -> bool:
            return any(line.startswith("apm_time_to_exhaustion_seconds{") and f'pid="{pid}"' in line
                       for line in self.scrape()[1].splitlines())

        wait_for("a forecast in /metrics", forecast_exposed, timeout=60, every=1)
        ctype, text = self.scrape()
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(check.stdout + check.stderr, "")

        # Then back through Prometheus.
        ttl = wait_for("the time to exhaustion in Prometheus",
                       lambda: self.one(f"apm_time_to_exhaustion_seconds{{{sel}}}"),
                       timeout=20, every=0.5)
        rss = self.one(f"apm_process_rss_bytes{{{sel}}}")
        rows = self.query(f"apm_process_rss_bytes{{{sel}}}")
        self.assertEqual(len(rows), 1, rows)
        labels = rows[0]["metric"]
        self.assertEqual(labels["host"], "it-host")
        self.assertTrue(labels["process"].startswith(f"it-host:{pid}:"), labels)
        self.assertEqual(labels["job"], "apm")
        # It has kept some of its 2 MiB blocks (an idle interpreter holds about 10 MiB), and is
        # far from the limit.
        self.assertGreater(rss, 20 * 1024 * 1024)
        self.assertLess(rss, LIMIT)
        rate = self.one(f"apm_growth_rate_bytes_per_second{{{sel}}}")
        # 4 MiB/s of blocks, with Python's own overhead a little more.
        self.assertGreater(rate, 2.5 * 1024 * 1024)
        self.assertLess(rate, 8 * 1024 * 1024)
        # What is left of the limit over the rate, within the forecast's uncertainty.
        expect = (LIMIT - rss) / rate
        self.assertGreater(ttl, expect * 0.5, (ttl, expect))
        self.assertLess(ttl, expect * 2.0, (ttl, expect))
        lo = self.one(f"apm_time_to_exhaustion_lower_seconds{{{sel}}}")
        hi_rows = self.query(f"apm_time_to_exhaustion_upper_seconds{{{sel}}}")
        self.assertEqual(len(hi_rows), 1)
        hi = float(hi_rows[0]["value"][1])  # "+Inf" reads as inf
        self.assertLessEqual(lo, ttl)
        self.assertGreaterEqual(hi, ttl)
        self.assertEqual(self.one(f"apm_memory_limit_bytes{{{sel}}}"), LIMIT)
        info = self.query(f"apm_verdict_info{{{sel}}}")
        self.assertEqual(len(info), 1, info)
        self.assertIn(info[0]["metric"]["class"], ("leak", "growing"))
        self.assertEqual(len(self.query(f"apm_alert_firing{{{sel}}}")), 1)
        # The collector's health: the target is up, commits are timed in a histogram.
        self.assertEqual(self.one('up{job="apm"}'), 1.0)
        self.assertGreater(self.one("apm_writer_commit_seconds_count"), 0)
        self.assertGreater(self.one('apm_writer_commit_seconds_bucket{le="+Inf"}'), 0)
        self.assertGreater(self.one("apm_ingest_connections_active"), 0)
        self.assertGreater(self.one("apm_store_map_size_bytes"), 0)
        # The agent's own counters, as it reported them.
        self.assertGreater(self.one('apm_agent_scans_total{host="it-host"}'), 0)
        self.assertGreater(self.one('apm_agent_watched{host="it-host"}'), 0)
        sys.stderr.write(f"rss {rss / 2**20:.0f} MiB, rate {rate / 2**20:.2f} MiB/s, "
                         f"time to exhaustion {ttl:.0f}s [{lo:.0f}, {hi}] "
                         f"(limit left / rate {expect:.0f}s)\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
