"""Remote-write out into a real Prometheus (Debian's `prometheus`, its remote-write receiver).

The real agent samples a Python process at 0.5 s; the collector remote-writes every
committed sample. On the way: the collector restarts (SIGTERM, then the same data
directory) and the receiver goes away for 30 s (SIGTERM, then the same TSDB directory
and port). Afterwards Prometheus must hold exactly the samples the collector stored for
the process's rss series (same timestamps, same values: nothing skipped, nothing
doubled), queried back with count_over_time and a range selector, and the series
carries the labels /metrics uses (__name__ apm_process_rss_bytes, host, name, pid,
process). The verdict gauges (apm_verdict_info with its class) arrive too.

The crash window: the collector is killed -9 at a crash point (common/base/fault.h, APM_FAULT)
after Prometheus answered 2xx to a request and before the cursor's commit, then, after a
restart, after a request's pending record was written and before it went. Prometheus must
still hold every stored sample of every series of the watched process and host, and the
counters and log must say that the request in flight went again alone, first (refused as out
of order the first time: Prometheus had it; taken the second time: it had not).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import unittest
import urllib.parse
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, Proc, free_port, wait_for  # noqa: E402

PROM = "/usr/bin/prometheus"
PY = "/usr/bin/python3"
TARGET = textwrap.dedent(
    """
    import time
    keep = []
    while True:
        keep.append(bytearray(64 * 1024))
        time.sleep(0.2)
    """
)
OUTAGE_S = 30
# Series names as common/wire/prom.c gives them, for the metrics the agent reports without a probe.
PROM_NAMES = {m: f"apm_process_{m}_bytes" for m in
              ("rss", "pss", "uss", "swap", "cgroup_usage", "cgroup_limit")}
PROM_NAMES.update({m: f"apm_host_{m}_bytes" for m in ("mem_available", "mem_total")})


def ensure_prometheus() -> bool:
    """Installs the Debian package when it is missing and we may (as root)."""
    if os.path.exists(PROM):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                       check=False)
    return os.path.exists(PROM)


class RemoteWriteTest(unittest.TestCase):
    def setUp(self) -> None:
        if not ensure_prometheus():
            self.skipTest(f"{PROM} missing (apt-get install prometheus)")
        self.c = Cluster()
        self.prom_port = free_port()
        self.prom_dir = os.path.join(self.c.dir, "tsdb")
        self.prom_cfg = os.path.join(self.c.dir, "prometheus.yml")
        with open(self.prom_cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1m\n")
        self.prom: Proc | None = None

    def tearDown(self) -> None:
        if self._outcome.result.errors or self._outcome.result.failures:  # type: ignore
            self.c.dump_logs()
            if self.prom is not None:
                sys.stderr.write(f"----- prometheus -----\n{self.prom.output()[-4000:]}\n")
        if self.prom is not None:
            self.prom.stop()
        self.c.close()
        self.c.cleanup()

    # ---- Prometheus ----

    def start_prometheus(self) -> None:
        self.prom = Proc("prometheus", [
            PROM, "--config.file", self.prom_cfg, "--storage.tsdb.path", self.prom_dir,
            "--web.listen-address", f"127.0.0.1:{self.prom_port}",
            "--web.enable-remote-write-receiver"], self.c.dir)
        wait_for("prometheus ready", lambda: self.prom_get("/-/ready", raw=True), 30)

    def prom_get(self, path: str, raw: bool = False) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}{path}",
                                        timeout=5) as r:
                body = r.read()
        except OSError:
            return None
        return True if raw else json.loads(body)

    def prom_query(self, q: str) -> list:
        r = self.prom_get("/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        self.assertIsNotNone(r, q)
        self.assertEqual(r["status"], "success", r)
        return r["data"]["result"]

    # ---- the collector ----

    def rw(self) -> dict:
        return self.c.get("/api/v1/status")["remote_write"]

    def start_collector(self, fault: str | None = None) -> Proc:
        """fault: a crash point (common/base/fault.h) the collector kills itself at; it is not
        waited for, since it may die before it serves HTTP."""
        env = dict(os.environ, APM_FAULT=fault) if fault else None
        return self.c.start_collector("--remote-write-url",
                                      f"http://127.0.0.1:{self.prom_port}/api/v1/write",
                                      "--remote-write-batch-size", "500", env=env,
                                      wait=fault is None)

    def crash_at(self, point: str) -> None:
        """Starts the collector with the crash point `point`; returns once it killed itself."""
        p = self.start_collector(point)
        wait_for(f"the collector's crash at {point}", lambda: not p.alive(), 60, every=0.2)
        self.assertEqual(p.p.returncode, -signal.SIGKILL, p.output()[-2000:])
        name = point.split(":")[0]
        self.assertIn(f"fault: crash point {name}: SIGKILL", p.output())
        p.stop()

    def stored(self, sid: int) -> list:
        return [(int(round(float(t) * 1000)), int(v)) for t, v in
                self.c.get(f"/api/v1/series/{sid}/samples?limit=100000")["samples"]]

    def test_no_gap_across_a_collector_restart_and_a_receiver_outage(self) -> None:
        self.start_prometheus()
        self.start_collector()
        target = self.c.spawn("rwtarget", [PY, "-c", TARGET])
        pid = target.p.pid
        self.c.start_agent()
        sid = wait_for("the target's rss series", lambda: next(
            (s["id"] for s in self.c.get(f"/api/v1/series?pid={pid}&metric=rss")["series"]),
            None), 20)
        wait_for("samples in Prometheus", lambda: self.rw()["samples_sent"] > 0, 20)
        time.sleep(4)

        # A collector restart: the agent spools meanwhile; the sender resends from the cursor.
        self.c.collector.stop()
        time.sleep(2)
        self.start_collector()
        time.sleep(4)

        # The receiver goes away for 30 s, then comes back on the same directory and port.
        self.prom.stop()
        time.sleep(OUTAGE_S)
        self.assertGreater(self.rw()["retries"], 0, "no retry while the receiver was down")
        # The log names the failure as curl gives it, with no HTTP status (there was none).
        down = [ln for ln in self.c.collector.output().splitlines()
                if "remote-write:" in ln and "retrying" in ln and "HTTP" not in ln]
        self.assertTrue(down, "no retry line for the unreachable receiver")
        self.assertNotIn(": 0", down[0], down[0])
        self.start_prometheus()

        # Stop sampling, let the sender catch up, then compare.
        for a in self.c.agents:
            a.stop()
        time.sleep(1)
        want = self.stored(sid)
        self.assertGreater(len(want), 40)
        sel = f'apm_process_rss_bytes{{pid="{pid}"}}'
        span = int((time.time() * 1000 - want[0][0]) / 1000) + 60

        def caught_up() -> bool:
            r = self.prom_query(f"count_over_time({sel}[{span}s])")
            return bool(r) and int(r[0]["value"][1]) >= len(want)

        wait_for("Prometheus to hold every stored sample", caught_up, 60, every=1)
        r = self.prom_query(f"{sel}[{span}s]")
        self.assertEqual(len(r), 1, r)
        labels = r[0]["metric"]
        self.assertEqual(labels["__name__"], "apm_process_rss_bytes")
        self.assertEqual(labels["host"], "it-host")
        self.assertEqual(labels["pid"], str(pid))
        self.assertTrue(labels["process"].startswith(f"it-host:{pid}:"), labels)
        self.assertIn("name", labels)
        got = [(int(round(float(t) * 1000)), int(float(v))) for t, v in r[0]["values"]]
        self.assertEqual(got, want, "Prometheus and the collector disagree")
        # The verdict gauges went too, named and labelled as GET /metrics gives them.
        info = self.prom_query("apm_verdict_info")
        self.assertTrue(info, "no apm_verdict_info in Prometheus")
        self.assertIn(info[0]["metric"]["class"],
                      {"leak", "growing", "bloat", "sawtooth", "warmup", "stable"})
        st = self.rw()
        self.assertEqual(st["rejected"], 0, st)
        self.assertGreaterEqual(st["store_reads"], 1, st)
        print(f"remote-write: {len(want)} samples of the rss series, identical in Prometheus; "
              f"counters after the outage: {st}")

    def stored_count(self, sid: int) -> int:
        return self.c.get(f"/api/v1/series/{sid}/samples")["series"]["samples"]

    def series_match(self, host: str) -> tuple[int, int, list[str]]:
        """Compares every exported series of the host in the store with Prometheus. Returns
        the series and samples compared and the differences found (one line per series)."""
        now = time.time()
        nseries, total, diffs = 0, 0, []
        for s in self.c.get(f"/api/v1/series?host={host}&limit=1000")["series"]:
            name = PROM_NAMES.get(s["metric"])
            if name is None or s["samples"] == 0:
                continue
            want = [(int(round(float(t) * 1000)), float(v)) for t, v in
                    self.c.get(f"/api/v1/series/{s['id']}/samples?limit=100000")["samples"]]
            sel = f'{name}{{host="{host}",process="{s["process"] or ""}"}}'
            span = int(now - want[0][0] / 1000) + 60
            r = self.prom_query(f"{sel}[{span}s]")
            got = [(int(round(float(t) * 1000)), float(v)) for t, v in r[0]["values"]] if r else []
            nseries += 1
            total += len(want)
            if got != want:
                missing = sorted(set(want) - set(got))
                diffs.append(f"{sel}: {len(want)} stored, {len(got)} in Prometheus, "
                             f"missing {len(missing)} e.g. {missing[:3]}")
        return nseries, total, diffs

    def test_no_gap_when_killed_inside_the_crash_window(self) -> None:
        self.start_prometheus()
        script = os.path.join(self.c.dir, "rwcrash_target.py")
        with open(script, "w") as f:
            f.write(TARGET)
        conf = os.path.join(self.c.dir, "agent.conf")
        with open(conf, "w") as f:
            f.write("[watch]\nname = ^rwcrash_target\\.py$\n")

        # Without remote-write first: every series has a dozen samples when the sender
        # starts, so its first request holds several samples of each series (and resending
        # it to a Prometheus that has it is out of order, not an exact duplicate).
        self.c.start_collector()
        pid = self.c.spawn("rwtarget", [PY, script]).p.pid
        self.c.start_agent("--config", conf)
        sid = wait_for("the target's rss series", lambda: next(
            (s["id"] for s in self.c.get(f"/api/v1/series?pid={pid}&metric=rss")["series"]),
            None), 20)
        wait_for("a dozen samples", lambda: self.stored_count(sid) >= 12, 30, every=0.5)
        self.c.collector.stop()

        # Killed after Prometheus took the first request, before its cursor's commit. Then
        # the collector runs a while without remote-write, so that the store holds samples
        # after the request's in its series when the sender starts again: resent from the
        # cursor with them, the request would be refused whole (out of order) and they lost.
        self.crash_at("rw-acked")
        self.c.start_collector()
        n = self.stored_count(sid)
        wait_for("newer samples", lambda: self.stored_count(sid) >= n + 4, 30, every=0.5)
        self.c.collector.stop()
        self.start_collector()
        wait_for("the resend", lambda: self.rw()["resent"] >= 1, 30, every=0.5)
        st = self.rw()
        self.assertEqual((st["resent"], st["resent_rejected"], st["rejected"]), (1, 1, 0), st)
        log = self.c.collector.output()
        self.assertEqual(log.count("taken as delivered before it ended"), 1, log[-3000:])
        with urllib.request.urlopen(self.c.url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        self.assertIn("apm_remote_write_resent_rejected_total 1", metrics)
        self.assertIn("apm_remote_write_resent_total 1", metrics)
        time.sleep(2)
        self.c.collector.stop()

        # Killed after the second request's pending record, before it went: the next start
        # sends it alone, and Prometheus, which never had it, takes it.
        self.crash_at("rw-pending:2")
        self.start_collector()
        wait_for("the resend", lambda: self.rw()["resent"] >= 1, 30, every=0.5)
        st = self.rw()
        self.assertEqual((st["resent"], st["resent_rejected"], st["rejected"]), (1, 0, 0), st)

        # Stop sampling, let the sender catch up, then compare every series.
        time.sleep(2)
        for a in self.c.agents:
            a.stop()
        time.sleep(1)
        last: list = []

        def caught_up() -> bool:
            last[:] = [self.series_match("it-host")]
            return not last[0][2]

        try:
            wait_for("Prometheus to hold every stored sample", caught_up, 60, every=1)
        except AssertionError:
            self.fail("Prometheus lacks stored samples:\n" + "\n".join(last[0][2] if last else []))
        st = self.rw()
        self.assertEqual(st["rejected"], 0, st)
        print(f"remote-write crash window: {last[0][1]} stored samples in {last[0][0]} series, "
              f"identical in Prometheus after kill -9 at rw-acked and rw-pending; counters now: "
              f"{st}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
