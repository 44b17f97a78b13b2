"""apm-run starts unchanged programs, scripts and -m modules, with the probe inside."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from typing import Dict, List

from probe_fakeagent import FakeAgent

HERE = os.path.dirname(os.path.abspath(__file__))
APM_RUN = os.path.normpath(os.path.join(HERE, "..", "..", "agent", "python", "apm-run"))

APP = textwrap.dedent(
    """
    import sys, time
    keep = []
    for i in range(30):
        keep.append(bytearray(4096))
        time.sleep(0.02)
    print("app ran", sys.argv[1:], flush=True)
    """
)


class ApmRun(unittest.TestCase):
    def setUp(self) -> None:
        self.agent = FakeAgent()
        self.addCleanup(self.agent.close)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        with open(os.path.join(self.tmp.name, "app.py"), "w") as f:
            f.write(APP)
        os.mkdir(os.path.join(self.tmp.name, "pkg"))
        open(os.path.join(self.tmp.name, "pkg", "__init__.py"), "w").close()
        with open(os.path.join(self.tmp.name, "pkg", "worker.py"), "w") as f:
            f.write(APP)

    def run_apm(self, args: List[str], **env: str) -> subprocess.CompletedProcess:
        environ = dict(os.environ)
        environ.pop("PYTHONPATH", None)  # apm-run must find the probe by itself.
        environ.update(APM_PROBE_SOCKET=self.agent.path, APM_PROBE_MODE="always", APM_PROBE_INTERVAL="0.05",
                       APM_PROBE_SNAPSHOT_BUDGET="0")
        environ.update(env)
        return subprocess.run([APM_RUN] + args, cwd=self.tmp.name, env=environ,
                              capture_output=True, text=True, timeout=30)

    def hello(self) -> Dict:
        hellos = self.agent.wait_for(lambda ls: [l for l in ls if l["type"] == "hello"])
        self.agent.wait_for(lambda ls: [l for l in ls if l["type"] == "diff"])
        self.assertEqual(self.agent.violations, [])
        return hellos[0]

    def test_script_runs_with_the_probe_inside(self) -> None:
        proc = self.run_apm([sys.executable, "app.py", "a", "b"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "app ran ['a', 'b']\n")
        hello = self.hello()
        self.assertEqual(hello["name"], "app.py")
        self.assertEqual(hello["argv"][-3:], ["app.py", "a", "b"])
        self.assertEqual(hello["pid"], hello["_peer_pid"])

    def test_module_runs_with_the_probe_inside(self) -> None:
        proc = self.run_apm([sys.executable, "-m", "pkg.worker", "x"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "app ran ['x']\n")
        self.assertEqual(self.hello()["name"], "pkg.worker")

    def test_an_existing_sitecustomize_still_runs(self) -> None:
        other = os.path.join(self.tmp.name, "site")
        os.mkdir(other)
        marker = os.path.join(self.tmp.name, "marker")
        with open(os.path.join(other, "sitecustomize.py"), "w") as f:
            f.write(f"open({marker!r}, 'w').write('ran')\n")
        proc = self.run_apm([sys.executable, "app.py"], PYTHONPATH=other)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(os.path.exists(marker))
        self.hello()

    def test_unreachable_agent_leaves_the_app_untouched(self) -> None:
        for path in ("/nonexistent/dir/probe.sock", os.path.join(self.tmp.name, "app.py")):
            with self.subTest(path=path):
                proc = self.run_apm([sys.executable, "app.py", "z"], APM_PROBE_SOCKET=path)
                self.assertEqual((proc.returncode, proc.stdout, proc.stderr), (0, "app ran ['z']\n", ""))

    def test_bad_setting_is_one_clear_line_and_a_failure(self) -> None:
        proc = self.run_apm([sys.executable, "app.py"], APM_PROBE_INTERVAL="soon")
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stdout, "")
        self.assertIn("APM_PROBE_INTERVAL", proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1)

    def test_missing_command_and_usage(self) -> None:
        proc = self.run_apm(["no-such-program-here"])
        self.assertEqual(proc.returncode, 127)
        self.assertIn("no-such-program-here", proc.stderr)
        self.assertEqual(self.run_apm([]).returncode, 1)
        self.assertEqual(self.run_apm(["--help"]).returncode, 0)


if __name__ == "__main__":
    unittest.main()
