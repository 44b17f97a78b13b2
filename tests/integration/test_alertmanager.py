"""Alerts into the real Alertmanager (Debian's prometheus-alertmanager) on loopback.

A leaking Python service runs under apm-run (probe on demand) through the real agent
and collector. The collector's leak alert must arrive in Alertmanager with the labels
alertname, severity, host, process, pid (and the rule's own), the annotations summary,
forecast and suspect, and a generatorURL; once the collector has traced the process
on suspicion, the suspect annotation names the leaking line. After the service exits
the alert resolves: it leaves Alertmanager's active alerts, and Alertmanager itself
notifies its receiver (a webhook here) that the alert is resolved.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import unittest
import urllib.request
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(__file__))
from harness import SOURCE, Cluster, free_port, wait_for  # noqa: E402

PY = "/usr/bin/python3"
AM = "/usr/bin/prometheus-alertmanager"
APM_RUN = os.path.join(SOURCE, "agent", "python", "apm-run")
LEAKER = textwrap.dedent(
    """
    import time
    keep = []
    print("leaker up", flush=True)
    while True:
        keep.append(bytearray(256 * 1024))   # LEAK
        time.sleep(0.05)
    """
)
LEAK_LINE = LEAKER.splitlines().index("    keep.append(bytearray(256 * 1024))   # LEAK") + 1


def ensure_alertmanager() -> bool:
    """Installs the Debian package when it is missing and we may (as root)."""
    if os.path.exists(AM):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                        "prometheus-alertmanager"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300, check=False)
    return os.path.exists(AM)


class Receiver(http.server.BaseHTTPRequestHandler):
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    notifications: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", "0"))
        Receiver.notifications.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class AlertmanagerTest(unittest.TestCase):
    def setUp(self) -> None:
        if not ensure_alertmanager():
            self.skipTest(f"{AM} is not installed (deploy/install-deps.sh installs it)")
        self.c = Cluster()
        self.receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.am_port = free_port()
        self.am_url = f"http://127.0.0.1:{self.am_port}"
        am_conf = os.path.join(self.c.dir, "alertmanager.yml")
        with open(am_conf, "w") as f:
            f.write(textwrap.dedent(f"""
                route:
                  receiver: it
                  group_by: [alertname, pid]
                  group_wait: 1s
                  group_interval: 1s
                  repeat_interval: 1h
                receivers:
                  - name: it
                    webhook_configs:
                      - url: http://127.0.0.1:{self.receiver.server_address[1]}/am
                        send_resolved: true
                """))
        am_data = os.path.join(self.c.dir, "alertmanager")
        os.makedirs(am_data)
        self.am = self.c.spawn("alertmanager", [
            AM, f"--config.file={am_conf}", f"--storage.path={am_data}",
            f"--web.listen-address=127.0.0.1:{self.am_port}", "--cluster.listen-address="])
        wait_for("alertmanager ready", lambda: self.am_get("/-/ready", raw=True), 30, 0.2)

        self.conf = os.path.join(self.c.dir, "collector.conf")
        with open(self.conf, "w") as f:
            # A limit the leak reaches within minutes makes it urgent for the analysis. The
            # leaker grows from its first sample: this test is about Alertmanager, so its growth
            # is judged at once, without the start-up doubt (test_fast_leak.py keeps the
            # defaults).
            f.write(textwrap.dedent(f"""
                [collector]
                memory-limit = 640M
                [analysis]
                startup = 0
                [alerts]
                stale = 6s
                evaluate = 0.2s
                resend = 2s
                [rule leak]
                kind = leak
                process = am_leaker\\.py
                labels = team=it
                [notify am]
                type = alertmanager
                url = {self.am_url}
                backoff = 0.1s
                """))
        self.script = os.path.join(self.c.dir, "am_leaker.py")
        with open(self.script, "w") as f:
            f.write(LEAKER)

    def tearDown(self) -> None:
        self.c.close()
        self.receiver.shutdown()
        self.c.cleanup()

    def am_get(self, path: str, raw: bool = False) -> Any:
        with urllib.request.urlopen(self.am_url + path, timeout=5) as r:
            body = r.read()
            return r.status == 200 if raw else json.loads(body)

    def am_alert(self, pid: int) -> Optional[dict]:
        """The alert of pid in Alertmanager's own list (active, silenced or not)."""
        for a in self.am_get("/api/v2/alerts?filter=alertname%3D%22leak%22"):
            if a["labels"].get("pid") == str(pid):
                return a
        return None

    def resolved_notification(self, pid: int) -> Optional[dict]:
        for n in Receiver.notifications:
            for a in n.get("alerts", []):
                if a["labels"].get("pid") == str(pid) and a["status"] == "resolved":
                    return a
        return None

    def test_leak_alert_arrives_with_its_answer_and_resolves(self) -> None:
        c = self.c
        try:
            c.start_collector("--config", self.conf)
            sock = os.path.join(c.dir, "probe.sock")
            c.start_agent("--probe-socket", sock, interval="0.5s")
            env = dict(os.environ, APM_PROBE_SOCKET=sock, APM_PROBE_MODE="on-demand",
                       APM_PROBE_INTERVAL="1")
            app = c.spawn("leaker", [PY, APM_RUN, PY, self.script], env=env)
            pid = app.p.pid
            started = time.monotonic()

            alert = wait_for("the leak alert in Alertmanager", lambda: self.am_alert(pid),
                             timeout=240, every=1)
            print(f"in Alertmanager after {time.monotonic() - started:.0f}s")
            labels, ann = alert["labels"], alert["annotations"]
            self.assertEqual(labels["alertname"], "leak")
            self.assertEqual(labels["severity"], "warning")
            self.assertEqual(labels["host"], "it-host")
            self.assertEqual(labels["process"], "am_leaker.py")
            self.assertEqual(labels["team"], "it")
            self.assertEqual(alert["status"]["state"], "active")
            self.assertTrue(alert["generatorURL"].startswith(c.url), alert["generatorURL"])
            for key in ("summary", "forecast", "suspect"):
                self.assertTrue(ann.get(key), f"annotation {key} missing: {ann}")
            self.assertIn("`am_leaker.py`", ann["summary"])
            self.assertIn("on `it-host` leaks ~", ann["summary"])
            self.assertIn("configured limit", ann["forecast"])

            # The collector traces the suspected process; the refreshed alert names the line.
            where = f"{self.script}:{LEAK_LINE}"

            def named():
                a = self.am_alert(pid)
                return a if a and a["annotations"]["suspect"].startswith(where) else None

            alert = wait_for("the leaking line as suspect", named, timeout=60, every=1)
            ann = alert["annotations"]
            self.assertIn(f"top suspect `{where}` +", ann["summary"])
            self.assertRegex(ann["suspect"], r" \+\d+(\.\d)? [KMG]iB/h$")
            self.assertIn("Python's heap grows with it", ann["summary"])
            print("summary:", ann["summary"])
            mine = [a for a in c.cli_json("alerts", "--state", "firing")["alerts"]
                    if a["pid"] == pid]
            self.assertEqual(len(mine), 1)
            self.assertEqual(mine[0]["suspect"]["site"], where)
            self.assertIs(mine[0]["native"], False)

            app.stop()
            stopped = time.monotonic()
            wait_for("the alert resolved by Alertmanager",
                     lambda: self.resolved_notification(pid), timeout=40, every=0.5)
            self.assertIsNone(self.am_alert(pid), "no longer active in Alertmanager")
            print(f"resolved in Alertmanager {time.monotonic() - stopped:.0f}s after the exit")
            states = [a["state"] for a in c.cli_json("alerts", "--state", "all")["alerts"]
                      if a["pid"] == pid]
            self.assertEqual(states, ["resolved"])
        except BaseException:
            c.dump_logs()
            raise


if __name__ == "__main__":
    unittest.main()
