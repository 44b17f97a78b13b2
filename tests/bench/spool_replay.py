#!/usr/bin/env python3
"""Spool replay time: the collector is down while tests/fault/fault_agent.c spools batches
(one every INTERVAL ms, 4 samples each) for SECONDS; the agent is stopped (SIGTERM), the collector
started, the agent restarted: prints the backlog (batches, bytes on disk), the time until every
spooled batch is acked, and the checker's line (lost, duplicated).

    APM_BUILD_DIR=build tests/bench/spool_replay.py [SECONDS [INTERVAL_MS]]
"""
from __future__ import annotations

import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import faultcheck  # noqa: E402
from harness import BUILD, Cluster, Proc  # noqa: E402

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20
interval = sys.argv[2] if len(sys.argv) > 2 else "2"
c = Cluster()
try:
    c.start_collector()
    c.collector.stop()
    host = f"replay-{os.getpid()}"
    truth, spool = os.path.join(c.dir, "truth"), os.path.join(c.dir, "spool")
    argv = [os.path.join(BUILD, "tests", "fault_agent"), "--collector",
            f"127.0.0.1:{c.ingest_port}", "--token-file", c.token_file, "--agent-id", host,
            "--truth", truth, "--spool-dir", spool, "--interval-ms", interval, "--series", "4"]
    a = Proc("agent1", argv, c.dir)
    time.sleep(seconds)
    a.stop()
    batches = len(faultcheck.read_truth(truth).samples) // 4
    size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(spool, "*.seg")))
    c.start_collector()
    t0 = time.time()
    a = Proc("agent2", argv, c.dir)
    done = faultcheck.wait_acked(truth, 600)
    replay = time.time() - t0
    a.stop()
    r = faultcheck.check(c, host, truth)
    print(f"backlog {batches} batches ({batches * 4} samples, {size / 1e6:.1f} MB on disk); "
          f"all acked {'in %.2f s' % replay if done else 'NOT within 600 s'} "
          f"({batches / replay:.0f} batches/s); {r}")
finally:
    c.close()
    c.cleanup()
