"""A collector whose port is taken says so in one line and exits 1.

Another socket holds the ingest port, then the HTTP port. apm-collector must
print one error line on stderr that names the port, exit with status 1, and
neither abort nor report a memory error (the ASan build runs this test too).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import COLLECTOR, free_port  # noqa: E402


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
        argv = [COLLECTOR, "--foreground", "--data-dir", os.path.join(self.dir, "data"),
                "--listen", f"127.0.0.1:{ingest}", "--http", f"127.0.0.1:{http}",
                "--token-file", os.path.join(self.dir, "token")]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def check_refused(self, r: subprocess.CompletedProcess, server: str) -> None:
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("free()", r.stderr)
        self.assertNotIn("Sanitizer", r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn(f"{server}: cannot listen on 127.0.0.1:{self.busy}", errors[0])
        self.assertIn(f"port {self.busy} is already in use", errors[0])

    def test_ingest_port_taken(self) -> None:
        self.check_refused(self.start(self.busy, free_port()), "ingest")

    def test_http_port_taken(self) -> None:
        self.check_refused(self.start(free_port(), self.busy), "http")


if __name__ == "__main__":
    unittest.main()
