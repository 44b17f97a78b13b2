"""Backup and restore (issue 11): an online backup taken under load finds every sample acked
before it was asked for, once restored into a new data directory; the offline backup
(apm-collector --backup) too, and it refuses while a collector holds the data directory.

The ground truth is tests/fault/fault_agent.c's log (tests/integration/faultcheck.py): a sample
whose batch was acked before the backup request left is in the backup, whatever the bench
loader (tests/bench/collector_load.c) writes meanwhile to keep the writer busy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import faultcheck  # noqa: E402
from harness import BUILD, COLLECTOR, Cluster, Proc, wait_for  # noqa: E402

FAULT_AGENT = os.path.join(BUILD, "tests", "fault_agent")
LOADER = os.path.join(BUILD, "tests", "collector_load")
HOST = "backup-truth"


def lost(truth: faultcheck.Truth, acked: dict, have: dict) -> list:
    """Samples of batches acked (per instance and lease, as in acked) that have is missing."""
    out = []
    for (pid, t), (inst, seq, value) in truth.samples.items():
        n = have.get((pid, t, value), 0)
        if seq <= acked.get((inst, faultcheck.lease(seq)), 0) and n != 1:
            out.append((pid, t, seq, n))
    return out


def first_ack(truth: str) -> None:
    wait_for("the truth agent's first ack",
             lambda: os.path.exists(truth) and faultcheck.read_truth(truth).acked, 20)


class BackupTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = Cluster()
        self.restored: list[Cluster] = []

    def tearDown(self) -> None:
        for r in self.restored:
            r.close()
        self.c.close()
        if not os.environ.get("APM_KEEP"):
            for r in self.restored:
                r.cleanup()
            self.c.cleanup()

    def run(self, result=None):  # noqa: ANN001 - unittest's signature
        failed = len(result.failures) + len(result.errors) if result is not None else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > failed:
            sys.stderr.write(f"(logs were in {self.c.dir}; APM_KEEP=1 keeps them)\n")
        return r

    def truth_agent(self, truth: str) -> Proc:
        argv = [FAULT_AGENT, "--collector", f"127.0.0.1:{self.c.ingest_port}", "--token-file",
                self.c.token_file, "--agent-id", HOST, "--truth", truth, "--interval-ms", "50",
                "--series", "4"]
        p = Proc("fault-agent", argv, self.c.dir)
        self.c.agents.append(p)
        return p

    def restore(self, backup: str) -> Cluster:
        """A collector of its own on a copy of the backup, as docs/operations.md restores."""
        r = Cluster()
        self.restored.append(r)
        subprocess.run(["cp", "-a", backup, r.data_dir], check=True)
        with open(self.c.token_file) as src, open(r.token_file, "w") as dst:
            dst.write(src.read())
        os.chmod(r.token_file, 0o600)
        r.start_collector()
        return r

    def post_backup(self, d: str) -> tuple[int, dict]:
        req = urllib.request.Request(self.c.url + "/api/v1/backup", method="POST",
                                     data=json.dumps({"dir": d}).encode())
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_online_backup_under_load_restores_every_acked_sample(self) -> None:
        self.c.start_collector()
        truth = os.path.join(self.c.dir, "truth")
        self.truth_agent(truth)
        load = Proc("loader", [LOADER, "--collector", f"127.0.0.1:{self.c.ingest_port}",
                               "--token-file", self.c.token_file, "--agents", "10", "--series",
                               "200", "--rate", "10", "--duration", "12"], self.c.dir)
        self.c.others.append(load)
        first_ack(truth)
        time.sleep(3)
        # What was acked before the request is what the backup must hold.
        acked_before = dict(faultcheck.read_truth(truth).acked)
        self.assertTrue(acked_before, "the truth agent had nothing acked")
        backup = os.path.join(self.c.dir, "backup")
        r = self.c.cli("--json", "backup", backup)
        doc = json.loads(r.stdout)
        self.assertGreater(doc["bytes"], 0)
        self.assertGreater(doc["series"], 4, doc)
        self.assertIsNotNone(doc["last_sample"])
        self.assertLessEqual(doc["last_sample"], time.time() + 60)
        self.assertEqual(os.stat(backup).st_mode & 0o777, 0o700)
        self.assertEqual(sorted(os.listdir(backup)), ["data.mdb"])
        # Ingest went on: more is acked after the backup than before it.
        time.sleep(1.5)
        after = faultcheck.read_truth(truth).acked
        self.assertTrue(any(after.get(i, 0) > s for i, s in acked_before.items()), after)

        # A second backup into a directory that is not empty, and a relative one: 400.
        status, err = self.post_backup(backup)
        self.assertEqual(status, 400, err)
        self.assertIn("not empty", err["error"])
        status, err = self.post_backup("relative/dir")
        self.assertEqual(status, 400, err)
        self.assertIn("absolute", err["error"])

        load.stop()
        self.c.close()
        r = self.restore(backup)
        have = faultcheck.stored(r, HOST)
        t = faultcheck.read_truth(truth)
        missing = lost(t, acked_before, have)
        covered = sum(1 for (_, _), (i, s, _) in t.samples.items()
                      if s <= acked_before.get((i, faultcheck.lease(s)), 0))
        sys.stderr.write(f"online backup: {doc['bytes']} bytes in {doc['duration']:.3f} s, "
                         f"{covered} samples acked before it, {len(missing)} missing\n")
        self.assertGreater(covered, 0)
        self.assertEqual(missing, [], missing[:5])
        # Nothing in the copy that the agent never produced.
        produced = {(pid, t_ms, v) for (pid, t_ms), (_, _, v) in t.samples.items()}
        self.assertEqual([k for k in have if k not in produced], [])

    def test_offline_backup_and_lock_refusal(self) -> None:
        self.c.start_collector()
        truth = os.path.join(self.c.dir, "truth")
        a = self.truth_agent(truth)
        first_ack(truth)
        time.sleep(2)
        # While the collector runs: refused with the lock's message, nothing created.
        refused = os.path.join(self.c.dir, "refused")
        p = subprocess.run([COLLECTOR, "--data-dir", self.c.data_dir, "--backup", refused],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"data directory {self.c.data_dir} is locked by pid", p.stderr)
        self.assertFalse(os.path.exists(refused))
        a.stop()
        self.c.close()
        final = faultcheck.read_truth(truth)
        backup = os.path.join(self.c.dir, "offline")
        os.mkdir(backup)  # an empty directory is accepted too
        p = subprocess.run([COLLECTOR, "--data-dir", self.c.data_dir, "--backup", backup],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("backup of", p.stdout)
        self.assertEqual(os.stat(backup).st_mode & 0o777, 0o700)
        r = self.restore(backup)
        have = faultcheck.stored(r, HOST)
        self.assertGreater(sum(final.acked.values()), 0)
        missing = lost(final, final.acked, have)
        self.assertEqual(missing, [], missing[:5])

    def test_backup_needs_the_api_token_and_copies_it(self) -> None:
        os.makedirs(self.c.data_dir)
        token = os.path.join(self.c.data_dir, "api-token")
        fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("3f9c0a7be1d24c58a6e0b71d29f4c3aa\n")
        self.c.start_collector("--api-token-file", token)
        backup = os.path.join(self.c.dir, "backup")
        r = self.c.cli("backup", backup, check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("needs the API token", r.stderr)
        self.assertFalse(os.path.exists(backup))
        r = self.c.cli("--token-file", token, "backup", backup)
        self.assertIn(f"backup in {backup}", r.stdout)
        copied = os.path.join(backup, "api-token")
        self.assertEqual(os.stat(copied).st_mode & 0o777, 0o600)
        with open(token) as a, open(copied) as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(sorted(os.listdir(backup)), ["api-token", "data.mdb"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
