"""The transport: bounded buffer that drops oldest, reconnects with a fresh hello, never
blocks or raises whatever is at the socket path."""

from __future__ import annotations

import os
import tempfile
import time
import unittest
from typing import List

from apm_probe import wire
from apm_probe.transport import Transport

from probe_fakeagent import FakeAgent


def line(i: int) -> bytes:
    return wire.encode({"type": "control_error", "t": 1000.0 + i, "error": "x" * 100})


HELLO_COUNT = [0]


def hello() -> bytes:
    HELLO_COUNT[0] += 1
    return wire.encode({"type": "control_error", "t": 0.0, "error": "hello"})


def pump_until(transport: Transport, cond, timeout: float = 5.0) -> List[bytes]:
    got: List[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += transport.pump(0.02)
        if cond():
            return got
    raise AssertionError("condition not reached")


class AgentAwayAndBack(unittest.TestCase):
    def test_buffer_drops_oldest_with_a_counter_then_reconnects_and_delivers_the_rest(self) -> None:
        agent = FakeAgent()
        self.addCleanup(agent.close)
        agent.stop_listening()
        t = Transport(agent.path, buffer_bytes=10 * len(line(0)), reconnect_max=0.1, hello=hello)
        self.addCleanup(t.close)
        for i in range(50):
            t.enqueue(line(i))
            t.pump(0.0)
        self.assertFalse(t.connected)
        self.assertGreater(t.connect_failures, 0)
        self.assertEqual(t.dropped, 40)
        self.assertEqual(t.buffered, 10)
        agent.listen()
        pump_until(t, lambda: t.buffered == 0 and t.connected)
        got = agent.wait_for(lambda ls: ls if len(ls) == 11 else None)
        self.assertEqual(got[0]["error"], "hello")
        self.assertEqual([l["t"] for l in got[1:]], [1000.0 + i for i in range(40, 50)])

    def test_agent_dies_and_comes_back_and_hello_comes_first_again(self) -> None:
        agent = FakeAgent()
        self.addCleanup(agent.close)
        t = Transport(agent.path, buffer_bytes=1 << 20, reconnect_max=0.1, hello=hello)
        self.addCleanup(t.close)
        t.enqueue(line(1))
        pump_until(t, lambda: t.sent == 2)
        agent.stop_listening()
        # The dead agent is noticed by a read of EOF or a failed send.
        pump_until(t, lambda: not t.connected)
        t.enqueue(line(2))
        agent.listen()
        pump_until(t, lambda: t.connected and t.buffered == 0)
        got = agent.wait_for(lambda ls: ls if len(ls) == 4 else None)
        self.assertEqual([(l["_conn"], l["error"]) for l in got[2:]], [(1, "hello"), (1, "x" * 100)])
        self.assertGreaterEqual(t.send_failures, 1)
        self.assertEqual(t.connects, 2)

    def test_control_lines_come_back_and_oversized_input_is_skipped(self) -> None:
        agent = FakeAgent()
        self.addCleanup(agent.close)
        t = Transport(agent.path, buffer_bytes=1 << 20, reconnect_max=0.1, hello=hello)
        self.addCleanup(t.close)
        pump_until(t, lambda: t.sent == 1)
        agent.send(b"x" * (wire.MAX_CONTROL_BYTES + 10) + b"\nfirst\nsec")
        agent.send(b"ond\n")
        received: List[bytes] = []
        pump_until(t, lambda: (received.extend(t.pump(0.02)) or len(received) >= 2))
        self.assertEqual(received[:2], [b"first", b"second"])
        self.assertEqual(t.oversized_input, 1)


class HostilePaths(unittest.TestCase):
    def test_garbage_paths_never_raise_and_only_count(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        regular = os.path.join(tmp.name, "file")
        with open(regular, "w") as f:
            f.write("not a socket")
        for path in (regular, tmp.name, "/nonexistent/dir/probe.sock", "relative\x01junk",
                     "/" + "x" * 300, "bad\0path", ""):
            with self.subTest(path=path[:40]):
                t = Transport(path, buffer_bytes=1 << 20, reconnect_max=0.05, hello=hello)
                started = time.monotonic()
                for i in range(20):
                    t.enqueue(line(i))
                    t.pump(0.01)
                self.assertLess(time.monotonic() - started, 2.0)
                self.assertFalse(t.connected)
                self.assertGreater(t.connect_failures, 0)
                self.assertIsNotNone(t.last_error)
                t.close()

    def test_wake_interrupts_a_long_wait(self) -> None:
        t = Transport("/nonexistent/x.sock", buffer_bytes=1 << 20, reconnect_max=60, hello=hello)
        self.addCleanup(t.close)
        t.pump(0.0)
        t.wake()
        started = time.monotonic()
        t.pump(5.0)
        self.assertLess(time.monotonic() - started, 1.0)


if __name__ == "__main__":
    unittest.main()
