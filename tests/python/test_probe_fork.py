"""A forked child gets its own probe: own connection, own pid, fresh baseline; the
parent's probe goes on as before."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

from probe_fakeagent import FakeAgent

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import apm_probe
    apm_probe.start(socket=sys.argv[1], mode="always", interval=0.05, snapshot_budget=0)
    inherited = [bytearray(1000) for _ in range(300)]
    time.sleep(0.4)
    pid = os.fork()
    if pid == 0:
        grown = []
        for i in range(20):
            grown.append(bytearray(20000))
            time.sleep(0.02)
        time.sleep(0.2)
        apm_probe.stop()
        os._exit(0)
    grown = []
    for i in range(20):
        grown.append(bytearray(10))
        time.sleep(0.02)
    os.waitpid(pid, 0)
    time.sleep(0.3)
    print(pid, flush=True)
    """
)


class Fork(unittest.TestCase):
    def test_child_reports_with_its_own_pid_and_baseline_parent_continues(self) -> None:
        agent = FakeAgent()
        self.addCleanup(agent.close)
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(SCRIPT)
        self.addCleanup(os.unlink, f.name)
        proc = subprocess.run([sys.executable, f.name, agent.path], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        child_pid = int(proc.stdout.split()[0])
        self.assertEqual(agent.violations, [])

        by_conn = {}
        for line in agent.lines:
            by_conn.setdefault(line["_conn"], []).append(line)
        self.assertEqual(len(by_conn), 2, "one connection per process, none shared")
        parent = next(ls for ls in by_conn.values() if ls[0]["_peer_pid"] != child_pid)
        child = next(ls for ls in by_conn.values() if ls[0]["_peer_pid"] == child_pid)

        # The child introduces itself with its own pid and says tracing carried over.
        self.assertEqual((child[0]["type"], child[0]["pid"]), ("hello", child_pid))
        self.assertEqual(child[0]["ppid"], parent[0]["pid"])
        self.assertEqual((child[1]["type"], child[1]["state"], child[1]["reason"]),
                         ("trace_state", "started", "fork"))
        child_diffs = [l for l in child if l["type"] == "diff"]
        self.assertGreaterEqual(len(child_diffs), 3)
        self.assertEqual(child_diffs[0]["seq"], 1)
        # Fresh baseline: what the parent allocated before the fork is not growth here.
        first = child_diffs[0]
        self.assertLess(first["total_size_diff"], 300 * 1000)
        grown = sum(e["size_diff"] for d in child_diffs for e in d["top"] if e["size_diff"] >= 20000)
        self.assertGreater(grown, 10 * 20000)
        self.assertEqual(child[-1]["type"], "trace_state")
        self.assertEqual(child[-1]["reason"], "shutdown")

        # The parent keeps one connection and one unbroken sequence, before and after.
        self.assertEqual([l["type"] for l in parent].count("hello"), 1)
        parent_seq = [l["seq"] for l in parent if l["type"] == "diff"]
        self.assertEqual(parent_seq, list(range(1, len(parent_seq) + 1)))
        hello_t = child[0]["t"]
        self.assertGreaterEqual(len([l for l in parent if l["type"] == "diff" and l["t"] > hello_t]), 3)


if __name__ == "__main__":
    unittest.main()
