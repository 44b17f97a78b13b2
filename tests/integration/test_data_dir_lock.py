"""Two collectors on one data directory: the second is refused, the first carries on.

Issue 12, hole 1: both used to start and hand out series ids from their own
counters, so each overwrote the other's records. The store now takes an
exclusive lock on the data directory: a second apm-collector on the same
directory exits 1 with "data directory DIR is locked by pid N", and the first
keeps storing its agent's samples.
"""
from __future__ import annotations

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import COLLECTOR, SANITIZER_MARKS, Cluster, free_port, wait_for  # noqa: E402


class DataDirLockTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()

    def tearDown(self) -> None:
        self.c.close()
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()
        self.c.cleanup()

    def stored(self) -> int:
        return self.c.get("/api/v1/status")["store"]["samples"]

    def test_second_collector_on_the_same_directory_exits_1(self) -> None:
        first = self.c.start_collector()
        self.c.start_agent()
        wait_for("samples stored", lambda: self.stored() > 0, 20)

        argv = [COLLECTOR, "--data-dir", self.c.data_dir,
                "--listen", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}",
                "--token-file", self.c.token_file]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 1, r.stderr)
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, r.stderr)
        self.assertIn(f"data directory {self.c.data_dir} is locked by pid {first.p.pid}", r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
        self.assertEqual(len(errors), 1, r.stderr)

        # The first one was not disturbed: it keeps answering and storing.
        n = self.stored()
        wait_for("more samples stored by the first collector", lambda: self.stored() > n, 20)
        self.assertTrue(first.alive())
        self.assertEqual(first.stop(), 0)


if __name__ == "__main__":
    unittest.main()
