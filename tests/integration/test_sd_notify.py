"""systemd's notify protocol, with a NOTIFY_SOCKET this test owns (issue 13, part 5).

The test binds a Unix datagram socket, as systemd does for a Type=notify unit, and starts
the real collector, then the real agent, with NOTIFY_SOCKET pointing at it and
WATCHDOG_USEC=400000 (a 0.4 s WatchdogSec). Each program must send READY=1 with a STATUS=
line only once it answers (the collector's HTTP port and ingest port accept connections; the
agent's probe socket exists), then WATCHDOG=1 about every 0.2 s from its event loop, and
STOPPING=1 on SIGTERM. The collector sends through libsystemd (APM_SYSTEMD=ON), the agent
through its own implementation of the protocol (common/base/sdnotify.c): both are checked here.
Without NOTIFY_SOCKET nothing is sent (the programs run as before, as every other test shows).
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import AGENT, COLLECTOR, Cluster, Proc, wait_for  # noqa: E402

WATCHDOG_USEC = 400_000


class Listener:
    """The systemd side: a datagram socket whose thread stamps each message as it arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.done:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                continue
            with self.lock:
                self.got.append((time.monotonic(), data.decode()))

    def messages(self, key: str) -> list[tuple[float, str]]:
        with self.lock:
            return [(t, m) for t, m in self.got if key in m.split("\n")]

    def close(self) -> None:
        self.done = True
        self.thread.join(timeout=5)
        self.sock.close()


class NotifyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.cluster = Cluster()

    def tearDown(self) -> None:
        self.cluster.close()
        self.cluster.cleanup()

    def env(self, sock: str) -> dict:
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = sock
        env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        env.pop("WATCHDOG_PID", None)
        return env

    def check_protocol(self, name: str, proc: Proc, listener: Listener, ready_check) -> None:
        ready = wait_for(f"{name} READY=1", lambda: listener.messages("READY=1"), 20)
        t_ready, msg = ready[0]
        self.assertEqual(len(ready), 1, f"{name} sent READY=1 more than once: {ready}")
        status = [ln for ln in msg.split("\n") if ln.startswith("STATUS=")]
        self.assertEqual(len(status), 1, f"{name}'s READY=1 has no STATUS= line: {msg!r}")
        self.assertGreater(len(status[0]), len("STATUS="), msg)
        # Ready means ready: what the program serves answers when READY=1 has arrived.
        ready_check()
        # Watchdog pings at half the period, from the loop: over 2 s, about 10 of them.
        time.sleep(2.0)
        pings = [t for t, _ in listener.messages("WATCHDOG=1") if t >= t_ready]
        self.assertGreaterEqual(len(pings), 6, f"{name}: {len(pings)} WATCHDOG=1 in 2 s")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), WATCHDOG_USEC / 1e6,
                        f"{name}: a watchdog gap of {max(gaps):.3f} s reaches WatchdogSec")
        rc = proc.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, f"{name} exit status {rc}: {proc.output()}")
        stopping = wait_for(f"{name} STOPPING=1", lambda: listener.messages("STOPPING=1"), 5)
        self.assertEqual(len(stopping), 1, f"{name} sent no STOPPING=1: {listener.got}")
        print(f"ok: {name}: {msg!r}, {len(pings)} WATCHDOG=1 in 2 s (largest gap "
              f"{max(gaps) * 1000:.0f} ms), STOPPING=1 on SIGTERM")

    def test_collector_and_agent_notify(self) -> None:
        c = self.cluster
        lsock = Listener(os.path.join(c.dir, "notify-collector"))
        self.addCleanup(lsock.close)
        argv = [COLLECTOR, "--data-dir", c.data_dir, "--listen", f"127.0.0.1:{c.ingest_port}",
                "--http", f"127.0.0.1:{c.http_port}", "--token-file", c.token_file]
        c.collector = Proc("collector", argv, c.dir, self.env(lsock.path))

        def collector_answers() -> None:
            self.assertIn("version", str(c.get("/api/v1/status")))
            socket.create_connection(("127.0.0.1", c.ingest_port), timeout=5).close()

        # Keep a second collector for the agent after this one stops.
        self.check_protocol("apm-collector", c.collector, lsock, collector_answers)

        c.collector = Proc("collector2", argv, c.dir)
        wait_for("collector HTTP", lambda: c.get("/api/v1/status") is not None, 15)
        lagent = Listener(os.path.join(c.dir, "notify-agent"))
        self.addCleanup(lagent.close)
        probe_sock = os.path.join(c.dir, "probe.sock")
        agent = Proc("agent", [AGENT, "--collector", f"127.0.0.1:{c.ingest_port}",
                               "--interval", "500ms", "--token-file", c.token_file,
                               "--probe-socket", probe_sock, "--host", "it-host"],
                     c.dir, self.env(lagent.path))
        c.agents.append(agent)
        self.check_protocol("apm-agent", agent, lagent,
                            lambda: self.assertTrue(os.path.exists(probe_sock)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
