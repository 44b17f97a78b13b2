"""A herd of agents reconnecting after a kill -9 of the collector loses no acked sample.

The short version of tests/bench/reconnect_storm.sh (issue 12, the 1,000-agent reconnect storm):
tests/bench/collector_load runs 300 simulated agents of 10 series, two batches a second each,
which back off and reconnect as apm-agent does, keep their instance, queue the batches they
make while the collector is away and resend what was not acked; 4 s in, the collector is killed with SIGKILL and started again on the same data directory
and port. The tool's ground truth (every batch, acked or not) is then compared with the store by
tests/bench/storm_check.py through the HTTP API: every acked sample stored exactly once, nothing
stored that no agent sent.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, SANITIZER_MARKS, SOURCE, Cluster  # noqa: E402

LOAD = os.path.join(BUILD, "tests", "collector_load")
CHECK = os.path.join(SOURCE, "tests", "bench", "storm_check.py")
AGENTS = 300


class ReconnectStormTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()

    def tearDown(self) -> None:
        self.c.close()
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()
        self.c.cleanup()

    def test_every_acked_sample_is_stored_once_after_a_kill_of_the_collector(self) -> None:
        self.c.start_collector("--max-connections", "2000")
        truth = os.path.join(self.c.dir, "truth")
        load = self.c.spawn("collector_load", [
            LOAD, "--collector", f"127.0.0.1:{self.c.ingest_port}",
            "--token-file", self.c.token_file, "--agents", str(AGENTS), "--series", "10",
            "--rate", "2", "--warmup", "1", "--duration", "12", "--reconnect",
            "--sources", "8", "--name", "storm", "--truth", truth])
        time.sleep(4)
        self.c.collector.kill9()
        time.sleep(1)
        self.c.start_collector("--max-connections", "2000")
        rc = load.p.wait(timeout=120)
        out = load.output()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, out)
        self.assertEqual(rc, 0, out)
        # The kill really cut every agent, and every one came back.
        self.assertIn(f"reconnect: all {AGENTS} agents back", out)
        self.assertIn(f"connected at the end: {AGENTS} of {AGENTS} agents", out)
        # The batches made during the outage were queued, sent after it and acked.
        self.assertIn("unacked at exit: 0", out)

        r = subprocess.run([sys.executable, CHECK, "--api", self.c.url, truth],
                           capture_output=True, text=True, timeout=240)
        print(out + r.stdout, file=sys.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("acked lost 0, duplicated 0", r.stdout)
        self.assertRegex(r.stdout, r"phantom 0$|phantom 0\n")
        acked = int(r.stdout.split(" acked batches")[0].split()[-1])
        self.assertGreater(acked, AGENTS * 10)  # 12 s at 2 a second, minus the outage


if __name__ == "__main__":
    unittest.main()
