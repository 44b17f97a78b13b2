"""The HTTP API's write routes need a bearer token; reads stay open.

Issue 12, hole 7. With api-token-file set, POST routes (trace, alert ack)
answer 401 without an Authorization header and with a wrong token, and run
with the right one; GET routes answer without a token. apm-cli sends the token
from --token-file or $APM_TOKEN_FILE. A collector whose HTTP address is beyond
loopback generates DATA-DIR/api-token and asks for it even without
api-token-file, and warns that its ingest is plaintext beyond loopback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import (CLI, COLLECTOR, SANITIZER_MARKS, Cluster, free_port,  # noqa: E402
                     http_request, wait_for)

TOKEN = "3f9c0a7be1d24c58a6e0b71d29f4c3aa"


def post(url: str, auth: str | None, body: bytes = b"{}") -> tuple[int, dict]:
    return http_request(url, "POST", auth, body)


def write_token(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


class ApiTokenTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.api_token = os.path.join(self.c.dir, "api-token")
        self.wrong = os.path.join(self.c.dir, "wrong-token")
        write_token(self.api_token, TOKEN)
        write_token(self.wrong, "0" * 32)

    def tearDown(self) -> None:
        self.c.close()
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()
        self.c.cleanup()

    def cli(self, *args: str, env_token: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("APM_TOKEN_FILE", None)
        if env_token is not None:
            env["APM_TOKEN_FILE"] = env_token
        return subprocess.run([CLI, "--server", self.c.url, *args], capture_output=True,
                              text=True, timeout=30, env=env)

    def test_write_routes_need_the_token(self) -> None:
        col = self.c.start_collector("--api-token-file", self.api_token)
        self.c.start_agent("--probe-socket", "", name="agent-apitoken")
        pid = col.p.pid
        # The collector's own process is sampled by the agent: a process to trace.
        procs = wait_for("the collector's process listed",
                         lambda: [p for p in self.c.get("/api/v1/processes")["processes"]
                                  if p.get("pid") == pid], 30)
        pid_id = procs[0]["id"]
        trace = f"{self.c.url}/api/v1/processes/{urllib.request.quote(pid_id, safe='')}/trace"

        status, body = post(trace, None)
        self.assertEqual(status, 401, body)
        self.assertIn("needs the API token", body["error"])
        status, body = post(trace, "Bearer " + "0" * 32)
        self.assertEqual(status, 401, body)
        self.assertIn("wrong API token", body["error"])
        status, body = post(trace, "Basic " + TOKEN)
        self.assertEqual(status, 401, body)
        status, body = post(trace, "Bearer " + TOKEN, b'{"for": 1}')
        self.assertEqual(status, 202, body)
        self.assertEqual(body["pid"], pid)

        # Alert ack: the token is checked before the route looks for the alert.
        ack = f"{self.c.url}/api/v1/alerts/999999/ack"
        self.assertEqual(post(ack, None)[0], 401)
        self.assertEqual(post(ack, "Bearer " + TOKEN)[0], 404)

        # Reads stay open.
        self.assertIn("store", self.c.get("/api/v1/status"))
        self.assertEqual(self.c.get("/api/v1/status")["api"]["unauthorized"], 4)

        # apm-cli: no token, a wrong one, the right one (flag and environment).
        r = self.cli("trace", "--pid", str(pid), "--for", "1s")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("401", r.stderr + r.stdout)
        r = self.cli("--token-file", self.wrong, "trace", "--pid", str(pid), "--for", "1s")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("wrong API token", r.stderr)
        r = self.cli("trace", "--pid", str(pid), "--for", "1s", "--token-file", self.api_token)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("trace", "--pid", str(pid), "--stop", env_token=self.api_token)
        self.assertEqual(r.returncode, 0, r.stderr)
        # A token file others may read is refused by the CLI as by the collector.
        os.chmod(self.wrong, 0o644)
        r = self.cli("--token-file", self.wrong, "trace", "--pid", str(pid), "--for", "1s")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(self.wrong, r.stderr)

    def test_http_beyond_loopback_generates_and_asks_for_a_token(self) -> None:
        http_port = free_port()
        data = os.path.join(self.c.dir, "data-open")
        argv = [COLLECTOR, "--foreground", "--data-dir", data,
                "--listen", f"0.0.0.0:{free_port()}", "--http", f"0.0.0.0:{http_port}",
                "--token-file", self.c.token_file]
        col = self.c.spawn("collector-open", argv)
        url = f"http://127.0.0.1:{http_port}"

        def status() -> dict:
            with urllib.request.urlopen(url + "/api/v1/status", timeout=5) as r:
                return json.loads(r.read())

        wait_for("collector beyond loopback answers", status, 15)
        gen = os.path.join(data, "api-token")
        self.assertTrue(os.path.exists(gen))
        self.assertEqual(os.stat(gen).st_mode & 0o777, 0o600)
        with open(gen) as f:
            tok = f.read().strip()
        self.assertEqual(post(url + "/api/v1/alerts/1/ack", None)[0], 401)
        self.assertEqual(post(url + "/api/v1/alerts/1/ack", "Bearer " + tok)[0], 404)
        log = col.output()
        self.assertIn("beyond loopback without TLS", log)
        self.assertIn(f"write routes need the token in {gen}", log)
        self.assertEqual(col.stop(), 0)
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, col.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
