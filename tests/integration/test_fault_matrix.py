"""The fault matrix, short version: each scenario drives tests/fault/fault_agent.c (the agent's
uplink, feed and disk spool with synthetic samples and a ground-truth log) against the real
collector, then tests/integration/faultcheck.py compares the log with the store:
every acked sample stored exactly once, an unacked one at most once, nothing invented.

- kill -9 loop of the collector (agent queue in memory);
- kill -9 loop of the agent with its spool, collector up (no duplicate across restarts);
- collector down, agent killed -9, collector up, agent restarted: what was spooled arrives,
  only the last second before the kill may be missing;
- the same with SIGTERM: nothing is missing;
- network faults through a loopback proxy: delay, blackhole then reset, repeated resets.

The long version is tests/bench/fault_matrix_long.sh. Figures: docs/benchmarks.md, Reliability.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import faultcheck  # noqa: E402
from harness import BUILD, Cluster, Proc  # noqa: E402

FAULT_AGENT = os.path.join(BUILD, "tests", "fault_agent")
INTERVAL_MS = 50
CYCLES = int(os.environ.get("APM_FAULT_CYCLES", "4"))
SUFFIX = f"{os.getpid()}-{random.randrange(1 << 30):x}"


class FaultMatrixTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.c.start_collector()
        self.n = 0
        self.results: list[str] = []

    def tearDown(self) -> None:
        self.c.close()
        if not os.environ.get("APM_KEEP"):
            self.c.cleanup()

    def run(self, result=None):  # noqa: ANN001 - unittest's signature
        failed = len(result.failures) + len(result.errors) if result is not None else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failed:
            sys.stderr.write(f"(logs were in {self.c.dir})\n")
        return r

    def agent(self, agent_id: str, truth: str, spool: str | None = None,
              port: int | None = None, *extra: str) -> Proc:
        self.n += 1
        argv = [FAULT_AGENT, "--collector", f"127.0.0.1:{port or self.c.ingest_port}",
                "--token-file", self.c.token_file, "--agent-id", agent_id, "--truth", truth,
                "--interval-ms", str(INTERVAL_MS), "--series", "4"]
        if spool:
            argv += ["--spool-dir", spool]
        argv += list(extra)
        p = Proc(f"fault-{agent_id}-{self.n}", argv, self.c.dir)
        self.c.agents.append(p)
        return p

    def restart_collector(self, how: int) -> None:
        if how == signal.SIGKILL:
            self.c.collector.kill9()
        else:
            self.c.collector.stop(how)

    def report(self, name: str, r: faultcheck.Result, extra: str = "") -> None:
        line = f"{name}: {r}{extra}"
        sys.stderr.write(line + "\n")
        if not r.ok():
            self.c.dump_logs()
        self.assertTrue(r.ok(), line)
        self.assertGreater(r.acked, 0, line)

    def test_collector_kill9_loop(self) -> None:
        host = f"fm-ck-{SUFFIX}"
        truth = os.path.join(self.c.dir, "truth-ck")
        a = self.agent(host, truth)
        downs = []
        for _ in range(CYCLES):
            time.sleep(random.uniform(1.0, 2.0))
            self.restart_collector(signal.SIGKILL)
            t0 = time.time()
            self.c.start_collector()
            downs.append(time.time() - t0)
        self.assertTrue(faultcheck.wait_acked(truth, 30), "not everything acked after the loop")
        a.stop()
        r = faultcheck.check(self.c, host, truth)
        self.report("collector kill -9 x%d" % CYCLES, r,
                    f"; collector back in {max(downs):.2f} s at most")

    def test_agent_kill9_loop_with_spool(self) -> None:
        host = f"fm-ak-{SUFFIX}"
        truth = os.path.join(self.c.dir, "truth-ak")
        spool = os.path.join(self.c.dir, "spool-ak")
        for _ in range(CYCLES):
            a = self.agent(host, truth, spool)
            time.sleep(random.uniform(1.0, 2.0))
            a.kill9()
        a = self.agent(host, truth, spool)
        self.assertTrue(faultcheck.wait_acked(truth, 30), "not everything acked after the loop")
        a.stop()
        r = faultcheck.check(self.c, host, truth)
        self.report("agent kill -9 x%d (spool)" % CYCLES, r)

    def down_then_stop_agent(self, tag: str, sig: int) -> tuple[faultcheck.Result, float, float]:
        """Collector down, agent stopped by sig, collector up, agent restarted.

        Returns the check, how many seconds before the stop the oldest missing sample was, and
        the time the restarted agent took to have everything acked (the spool's replay)."""
        host = f"fm-{tag}-{SUFFIX}"
        truth = os.path.join(self.c.dir, f"truth-{tag}")
        spool = os.path.join(self.c.dir, f"spool-{tag}")
        a = self.agent(host, truth, spool)
        time.sleep(1.5)
        self.restart_collector(signal.SIGTERM)
        time.sleep(3.0)
        t_stop = time.time()
        if sig == signal.SIGKILL:
            a.kill9()
        else:
            self.assertEqual(a.stop(sig), 0)
        self.c.start_collector()
        t0 = time.time()
        a = self.agent(host, truth, spool)
        # What the stopped run produced and never got acked must now arrive.
        before = faultcheck.read_truth(truth)
        self.assertTrue(faultcheck.wait_acked(truth, 30), "spooled batches not acked")
        replay_s = time.time() - t0
        a.stop()
        r = faultcheck.check(self.c, host, truth)
        have = faultcheck.stored(self.c, host)
        missing = [t for (pid, t), (i, s, v) in before.samples.items()
                   if (pid, t, v) not in have]
        oldest_missing = (t_stop - min(missing) / 1000.0) if missing else 0.0
        return r, oldest_missing, replay_s

    def test_agent_kill9_collector_down(self) -> None:
        r, oldest, replay = self.down_then_stop_agent("k9", signal.SIGKILL)
        self.report("collector down, agent kill -9", r,
                    f"; missing from at most {oldest:.2f} s before the kill; replay {replay:.2f} s")
        self.assertLessEqual(oldest, 1.3, "kill -9 lost more than the last second")

    def test_agent_sigterm_collector_down(self) -> None:
        r, oldest, replay = self.down_then_stop_agent("term", signal.SIGTERM)
        self.report("collector down, agent SIGTERM", r, f"; replay {replay:.2f} s")
        self.assertEqual(oldest, 0.0, "SIGTERM lost samples")
        self.assertEqual(r.unacked, 0, "SIGTERM left samples unacked after the restart")

    def test_network_faults_through_proxy(self) -> None:
        host = f"fm-net-{SUFFIX}"
        truth = os.path.join(self.c.dir, "truth-net")
        spool = os.path.join(self.c.dir, "spool-net")
        px = faultcheck.Proxy(self.c.ingest_port, delay_s=0.2)
        try:
            # A blackholed link is noticed by the missing acks (ack timeout), not by TCP.
            a = self.agent(host, truth, spool, px.port, "--ack-timeout-ms", "2000")
            time.sleep(1.5)
            px.mode = "delay"
            time.sleep(2.0)
            px.mode = "blackhole"
            time.sleep(3.0)
            px.mode = "pass"
            cut = 0
            for _ in range(CYCLES):
                time.sleep(random.uniform(0.5, 1.5))
                cut += px.cut()
            self.assertTrue(faultcheck.wait_acked(truth, 30), "not everything acked after cuts")
            a.stop()
        finally:
            px.close()
        r = faultcheck.check(self.c, host, truth)
        self.report("network delay, blackhole, %d cuts" % CYCLES, r,
                    f"; {cut} sockets cut")


if __name__ == "__main__":
    unittest.main(verbosity=2)
