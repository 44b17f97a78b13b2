"""The probe thread against a fake agent: what it sends in each mode, control commands,
the trace window and memory cap, and staying out of the application's way."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import tracemalloc
import unittest
from typing import Any, Dict, List, Tuple

import apm_probe
from apm_probe import snapshot
from apm_probe.config import Settings
from apm_probe import probe as probe_module
from apm_probe.probe import Probe

from probe_fakeagent import FakeAgent, kinds


def settings(agent: FakeAgent, **kw: Any) -> Settings:
    base = dict(socket=agent.path, interval=0.05, reconnect_max=0.1, mode="on-demand")
    base.update(kw)
    return Settings(**base)


def churn(stop: threading.Event, keep: List[Any]) -> None:
    """A workload with a few growing and a few shrinking sites."""
    i = 0
    while not stop.is_set():
        keep.append(bytearray(512 + i % 300))
        if i % 2:
            keep.append(str(i) * (i % 17))
        if i % 3 == 0:
            keep.append({"i": i, "j": [i] * (i % 5)})
        if i % 7 == 0 and len(keep) > 50:
            del keep[:20]
        i += 1
        if i % 50 == 0:
            time.sleep(0.002)


class ProbeCase(unittest.TestCase):
    def setUp(self) -> None:
        self.agent = FakeAgent()
        self.addCleanup(self.agent.close)
        self.assertFalse(tracemalloc.is_tracing())

    def tearDown(self) -> None:
        self.assertEqual(self.agent.violations, [])
        tracemalloc.stop()

    def start(self, probe: Probe) -> Probe:
        probe.start()
        self.addCleanup(probe.stop, 2.0)
        return probe

    def control(self, **fields: Any) -> None:
        self.agent.wait_for(lambda ls: self.agent.connections)
        self.agent.send(dict(type="control", **fields))


class AlwaysMode(ProbeCase):
    def _sent_top_equals_compare_to(self, key_type: str, frames: int) -> None:
        pairs: Dict[int, Tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]] = {}
        hook = lambda seq, old, new: pairs.__setitem__(seq, (old, new))
        probe = self.start(Probe(settings(self.agent, mode="always", top_n=10, frames=frames,
                                          key_type=key_type, snapshot_budget=0.0), snapshot_hook=hook))
        stop, keep = threading.Event(), []
        worker = threading.Thread(target=churn, args=(stop, keep))
        worker.start()
        try:
            self.agent.wait_for(lambda ls: len([l for l in ls if l["type"] == "diff"]) >= 5, 10)
        finally:
            stop.set()
            worker.join()
        probe.stop(2.0)
        self.assertFalse(tracemalloc.is_tracing(), "the probe stops the tracing it started")
        diffs = self.agent.of_type("diff")
        self.assertEqual([d["seq"] for d in diffs], list(range(1, len(diffs) + 1)))
        filters = snapshot.filters()
        checked = 0
        for d in diffs:
            old, new = pairs[d["seq"]]
            want = new.filter_traces(filters).compare_to(old.filter_traces(filters), key_type)[:10]
            got = [(e["traceback"] if key_type == "traceback" else [[e["file"], e["line"]]],
                    e["size"], e["size_diff"], e["count"], e["count_diff"]) for e in d["top"]]
            expected = [([[f.filename, f.lineno] for f in s.traceback], s.size, s.size_diff,
                         s.count, s.count_diff) for s in want]
            self.assertEqual(got, expected, f"diff seq {d['seq']}")
            self.assertEqual(d["frames"], frames)
            checked += bool(got)
        self.assertGreaterEqual(checked, 4)

    def test_sent_top_lineno_equals_compare_to_of_the_same_snapshots(self) -> None:
        self._sent_top_equals_compare_to("lineno", 1)

    def test_sent_top_traceback_equals_compare_to_of_the_same_snapshots(self) -> None:
        self._sent_top_equals_compare_to("traceback", 4)

    def test_line_order_hello_then_tracing_then_gc_and_stats(self) -> None:
        self.start(Probe(settings(self.agent, mode="always")))
        lines = self.agent.wait_for(lambda ls: ls if "diff" in kinds(ls) else None)
        self.assertEqual(lines[0]["type"], "hello")
        self.assertEqual(lines[0]["pid"], os.getpid())
        self.assertEqual(lines[0]["_peer_pid"], os.getpid())
        self.assertEqual(lines[0]["mode"], "always")
        self.assertTrue(lines[0]["tracing"])
        self.assertEqual((lines[1]["type"], lines[1]["state"], lines[1]["reason"]),
                         ("trace_state", "started", "mode_always"))
        self.assertIn("gc", kinds(lines))
        self.assertIn("stats", kinds(lines))


class OnDemand(ProbeCase):
    def test_idle_until_told_then_traces_then_stops_on_command(self) -> None:
        probe = self.start(Probe(settings(self.agent)))
        self.agent.wait_for(lambda ls: kinds(ls).count("gc") >= 3)
        self.assertFalse(tracemalloc.is_tracing())
        self.assertNotIn("diff", kinds(self.agent.lines))
        self.control(action="trace", duration_s=30, max_memory=1 << 30)
        started = self.agent.wait_for(lambda ls: [l for l in ls if l["type"] == "trace_state"])
        self.assertEqual((started[0]["state"], started[0]["reason"], started[0]["max_memory"]),
                         ("started", "control", 1 << 30))
        self.assertAlmostEqual(started[0]["window_s"], 30, delta=1)
        self.assertTrue(tracemalloc.is_tracing())
        self.agent.wait_for(lambda ls: kinds(ls).count("diff") >= 2)
        self.control(action="stop")
        stopped = self.agent.wait_for(lambda ls: [l for l in ls if l.get("state") == "stopped"])
        self.assertEqual(stopped[0]["reason"], "control")
        self.assertEqual(stopped[0]["session"], started[0]["session"])
        self.assertFalse(tracemalloc.is_tracing())
        self.assertFalse(probe.stats()["tracing"])

    def test_trace_window_ends_by_itself(self) -> None:
        self.start(Probe(settings(self.agent)))
        self.control(action="trace", duration_s=0.3)
        started = time.monotonic()
        stopped = self.agent.wait_for(lambda ls: [l for l in ls if l.get("state") == "stopped"], 3)
        self.assertEqual(stopped[0]["reason"], "window")
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertFalse(tracemalloc.is_tracing())

    def test_window_defaults_to_the_trace_window_setting(self) -> None:
        self.start(Probe(settings(self.agent, trace_window=0.2)))
        self.control(action="trace")
        stopped = self.agent.wait_for(lambda ls: [l for l in ls if l.get("state") == "stopped"], 3)
        self.assertEqual(stopped[0]["reason"], "window")

    def test_memory_cap_stops_tracing(self) -> None:
        self.start(Probe(settings(self.agent)))
        self.control(action="trace", duration_s=60, max_memory=1)
        stopped = self.agent.wait_for(lambda ls: [l for l in ls if l.get("state") == "stopped"], 3)
        self.assertEqual(stopped[0]["reason"], "memory_cap")
        self.assertFalse(tracemalloc.is_tracing())

    def test_second_trace_command_extends_the_window(self) -> None:
        self.start(Probe(settings(self.agent)))
        self.control(action="trace", duration_s=0.5)
        self.agent.wait_for(lambda ls: self.agent.of_type("trace_state", state="started"))
        self.control(action="trace", duration_s=60)
        ext = self.agent.wait_for(lambda ls: self.agent.of_type("trace_state", state="extended"))
        self.assertAlmostEqual(ext[0]["window_s"], 60, delta=1)
        time.sleep(0.8)
        self.assertTrue(tracemalloc.is_tracing())
        self.assertEqual(self.agent.of_type("trace_state", state="stopped"), [])

    def test_trace_request_diffs_within_seconds_whatever_the_interval(self) -> None:
        # The regular interval is a minute; the follow-ups are shortened for the test.
        self.assertLessEqual(probe_module.FOLLOW_UP_S, 5.0)
        saved = probe_module.FOLLOW_UP_S
        probe_module.FOLLOW_UP_S = 0.3
        self.addCleanup(setattr, probe_module, "FOLLOW_UP_S", saved)
        stop, keep = threading.Event(), []
        worker = threading.Thread(target=churn, args=(stop, keep), daemon=True)
        worker.start()
        self.addCleanup(worker.join)
        self.addCleanup(stop.set)
        self.start(Probe(settings(self.agent, interval=60.0, snapshot_budget=0)))
        self.agent.wait_for(lambda ls: kinds(ls).count("gc") >= 1)
        asked = time.monotonic()
        self.control(action="trace", duration_s=600)
        diffs = self.agent.wait_for(lambda ls: [l for l in ls if l["type"] == "diff"], 5)
        self.assertLess(time.monotonic() - asked, 2.0)
        self.assertGreater(len(diffs[0]["top"]), 0)
        self.agent.wait_for(lambda ls: kinds(ls).count("diff") >= probe_module.FOLLOW_UPS, 5)
        self.assertLess(time.monotonic() - asked, 1.0 + probe_module.FOLLOW_UPS * 0.3 + 2.0)
        # Then the regular interval again: no further diff for a while.
        time.sleep(1.0)
        self.assertEqual(kinds(self.agent.lines).count("diff"), probe_module.FOLLOW_UPS)
        # A second request while tracing brings fresh diffs at once too.
        self.control(action="trace", duration_s=600)
        self.agent.wait_for(lambda ls: kinds(ls).count("diff") > probe_module.FOLLOW_UPS, 5)

    def test_tracing_started_by_the_application_is_left_running(self) -> None:
        tracemalloc.start(3)
        self.start(Probe(settings(self.agent)))
        self.control(action="trace", duration_s=30)
        started = self.agent.wait_for(lambda ls: self.agent.of_type("trace_state", state="started"))
        self.assertEqual(started[0]["frames"], 3)
        self.agent.wait_for(lambda ls: self.agent.of_type("diff"))
        self.control(action="stop")
        self.agent.wait_for(lambda ls: self.agent.of_type("trace_state", state="stopped"))
        self.assertTrue(tracemalloc.is_tracing())

    def test_mode_off_sends_gc_only_and_refuses_to_trace(self) -> None:
        self.start(Probe(settings(self.agent, mode="off")))
        with self.assertLogs("apm_probe", "WARNING") as logs:
            self.control(action="trace", duration_s=5)
            errors = self.agent.wait_for(lambda ls: self.agent.of_type("control_error"))
        self.assertIn("refused a control line", logs.output[0])
        self.assertIn("off", errors[0]["error"])
        self.agent.wait_for(lambda ls: kinds(ls).count("gc") >= 3)
        self.assertFalse(tracemalloc.is_tracing())
        self.assertEqual(self.agent.of_type("diff"), [])


class Robustness(ProbeCase):
    def test_garbage_from_the_agent_is_refused_counted_and_survived(self) -> None:
        probe = self.start(Probe(settings(self.agent)))
        self.agent.wait_for(lambda ls: self.agent.connections)
        with self.assertLogs("apm_probe", "WARNING") as logs:
            self.agent.send(b"\xff\xfe garbage\n[1,2]\n{\"type\":\"control\",\"action\":\"boom\"}\n")
            self.agent.send(b"{" * 70000 + b"\n")
            self.agent.send({"type": "control", "action": "trace", "duration_s": "soon"})
            errors = self.agent.wait_for(lambda ls: [l for l in ls if l["type"] == "control_error"]
                                         if len(self.agent.of_type("control_error")) >= 4 else None)
        self.assertEqual(len(errors), 4)
        self.assertEqual(len(logs.output), 1, "warnings about the agent are rate-limited")
        stats = self.agent.wait_for(lambda ls: [l for l in self.agent.of_type("stats") if l["bad_control"] == 5])
        self.assertEqual(stats[-1]["errors"], 0)
        self.assertTrue(probe.alive)
        self.assertFalse(tracemalloc.is_tracing())

    def test_agent_away_and_back_reconnects_with_hello_first(self) -> None:
        probe = self.start(Probe(settings(self.agent)))
        self.agent.wait_for(lambda ls: kinds(ls).count("gc") >= 2)
        self.agent.stop_listening()
        time.sleep(0.4)
        self.agent.listen()
        on_second = self.agent.wait_for(
            lambda ls: [l for l in ls if l["_conn"] == 1 and l["type"] == "stats" and l["connects"] == 2])
        second = [l for l in self.agent.lines if l["_conn"] == 1]
        self.assertEqual(second[0]["type"], "hello")
        self.assertGreaterEqual(on_second[-1]["send_failures"], 1)
        self.assertEqual(on_second[-1]["connects"], 2)
        self.assertEqual(probe.stats()["errors"], 0)

    def test_agent_dying_mid_trace_does_not_disturb_tracing_or_the_app(self) -> None:
        probe = self.start(Probe(settings(self.agent)))
        self.control(action="trace", duration_s=30)
        self.agent.wait_for(lambda ls: self.agent.of_type("diff"))
        self.agent.stop_listening()
        keep = [bytearray(100) for _ in range(10000)]
        time.sleep(0.3)
        self.assertEqual(len(keep), 10000)
        self.assertTrue(probe.alive)
        self.assertTrue(probe.stats()["tracing"])
        self.assertEqual(probe.stats()["errors"], 0)

    def test_stop_is_prompt_even_with_a_long_interval(self) -> None:
        probe = self.start(Probe(settings(self.agent, interval=60.0, mode="always")))
        self.agent.wait_for(lambda ls: self.agent.of_type("gc"))
        started = time.monotonic()
        probe.stop(2.0)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertFalse(probe.alive)
        stopped = self.agent.wait_for(lambda ls: self.agent.of_type("trace_state", state="stopped"))
        self.assertEqual(stopped[0]["reason"], "shutdown")

    def test_object_counts_are_sent_when_asked_for(self) -> None:
        self.start(Probe(settings(self.agent, object_counts=True, snapshot_budget=0.0)))
        lines = self.agent.wait_for(lambda ls: self.agent.of_type("objects"))
        self.assertGreater(lines[0]["total"], 0)
        self.assertTrue(lines[0]["types"])


class PublicApi(unittest.TestCase):
    def tearDown(self) -> None:
        apm_probe.stop()
        tracemalloc.stop()

    def test_start_stats_stop(self) -> None:
        agent = FakeAgent()
        self.addCleanup(agent.close)
        self.assertTrue(apm_probe.start(socket=agent.path, mode="always", interval=0.05))
        self.assertTrue(apm_probe.start(socket=agent.path), "a second start is a no-op")
        agent.wait_for(lambda ls: [l for l in ls if l["type"] == "diff"])
        stats = apm_probe.stats()
        self.assertTrue(stats["running"] and stats["tracing"] and stats["connected"])
        self.assertEqual(stats["pid"], os.getpid())
        apm_probe.stop()
        self.assertFalse(apm_probe.stats()["running"])
        self.assertFalse(tracemalloc.is_tracing())
        self.assertEqual(len(agent.connections), 1)

    def test_garbage_socket_paths_never_raise_into_the_app(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        regular = os.path.join(tmp.name, "regular")
        with open(regular, "w") as f:
            f.write("x")
        for path in (regular, tmp.name, "/nonexistent/dir/probe.sock", "\x01\x02garbage"):
            with self.subTest(path=path):
                self.assertTrue(apm_probe.start(socket=path, mode="always", interval=0.05, snapshot_budget=0))
                keep = [bytearray(64) for _ in range(20000)]
                deadline = time.monotonic() + 5
                while apm_probe.stats()["snapshots"] < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
                stats = apm_probe.stats()
                self.assertTrue(stats["running"])
                self.assertGreater(stats["connect_failures"], 0)
                self.assertEqual(stats["errors"], 0)
                self.assertGreater(stats["snapshots"], 1)
                apm_probe.stop()
                del keep


if __name__ == "__main__":
    unittest.main()
