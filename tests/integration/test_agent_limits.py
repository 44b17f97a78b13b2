"""Cardinality limits per agent, and a flood's state forgotten after process-grace.

A token holder (a raw agent, tests/integration/wire.py) defines processes up to
max-processes-per-agent, which fills the analysis to its cap (max-analysed-series), then one
batch more: that batch is refused with a permanent Error{LIMIT} that names the limit and the
batch, and counted. The flood stops; a real apm-agent watching one Python process starts.
Once process-grace has passed without news of the flood's processes, the analysis forgets
them and the real agent's new series is analysed (with the old one-hour idle time it was
refused analysis for an hour).
"""
from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, wait_for  # noqa: E402
from wire import RawAgent, batch, process_def, samples, series_def  # noqa: E402

PY = "/usr/bin/python3"
LIMIT = 50
FLOOD = 45  # within the limit, and exactly the analysis cap
GRACE = "3s"

GROWER = r"""
import time
chunks = []
while True:
    chunks.append(bytearray(256 * 1024))
    time.sleep(0.2)
"""


def flood_batch(seq: int, first: int, n: int, now: int) -> bytes:
    """n processes numbered from first (connection refs too), each one rss series, two samples."""
    refs = range(first, first + n)
    return batch(seq, now - 2000, strings=[f"flood-{r}.py".encode() for r in refs],
                 processes=[process_def(r, 50000 + r, now - 60000, r) for r in refs],
                 series=[series_def(r, r, 1) for r in refs],
                 sample_msgs=[samples(r, [0, 1000], [1 << 20, 4096]) for r in refs])


class AgentLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.c = Cluster()
        try:
            cls.c.start_collector("--max-processes-per-agent", str(LIMIT), "--process-grace",
                                  GRACE, "--max-analysed-series", str(FLOOD))
            with open(cls.c.token_file, "rb") as f:
                cls.token = f.read().strip()
        except BaseException:
            cls.c.dump_logs()
            cls.c.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()
        cls.c.cleanup()

    def run(self, result=None):  # noqa: ANN001 - unittest's signature
        r = super().run(result)
        if result is not None and (result.failures or result.errors):
            self.c.dump_logs()
        return r

    def status(self) -> dict:
        return self.c.get("/api/v1/status")

    def test_1_flood_over_the_limit_is_refused_and_counted(self) -> None:
        st0 = self.status()["ingest"]
        a = RawAgent(self.c.ingest_port, self.token, b"flood-agent", b"flood-host")
        now = int(time.time() * 1000)
        a.send(flood_batch(1, 1, FLOOD, now))
        a.wait_ack(1)
        wait_for("the flood analysed up to the cap",
                 lambda: self.status()["analysis"]["series"] >= FLOOD, 10)
        a.send(flood_batch(2, FLOOD + 1, 10, now))
        kind, f = a.recv()
        self.assertEqual(kind, "error", f)
        self.assertEqual(f[1], [7], "code ERROR_LIMIT")
        self.assertNotIn(2, f, "a limit is permanent: retryable stays false")
        self.assertEqual(f[4], [2], "the refused batch")
        text = f[3][0].decode()
        self.assertIn(f"max-processes-per-agent ({LIMIT})", text)
        self.assertIn("flood-agent", text)
        self.assertEqual(a.recv(), (None, {}), "the collector closes after the Error")
        a.close()
        st1 = self.status()["ingest"]
        self.assertEqual(st1["refused_processes"] - st0["refused_processes"], 1)
        # Nothing of the refused batch was stored.
        procs = self.c.get("/api/v1/processes?host=flood-host")["processes"]
        self.assertEqual(len(procs), FLOOD)

    def test_2_real_agent_is_analysed_once_the_flood_is_forgotten(self) -> None:
        wait_for("the flood refused", lambda: self.status()["ingest"]["refused_processes"] >= 1, 5)
        conf = os.path.join(self.c.dir, "agent.conf")
        with open(conf, "w") as f:
            f.write("[watch]\nname = ^limits_grower\\.py$\n")
        script = os.path.join(self.c.dir, "limits_grower.py")
        with open(script, "w") as f:
            f.write(GROWER)
        app = self.c.spawn("grower", [PY, script])
        self.c.start_agent("--config", conf, interval="0.2s")

        def series_id() -> int:
            rows = self.c.get(f"/api/v1/series?pid={app.p.pid}&metric=rss")["series"]
            return rows[0]["id"] if rows else 0

        sid = wait_for("the grower's rss series", series_id, 20)

        def analysed() -> bool:
            try:
                self.c.get(f"/api/v1/series/{sid}/analysis")
                return True
            except Exception:  # noqa: BLE001 - 404 until analysed
                return False

        wait_for("the grower's series analysed", analysed, 60, every=0.5)
        st = self.status()["analysis"]
        self.assertGreaterEqual(st["evicted"], FLOOD, "the flood's series were forgotten")
        self.assertLessEqual(st["series"], FLOOD)


if __name__ == "__main__":
    unittest.main(verbosity=2)
