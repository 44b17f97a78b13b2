"""The real apm-agent with --spool-dir against the real collector.

- collector down, the agent samples and is stopped (SIGTERM): every batch it took is on disk
  ("spool closed: N batches"); collector up, agent restarted: the N host samples of the first
  run arrive, each once, before the new ones;
- a segment damaged between two runs: the agent starts, logs the bad CRC, counts it (corrupt 1),
  and sends what came before the damage;
- an unusable spool directory stops the agent with one line naming it.
"""
from __future__ import annotations

import glob
import os
import random
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, wait_for  # noqa: E402

SUFFIX = f"{os.getpid()}-{random.randrange(1 << 30):x}"
HOST = f"spool-it-{SUFFIX}"


class AgentSpoolTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.spool = os.path.join(self.c.dir, "spool")
        self.conf = os.path.join(self.c.dir, "agent.conf")
        with open(self.conf, "w") as f:
            # Host metrics only: no process of this host matches.
            f.write(f"[watch]\nname = ^apm-no-such-process-{SUFFIX}$\n")
        self.c.start_collector()  # writes the token
        self.c.collector.stop()
        self.runs = 0

    def tearDown(self) -> None:
        self.c.close()
        self.c.cleanup()

    def run_agent(self, seconds: float) -> str:
        self.runs += 1
        a = self.c.start_agent("--config", self.conf, "--spool-dir", self.spool, "--host", HOST,
                               "--probe-socket", "", "--agent-id", HOST, interval="0.2s",
                               name=f"agent{self.runs}")
        time.sleep(seconds)
        self.assertEqual(a.stop(), 0)
        return a.output()

    @staticmethod
    def spooled(log: str) -> int:
        m = re.search(r"spool closed: (\d+) batches on disk", log)
        assert m, log[-2000:]
        return int(m.group(1))

    def host_samples(self) -> list:
        doc = self.c.get(f"/api/v1/series?host={HOST}&metric=mem_total")
        if not doc["series"]:
            return []
        sid = doc["series"][0]["id"]
        return self.c.get(f"/api/v1/series/{sid}/samples?limit=100000")["samples"]

    def test_spooled_batches_arrive_after_restart(self) -> None:
        log1 = self.run_agent(3.0)
        n1 = self.spooled(log1)
        self.assertGreater(n1, 5)
        self.c.start_collector()
        log2 = self.run_agent(3.0)
        self.assertIn(f"{n1} unacked batches", log2)
        rows = self.host_samples()
        times = [t for t, _ in rows]
        self.assertEqual(len(times), len(set(times)), "a sample stored twice")
        # Every batch of the first run is stored, and the second run's came after them.
        self.assertGreaterEqual(len(rows), n1 + 5, f"{len(rows)} stored, {n1} spooled in run 1")
        self.assertEqual(times, sorted(times))

    def test_damaged_segment_is_cut_and_counted(self) -> None:
        n1 = self.spooled(self.run_agent(2.5))
        segs = sorted(glob.glob(os.path.join(self.spool, "*.seg")))
        self.assertEqual(len(segs), 1)
        size = os.path.getsize(segs[0])
        with open(segs[0], "r+b") as f:  # damage a byte in the second half
            f.seek(size * 2 // 3)
            b = f.read(1)
            f.seek(size * 2 // 3)
            f.write(bytes([b[0] ^ 0xFF]))
        self.c.start_collector()
        log2 = self.run_agent(2.5)
        self.assertIn("torn or bad-CRC record", log2)
        self.assertRegex(log2, r"corrupt 1 \(\d+ bytes\)")
        rows = self.host_samples()
        times = [t for t, _ in rows]
        self.assertEqual(len(times), len(set(times)))
        m = re.search(r"replayed (\d+) ", log2)
        replayed = int(m.group(1))
        self.assertGreater(replayed, 0)
        self.assertLess(replayed, n1, "the damaged tail was replayed")

    def test_unusable_spool_dir_is_refused(self) -> None:
        a = self.c.start_agent("--spool-dir", "/proc/apm-no-spool-here", "--probe-socket", "",
                               name="agent-bad")
        wait_for("agent exit", lambda: not a.alive(), 10)
        self.assertEqual(a.stop(), 1)
        self.assertIn("/proc/apm-no-spool-here", a.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
