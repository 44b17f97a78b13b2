"""Silences end to end: a leaking Python app through agent and collector, a webhook.

A silence by matcher made before the alert exists mutes it: the alert fires, is listed
as silenced (API, `apm-cli alerts`, `alerts --check` ignores it) and the webhook gets
nothing; the silence survives a kill -9 of the collector; expiring it early delivers the
still firing alert, once. Writes need the API token like every write route.
"""
from __future__ import annotations

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import http_request, wait_for  # noqa: E402
from test_alerts import Hook, leak_setup, start_leaker  # noqa: E402

TOKEN = "s" * 40


def request(url: str, method: str, auth: str | None, body: dict | None = None) -> tuple:
    return http_request(url, method, auth, json.dumps(body).encode() if body is not None else None)


class SilencesTest(unittest.TestCase):
    def setUp(self) -> None:
        # As test_alerts.py, with a small cap on silences and a rule label to match.
        leak_setup(self, alerts="silences-max = 3", rule="labels = team=payments", name="silenced")
        self.token = os.path.join(self.c.dir, "api-token")
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(TOKEN + "\n")

    def tearDown(self) -> None:
        self.c.close()
        self.hook.shutdown()
        self.c.cleanup()

    def start_collector(self) -> None:
        self.c.start_collector("--config", self.conf, "--api-token-file", self.token)

    def cli(self, *args: str, check: bool = True):
        return self.c.cli("--token-file", self.token, *args, check=check)

    def events(self, pid: int, event: str) -> list[dict]:
        return [e for e in Hook.events if e["event"] == event and e["alert"]["pid"] == pid]

    def test_silence_mutes_new_alert_survives_restart_and_expiry_delivers(self) -> None:
        c = self.c
        try:
            self.start_collector()
            url = c.url + "/api/v1/silences"
            # Writes need the token; reads do not.
            body = {"matchers": ["alertname=leak"], "duration": "1h"}
            self.assertEqual(request(url, "POST", None, body)[0], 401)
            self.assertEqual(request(url + "/1", "DELETE", None)[0], 401)
            # Clear refusals, naming the field.
            st, ans = request(url, "POST", "Bearer " + TOKEN,
                              {"matchers": ["host=~.*"], "duration": "1h"})
            self.assertEqual(st, 400, ans)
            self.assertIn("every one matches an empty label", ans["error"])
            r = self.cli("silence", "add", "host=~(x", check=False)
            self.assertEqual(r.returncode, 2)
            self.assertIn("matchers[0]: bad regular expression", r.stderr)

            r = self.cli("silence", "add", "alertname=leak", 'process=~"silenced.*"',
                         "team=payments", "--for", "1h", "--comment", "known leak, fix in review",
                         "--author", "ops")
            self.assertIn("#1 active", r.stdout)
            self.assertIn("known leak, fix in review", r.stdout)
            sid = c.cli_json("silence", "list")["silences"][0]["id"]
            self.assertEqual(sid, 1)

            app, firing = start_leaker(self)
            pid = app.p.pid
            alert = wait_for("leak alert", firing, timeout=240, every=1)
            self.assertTrue(alert["silenced"], alert)
            self.assertEqual(alert["silenced_by"], sid)
            self.assertIn(f"silenced by #{sid}", c.cli("alerts").stdout)
            self.assertEqual(c.cli("alerts", "--check", check=False).returncode, 0)
            # The status counts are taken at the engine's round: the one after the alert's.
            status = wait_for("status to count the silenced alert",
                              lambda: (lambda a: a if a["silenced"] == 1 else None)(
                                  c.get("/api/v1/status")["alerts"]), timeout=10, every=0.2)
            self.assertEqual(status["silences_active"], 1)
            # Several rounds and delivery attempts' worth: the webhook hears nothing.
            time.sleep(3)
            self.assertEqual(self.events(pid, "firing"), [])

            c.collector.kill9()
            self.start_collector()
            listed = c.cli_json("silence", "list")["silences"]
            self.assertEqual([(s["id"], s["state"]) for s in listed], [(sid, "active")])
            self.assertEqual(listed[0]["comment"], "known leak, fix in review")
            again = wait_for("alert after restart", firing, timeout=30, every=0.5)
            self.assertEqual(again["id"], alert["id"])
            self.assertTrue(again["silenced"])
            time.sleep(2)
            self.assertEqual(self.events(pid, "firing"), [], "still muted after the restart")

            r = self.cli("silence", "expire", str(sid))
            self.assertIn(f"#{sid} expired", r.stdout)
            got = wait_for("webhook after the expiry", lambda: self.events(pid, "firing"),
                           timeout=30, every=0.5)
            self.assertEqual(got[0]["alert"]["id"], alert["id"])
            self.assertFalse(got[0]["alert"]["silenced"])
            self.assertEqual(c.cli("alerts", "--check", check=False).returncode, 1)
            r = self.cli("silence", "expire", str(sid), check=False)
            self.assertEqual(r.returncode, 2)
            self.assertIn("already ended", r.stderr)
            self.assertEqual(c.cli_json("silence", "list")["silences"][0]["state"], "expired")
            time.sleep(2)
            self.assertEqual(len(self.events(pid, "firing")), 1, "notified once")

            # silences-max = 3 (ended ones count until silences-keep removes them).
            for host in ("a", "b"):
                self.cli("silence", "add", f"host={host}", "--for", "10m")
            st, ans = request(url, "POST", "Bearer " + TOKEN,
                              {"matchers": ["host=c"], "duration": "10m"})
            self.assertEqual(st, 429, ans)
            self.assertIn("silences-max", ans["error"])
            self.assertEqual(c.get("/api/v1/status")["alerts"]["silences_refused"], 1)
        except BaseException:
            c.dump_logs()
            raise


if __name__ == "__main__":
    unittest.main()
