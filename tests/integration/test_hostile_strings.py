"""Hostile strings from a peer: replaced at ingest, counted, and harmless on every output.

A raw agent (tests/integration/wire.py) sends what a real agent never would: a host name
that is not UTF-8 (`web\\xff`), a process name and command line with terminal escape
sequences, a cgroup path with stray bytes, and a probe site file name with an escape.
Afterwards the listings answer 200 with U+FFFD in place of what was invalid, the ingest
counters moved by exactly the strings replaced, and apm-cli's text output holds no control
byte but newline and tab.
"""
from __future__ import annotations

import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import Cluster, wait_for  # noqa: E402
from wire import RawAgent, batch, process_def, samples, series_def, site_def, trace_diff  # noqa: E402

FFFD = "\ufffd"
PID = 4242


def control_bytes(text: bytes) -> list[int]:
    """Offsets of C0 controls but newline and tab, DEL, and UTF-8-encoded C1 controls."""
    bad = [i for i, b in enumerate(text) if (b < 0x20 and b not in (0x0A, 0x09)) or b == 0x7F]
    bad += [i for i in range(len(text) - 1) if text[i] == 0xC2 and 0x80 <= text[i + 1] <= 0x9F]
    return bad


class HostileStringsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.c = Cluster()
        try:
            cls.c.start_collector()
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

    def test_1_strings_are_replaced_counted_and_listed(self) -> None:
        st0 = self.c.get("/api/v1/status")["ingest"]
        a = RawAgent(self.c.ingest_port, self.token, b"agent-hostile", b"web\xff")
        now = int(time.time() * 1000)
        strings = [b"evil\x1b[2J\x07name", b"python3 \x1b]0;pwned\x07 evil.py", b"/app\xfe.slice",
                   b"app/\x1b[31mcache.py"]
        a.send(batch(1, now - 5000, strings=strings,
                     processes=[process_def(1, PID, now - 60000, 1, 2, 3)],
                     series=[series_def(1, 1, 1)],
                     sample_msgs=[samples(1, [0, 1000, 1000, 1000, 1000],
                                          [1 << 20, 4096, 4096, 4096, 4096])],
                     sites=[site_def(1, 4, 88)],
                     diffs=[trace_diff(1, now, 1, [(1, 2048, 1024)])]))
        a.wait_ack(1)
        a.close()

        hosts = self.c.get("/api/v1/hosts")["hosts"]
        self.assertIn("web" + FFFD, [h["host"] for h in hosts])
        q = urllib.parse.quote("web" + FFFD)
        procs = self.c.get(f"/api/v1/processes?host={q}")["processes"]
        self.assertEqual(len(procs), 1, procs)
        p = procs[0]
        self.assertEqual(p["name"], f"evil{FFFD}[2J{FFFD}name")
        self.assertEqual(p["cmdline"], f"python3 {FFFD}]0;pwned{FFFD} evil.py")
        self.assertEqual(p["cgroup"], f"/app{FFFD}.slice")
        series = self.c.get(f"/api/v1/series?host={q}")["series"]
        self.assertTrue(any(s["metric"] == "rss" and s["pid"] == PID for s in series), series)
        sites = self.c.get("/api/v1/sites?process=" + urllib.parse.quote(p["id"]))["sites"]
        self.assertEqual([s["site"] for s in sites], [f"app/{FFFD}[31mcache.py:88"])

        st1 = self.c.get("/api/v1/status")["ingest"]
        # Host and cgroup path were not UTF-8; name, command line and site file had controls.
        self.assertEqual(st1["strings_invalid_utf8"] - st0["strings_invalid_utf8"], 2)
        self.assertEqual(st1["strings_control"] - st0["strings_control"], 3)
        self.assertEqual(st1["strings_too_long"] - st0["strings_too_long"], 0)
        log = wait_for("the replacement in the log",
                       lambda: "replaced strings" in self.c.collector.output()
                       and self.c.collector.output(), 5)
        self.assertIn("agent-hostile", log)

    def test_2_cli_text_output_holds_no_control_bytes(self) -> None:
        wait_for("the hostile host", lambda: any(
            h["host"] == "web" + FFFD for h in self.c.get("/api/v1/hosts")["hosts"]), 10)
        for args in (["hosts"], ["series"], ["top", "--pid", str(PID)], ["forecast"], ["alerts"],
                     ["status"]):
            r = self.c.cli(*args, check=False)
            self.assertIn(r.returncode, (0,), f"apm-cli {args}: {r.stderr}")
            out = r.stdout.encode()
            self.assertEqual(control_bytes(out), [], f"apm-cli {args} wrote control bytes: {out!r}")
        top = self.c.cli("top", "--pid", str(PID)).stdout
        self.assertIn(f"app/{FFFD}[31mcache.py:88", top)
        # --json is the collector's answer, exact: the replaced name, JSON-escaped where needed.
        doc = self.c.cli_json("series", "--pid", str(PID))
        self.assertEqual(doc["series"][0]["name"], f"evil{FFFD}[2J{FFFD}name")


if __name__ == "__main__":
    unittest.main(verbosity=2)
