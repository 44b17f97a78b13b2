"""The data path end to end: agent -> collector -> LMDB -> apm-cli, with real processes.

- a Python child grows its memory; apm-cli shows its RSS samples matching /proc within 5%;
- kill -9 of the collector mid-stream, then a restart: the stored range has no gap and no
  duplicate (the agent resends what was not acked, the collector drops what it has);
- a client with a wrong token and one sending garbage are refused and counted while the
  good agent keeps streaming.
"""
from __future__ import annotations

import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, hello_frame, wait_for  # noqa: E402

PY = "/usr/bin/python3"
INTERVAL_S = 0.5

GROWER = r"""
import sys, time
chunks = []
for i in range(40):
    chunks.append(bytearray(1024 * 1024))
    time.sleep(0.05)
print("plateau", flush=True)
while True:
    time.sleep(1)
"""


def statm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class DataPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.c = Cluster()
        cls.script = os.path.join(cls.c.dir, "grower.py")
        with open(cls.script, "w") as f:
            f.write(GROWER)
        try:
            cls.c.start_collector()
            cls.c.start_agent(interval=f"{INTERVAL_S}s")
            cls.app = cls.c.spawn("grower", [PY, cls.script])
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

    def rss_series(self) -> dict:
        doc = self.c.cli_json("series", "--process", "grower.py", "--metric", "rss")
        rows = [s for s in doc["series"] if s["pid"] == self.app.p.pid]
        if not rows:
            # Say what the collector holds for the pid, so a failure explains itself.
            mine = self.c.cli_json("series", "--pid", str(self.app.p.pid), "--metric", "rss")
            raise LookupError(f"no rss series named grower.py for pid {self.app.p.pid}; "
                              f"series of that pid: {mine['series']}")
        return rows[0]

    def samples(self, sid: int) -> list:
        return self.c.get(f"/api/v1/series/{sid}/samples?limit=100000")["samples"]

    def test_1_samples_match_proc(self) -> None:
        wait_for("grower plateau", lambda: "plateau" in self.app.output(), 30)
        time.sleep(3 * INTERVAL_S)
        s = wait_for("grower's rss series", self.rss_series, 20)
        self.assertEqual(s["name"], "grower.py")
        self.assertEqual(s["host"], "it-host")
        self.assertTrue(s["process"].startswith(f"it-host:{self.app.p.pid}:"))
        truth = statm_rss(self.app.p.pid)
        last = self.samples(s["id"])[-1][1]
        self.assertLess(abs(last - truth) / truth, 0.05, f"stored {last}, /proc says {truth}")
        # The samples show the growth: the first is well below the plateau.
        hosts = self.c.cli_json("hosts")
        self.assertIn("it-host", [h["host"] for h in hosts["hosts"]])
        # apm-cli series pages with the API's cursor: after an id, only larger ids.
        ids = [x["id"] for x in self.c.cli_json("series")["series"]]
        self.assertGreater(len(ids), 1)
        rest = [x["id"] for x in self.c.cli_json("series", "--cursor", str(ids[0]))["series"]]
        self.assertEqual(rest, [i for i in ids if i > ids[0]])
        bad = self.c.cli("series", "--cursor", "x1", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("--cursor", bad.stderr)

    def test_2_kill9_collector_leaves_no_gap_and_no_duplicate(self) -> None:
        s = wait_for("grower's rss series", self.rss_series, 20)
        before = len(self.samples(s["id"]))
        self.c.collector.kill9()
        time.sleep(3.0)  # the agent queues about six ticks meanwhile
        self.c.start_collector()
        t_restart = time.time()
        # Wait until samples stamped after the restart are stored: the backlog came first.
        wait_for("samples after restart",
                 lambda: self.samples(s["id"])[-1][0] > t_restart + 2 * INTERVAL_S, 30)
        pts = self.samples(s["id"])
        self.assertGreater(len(pts), before)
        ts = [p[0] for p in pts]
        dups = [t for t, u in zip(ts, ts[1:]) if u <= t]
        self.assertEqual(dups, [], "duplicate or out-of-order timestamps in the store")
        gaps = [(t, u) for t, u in zip(ts, ts[1:]) if u - t > 3 * INTERVAL_S]
        self.assertEqual(gaps, [], "gap in the stored samples across the collector restart")

    def test_3_wrong_token_and_garbage_are_refused_and_counted(self) -> None:
        s = wait_for("grower's rss series", self.rss_series, 20)
        n0 = len(self.samples(s["id"]))
        st0 = self.c.get("/api/v1/status")["ingest"]
        with socket.create_connection(("127.0.0.1", self.c.ingest_port), timeout=5) as sk:
            sk.sendall(hello_frame(b"not-the-token"))
            reply = sk.recv(4096)
            self.assertTrue(len(reply) > 4, "an Error frame is expected before the close")
            self.assertEqual(sk.recv(4096), b"", "the connection must be closed")
        with socket.create_connection(("127.0.0.1", self.c.ingest_port), timeout=5) as sk:
            sk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
            sk.settimeout(5)
            data = sk.recv(4096)
            while data:
                data = sk.recv(4096)
        with socket.create_connection(("127.0.0.1", self.c.ingest_port), timeout=5) as sk:
            sk.sendall(struct.pack(">I", 100) + os.urandom(100))
            sk.settimeout(5)
            data = sk.recv(4096)
            while data:
                data = sk.recv(4096)
        st1 = wait_for("counters", lambda: self.c.get("/api/v1/status")["ingest"], 5)
        self.assertEqual(st1["auth_failures"], st0["auth_failures"] + 1)
        refused = (st1["frames_too_big"] + st1["protocol_errors"] + st1["decode_errors"]) - (
            st0["frames_too_big"] + st0["protocol_errors"] + st0["decode_errors"])
        self.assertEqual(refused, 2)
        wait_for("the good agent still streaming", lambda: len(self.samples(s["id"])) > n0 + 3, 10)
        self.assertTrue(self.c.collector.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
