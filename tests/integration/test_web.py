"""The web page in a real headless Chromium (docs/web.md).

A collector that asks for an API token (api-token-file), an agent, and the demo's leaking
service under apm-run, judged at once (`[analysis] startup = 0`, as the alert tests do) against
a 640 MiB limit, so a leak alert fires within about a minute. Beside it runs a quiet Python
process whose script name is markup, to show that agent strings stay text. Then
tests/web/test_web.js drives Debian's /usr/bin/chromium with puppeteer-core (npm, never a
downloaded browser) and checks: the leaking service appears among the processes, the landing
page charts it without a click (points and a forecast cone), the alert is listed, and Ack
works through the page, asking for the token once (a wrong one first: asked again). The
screenshots land in the build tree (web.png, web-phone.png).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import sampler_env  # noqa: E402
from harness import BUILD, SOURCE, Cluster, wait_for  # noqa: E402

PY = "/usr/bin/python3"
CHROMIUM = "/usr/bin/chromium"
NODE = shutil.which("node") or "/usr/bin/node"
DRIVER = os.path.join(SOURCE, "tests", "web", "test_web.js")
LEAKY = os.path.join(SOURCE, "deploy", "demo", "leaky_service.py")
APM_RUN = os.path.join(SOURCE, "agent", "python", "apm-run")
TOKEN = "web-page-token-0123456789abcdef"
HOSTILE = "<img src=x onerror=document.title='pwned'>.py"


class WebPageTest(unittest.TestCase):
    def setUp(self) -> None:
        for need in (CHROMIUM, NODE):
            if not os.access(need, os.X_OK):
                self.fail(f"{need} is missing: run deploy/install-deps.sh")
        if not os.path.isdir(os.path.join(SOURCE, "tests", "web", "node_modules", "puppeteer-core")):
            subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                           cwd=os.path.join(SOURCE, "tests", "web"), check=True, timeout=120)
        self.c = Cluster()
        self.api_token = os.path.join(self.c.dir, "api-token")
        fd = os.open(self.api_token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(TOKEN + "\n")
        self.conf = os.path.join(self.c.dir, "collector.conf")
        with open(self.conf, "w") as f:
            f.write("""
[collector]
memory-limit = 640M
trace-on-suspicion = 10m
[analysis]
startup = 0
[alerts]
evaluate = 0.5s
[rule leak]
kind = leak
process = leaky_service.*
""")

    def tearDown(self) -> None:
        self.c.close()
        if any(self._outcome.result.failures) or any(self._outcome.result.errors):
            self.c.dump_logs()
        self.c.cleanup()

    def test_page_shows_the_leak_and_acks_its_alert_with_the_token(self) -> None:
        c = self.c
        c.start_collector("--config", self.conf, "--api-token-file", self.api_token)
        sock = os.path.join(c.dir, "probe.sock")
        c.start_agent("--probe-socket", sock, interval="0.5s")
        # The probe's sampling extension as the build made it (tests/python/sampler_env.py).
        env = sampler_env.env(dict(os.environ, APM_PROBE_SOCKET=sock, APM_PROBE_INTERVAL="3",
                                   LEAKY_REQUESTS_PER_SECOND="1000"))
        leaky = c.spawn("leaky", [PY, APM_RUN, PY, LEAKY], env=env)
        hostile = os.path.join(c.dir, HOSTILE)
        with open(hostile, "w") as f:
            f.write("import time\ntime.sleep(600)\n")
        c.spawn("hostile", [PY, hostile])

        def firing():
            for a in c.get("/api/v1/alerts?state=firing")["alerts"]:
                if a["pid"] == leaky.p.pid:
                    return a
            return None

        alert = wait_for("the leak alert", firing, timeout=90, every=1)
        shots = os.path.join(BUILD, "web.png")
        r = subprocess.run(
            [NODE, DRIVER, "--url", c.url, "--token", TOKEN, "--pid", str(leaky.p.pid),
             "--alert", str(alert["id"]), "--hostile", HOSTILE[:-3], "--chromium", CHROMIUM,
             "--screenshot", shots, "--profile", os.path.join(c.dir, "chromium")],
            capture_output=True, text=True, timeout=90)
        sys.stderr.write(r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, "the browser test failed (output above)")
        # The ack went through the API with the token the page asked for.
        acked = c.get(f"/api/v1/alerts/{alert['id']}")
        self.assertTrue(acked["acked"], acked)
        self.assertGreater(os.path.getsize(shots), 10_000)
        status = c.get("/api/v1/status")
        self.assertGreaterEqual(status["api"]["unauthorized"], 2)  # no token, then the wrong one


if __name__ == "__main__":
    unittest.main()
