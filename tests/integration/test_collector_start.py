"""The collector's start and its config: a taken port, and a reload on SIGHUP.

Another socket holds the ingest port, then the HTTP port. apm-collector must
print one error line on stderr that names the port, exit with status 1, and
neither abort nor report a memory error (the ASan build runs this test too).

The config file is read once at the start, and again on SIGHUP, where its
alert rules take effect and a broken file leaves the current rules in place.

Both programs ignore SIGPIPE once started.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import COLLECTOR, SANITIZER_MARKS, Cluster, free_port, wait_for  # noqa: E402


class BusyPortTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="apm-it-busy-")
        self.holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.holder.bind(("127.0.0.1", 0))
        self.holder.listen(1)
        self.busy = self.holder.getsockname()[1]

    def tearDown(self) -> None:
        self.holder.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, ingest: int, http: int) -> subprocess.CompletedProcess:
        # No --foreground: the collector stays attached by default, so a user who
        # starts it by hand sees a start-up failure in its exit code.
        argv = [COLLECTOR, "--data-dir", os.path.join(self.dir, "data"),
                "--listen", f"127.0.0.1:{ingest}", "--http", f"127.0.0.1:{http}",
                "--token-file", os.path.join(self.dir, "token")]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def check_refused(self, r: subprocess.CompletedProcess, server: str) -> None:
        self.assertEqual(r.returncode, 1, r.stderr)
        for mark in ("free()", *SANITIZER_MARKS):
            self.assertNotIn(mark, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn(f"{server}: cannot listen on 127.0.0.1:{self.busy}", errors[0])
        self.assertIn(f"port {self.busy} is already in use", errors[0])

    def test_ingest_port_taken(self) -> None:
        self.check_refused(self.start(self.busy, free_port()), "ingest")

    def test_http_port_taken(self) -> None:
        self.check_refused(self.start(free_port(), self.busy), "http")


class ReloadTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.conf = os.path.join(self.c.dir, "collector.conf")

    def tearDown(self) -> None:
        self.c.close()
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()
        self.c.cleanup()

    def write(self, text: str) -> None:
        with open(self.conf, "w") as f:
            f.write(text)

    def rules(self) -> int:
        return self.c.get("/api/v1/status")["alerts"]["rules"]

    def test_sighup_reloads_the_rules_and_keeps_them_on_a_bad_file(self) -> None:
        self.write("[collector]\nmax-connections = 10\n[rule leak]\nkind = leak\n")
        self.c.start_collector("--config", self.conf)
        self.assertEqual(self.rules(), 1)

        self.write("[rule leak]\nkind = leak\n[rule native]\nkind = native\n"
                   "[rule big]\nkind = leak\nprocess = big.*\n")
        self.c.collector.p.send_signal(signal.SIGHUP)
        wait_for("three rules", lambda: self.rules() == 3, timeout=10)

        self.write("[rule broken]\nkind = sometimes\n")
        self.c.collector.p.send_signal(signal.SIGHUP)
        wait_for("the reload error", lambda: "reload failed" in self.c.collector.output(), 10)
        self.assertIn(f"{self.conf}:2", self.c.collector.output())
        self.assertEqual(self.rules(), 3)
        self.assertEqual(self.c.collector.stop(), 0)


def ignores_sigpipe(pid: int) -> bool:
    """True when /proc says the process ignores SIGPIPE (13: bit 12 of SigIgn)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGPIPE - 1) & 1)
    return False


class SigpipeTest(unittest.TestCase):
    """A peer that closes while an ack, a batch or an HTTP answer is being written gives EPIPE.

    libuv writes with write(2), which raises SIGPIPE on a closed connection, and its default
    action kills: the fault matrix's test agent died of it when the collector closed a
    connection after a refused batch (docs/benchmarks.md, Reliability). Both programs ignore it.
    """

    def setUp(self) -> None:
        self.c = Cluster()

    def tearDown(self) -> None:
        self.c.close()
        self.c.cleanup()

    def test_collector_and_agent_ignore_sigpipe(self) -> None:
        self.c.start_collector()
        agent = self.c.start_agent()
        wait_for("the agent connected", lambda: "connected" in agent.output(), 15)
        self.assertTrue(ignores_sigpipe(self.c.collector.p.pid), "apm-collector")
        self.assertTrue(ignores_sigpipe(agent.p.pid), "apm-agent")


if __name__ == "__main__":
    unittest.main()
