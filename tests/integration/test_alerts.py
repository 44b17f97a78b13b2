"""Alerts end to end: a leaking Python app through agent and collector.

The leak alert shows in `apm-cli alerts` with its sentence, `alerts --check`
exits 1 (a warning is firing) and 0 once it is acknowledged, a webhook gets
exactly one firing notification even across a kill -9 of the collector, and
the alert resolves (with one resolved notification) after the app exits.
"""
from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, wait_for  # noqa: E402

PY = "/usr/bin/python3"
LEAKER = """
import time
keep = []
print("leaker up", flush=True)
while True:
    keep.append(bytearray(256 * 1024))
    time.sleep(0.05)
"""


class Hook(http.server.BaseHTTPRequestHandler):
    events: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", "0"))
        Hook.events.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def leak_setup(test: unittest.TestCase, alerts: str = "", rule: str = "",
               name: str = "leaker") -> None:
    """Gives test a Cluster (c), a webhook receiver (hook), a collector config with the leak
    rule and the hook (conf; extra [alerts] and [rule leak] lines in alerts and rule), an agent
    config watching the leaker only (agent_conf) and the leaker script (script), NAME.py: each
    test file its own name, since agents see every process of the host."""
    test.c = Cluster()
    Hook.events = []
    test.hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=test.hook.serve_forever, daemon=True).start()
    test.conf = os.path.join(test.c.dir, "collector.conf")
    with open(test.conf, "w") as f:
        # A limit the leak reaches within minutes makes it urgent for the analysis. The
        # leaker grows from its first sample: these tests are about delivering alerts, so
        # its growth is judged at once, without the start-up doubt (test_fast_leak.py keeps
        # the defaults).
        f.write(f"""
[collector]
memory-limit = 640M
[analysis]
startup = 0
[alerts]
stale = 6s
evaluate = 0.2s
{alerts}
[rule leak]
kind = leak
process = {name}.*
{rule}
[notify hook]
type = webhook
url = http://127.0.0.1:{test.hook.server_address[1]}/hook
backoff = 0.1s
""")
    # The agent watches the leaker only: a leaking process of a test running alongside
    # (ctest -j) would fire alerts of its own and keep `alerts --check` at 1 after the ack.
    test.agent_conf = os.path.join(test.c.dir, "agent.conf")
    with open(test.agent_conf, "w") as f:
        f.write(f"[watch]\nname = ^{name}\\.py$\n")
    test.script = os.path.join(test.c.dir, f"{name}.py")
    with open(test.script, "w") as f:
        f.write(LEAKER)


def start_leaker(test: unittest.TestCase):
    """Starts the agent and the leaker of leak_setup; returns the leaker and a function that
    gives its firing leak alert (from `apm-cli alerts`) or None."""
    c = test.c
    c.start_agent("--config", test.agent_conf, interval="0.5s")
    app = c.spawn("leaker", [PY, test.script])
    pid = app.p.pid

    def firing():
        for a in c.cli_json("alerts", "--state", "firing")["alerts"]:
            if a["pid"] == pid and a["rule"] == "leak":
                return a
        return None

    return app, firing


class AlertsTest(unittest.TestCase):
    def setUp(self) -> None:
        leak_setup(self)

    def tearDown(self) -> None:
        if sys.exc_info()[0] is not None or getattr(self, "_outcome", None) is None:
            pass
        self.c.close()
        self.hook.shutdown()
        self.c.cleanup()

    def events(self, pid: int, event: str) -> list[dict]:
        return [e for e in Hook.events if e["event"] == event and e["alert"]["pid"] == pid]

    def test_leak_alert_lifecycle_check_ack_restart_resolve(self) -> None:
        c = self.c
        try:
            c.start_collector("--config", self.conf)
            app, firing = start_leaker(self)
            pid = app.p.pid
            alert = wait_for("leak alert", firing, timeout=240, every=1)
            self.assertIn("leaks ~", alert["summary"])
            self.assertIn("on `it-host`", alert["summary"])
            text = c.cli("alerts").stdout
            # The table shows the alert as it is now: size, rate and time left move on.
            self.assertIn(f"#{alert['id']} firing warning [leak]", text)
            self.assertIn(alert["summary"].split(" leaks ~")[0] + " leaks ~", text)
            self.assertIn("forecast:", text)
            self.assertIn("suspect:", text)
            self.assertEqual(c.cli("alerts", "--check", check=False).returncode, 1)
            wait_for("webhook", lambda: self.events(pid, "firing"), timeout=10)

            c.collector.kill9()
            c.start_collector("--config", self.conf)
            time.sleep(4)
            again = firing()
            self.assertIsNotNone(again, "the firing alert survives kill -9")
            self.assertEqual(again["id"], alert["id"])
            self.assertEqual(len(self.events(pid, "firing")), 1, "notified once")

            r = c.cli("ack", str(alert["id"]), "--for", "1h", "--comment", "looking at it")
            self.assertIn("looking at it", r.stdout)
            self.assertEqual(c.cli("alerts", "--check", check=False).returncode, 0)
            c.cli("ack", str(alert["id"]), "--for", "0")

            app.stop()
            wait_for("resolution", lambda: self.events(pid, "resolved"), timeout=30, every=0.5)
            states = {a["id"]: a["state"] for a in c.cli_json("alerts", "--state", "all")["alerts"]}
            self.assertEqual(states[alert["id"]], "resolved")
            self.assertEqual(len(self.events(pid, "firing")), 1)
            self.assertEqual(c.cli("alerts", "--check", check=False).returncode, 0)
            self.assertEqual(
                c.cli("--server", "http://127.0.0.1:1", "alerts", "--check",
                      check=False).returncode, 3)
        except BaseException:
            c.dump_logs()
            raise


if __name__ == "__main__":
    unittest.main()
