"""The fault matrix's checker and its loopback proxy.

`check(cluster, host, truth_path)` compares the ground-truth log of tests/fault/fault_agent.c
(what it produced, under which instance and seq, and what the collector acked) with what the
store answers through the HTTP API:
- every acked sample is stored exactly once, with its value;
- an unacked one (sent or not when a fault struck) is stored at most once;
- nothing is stored that the agent never produced.

`Proxy` is a small TCP proxy on loopback for network faults without tc netem: it forwards, delays
every chunk, blackholes (reads and discards both ways) or cuts every connection.
"""
from __future__ import annotations

import collections
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Truth:
    samples: dict = field(default_factory=dict)  # (pid, t_ms) -> (instance, seq, value)
    acked: dict = field(default_factory=dict)    # (instance, lease) -> highest acked seq
    runs: int = 0

    def is_acked(self, instance: str, seq: int) -> bool:
        return seq <= self.acked.get((instance, lease(seq)), 0)


def lease(seq: int) -> int:
    """Which run's lease a seq is from: each run of a spooling agent numbers its batches from
    a lease of its own (agent/spool.h, APM_SPOOL_LEASE), and acks are in order within one.
    A later run's ack says nothing of an earlier run's batch that never reached the spool
    (kill -9 before the write): that one is lost, not acked."""
    return (seq - 1) >> 32


def read_truth(path: str) -> Truth:
    t = Truth()
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or (p[0] == "S" and len(p) != 6) or (p[0] == "A" and len(p) != 3):
                continue  # a line torn by kill -9 says nothing
            if p[0] == "R":
                t.runs += 1
            elif p[0] == "S":
                t.samples[(int(p[3]), int(p[4]))] = (p[1], int(p[2]), int(p[5]))
            elif p[0] == "A":
                key = (p[1], lease(int(p[2])))
                t.acked[key] = max(t.acked.get(key, 0), int(p[2]))
    return t


@dataclass
class Result:
    produced: int = 0
    acked: int = 0
    acked_lost: int = 0
    duplicated: int = 0       # stored more than once (acked or not)
    unacked: int = 0
    unacked_stored: int = 0
    phantom: int = 0          # stored, never produced, or with another value
    examples: list = field(default_factory=list)

    def ok(self) -> bool:
        return self.acked_lost == 0 and self.duplicated == 0 and self.phantom == 0

    def __str__(self) -> str:
        return (f"produced {self.produced}, acked {self.acked}, acked lost {self.acked_lost}, "
                f"duplicated {self.duplicated}, unacked {self.unacked} (stored "
                f"{self.unacked_stored}), phantom {self.phantom}"
                + (f"; e.g. {self.examples[:5]}" if self.examples else ""))


def stored(cluster: Any, host: str) -> collections.Counter:
    """(pid, t_ms, value) -> how many times the store holds it, for the host's rss series."""
    out: collections.Counter = collections.Counter()
    doc = cluster.get(f"/api/v1/series?host={host}&metric=rss&limit=100000")
    for s in doc["series"]:
        rows = cluster.get(f"/api/v1/series/{s['id']}/samples?limit=100000")["samples"]
        for t, v in rows:
            out[(s["pid"], round(t * 1000), int(v))] += 1
    return out


def check(cluster: Any, host: str, truth_path: str) -> Result:
    truth = read_truth(truth_path)
    have = stored(cluster, host)
    r = Result(produced=len(truth.samples))
    seen = set()
    for (pid, t), (inst, seq, value) in truth.samples.items():
        n = have.get((pid, t, value), 0)
        seen.add((pid, t, value))
        if truth.is_acked(inst, seq):
            r.acked += 1
            if n == 0:
                r.acked_lost += 1
                r.examples.append(("lost", pid, t, seq))
        else:
            r.unacked += 1
            r.unacked_stored += n > 0
        if n > 1:
            r.duplicated += 1
            r.examples.append(("duplicate", pid, t, n))
    for key, n in have.items():
        if key not in seen:
            r.phantom += n
            r.examples.append(("phantom",) + key)
    return r


class Proxy:
    """Forwards 127.0.0.1:port to target; mode is 'pass', 'delay', 'blackhole'; cut() resets."""

    def __init__(self, target_port: int, delay_s: float = 0.2) -> None:
        self.target = ("127.0.0.1", target_port)
        self.delay_s = delay_s
        self.mode = "pass"
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.refuse = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.refuse:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.mode == "blackhole":
                    continue
                if self.mode == "delay":
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Cuts every open connection; returns how many sockets it shut.

        shutdown() first: a plain close() would not wake the pump blocked in recv() on it."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(conns)

    def close(self) -> None:
        self.closed = True
        self.lsock.close()
        self.cut()


def wait_acked(truth_path: str, timeout: float) -> bool:
    """Waits until the newest batch logged so far is acked (the agent must be running)."""
    # The newest run's lease is what must be acked through: an earlier run's batches are
    # acked as they replay, or were lost with a kill -9 before they reached the spool.
    want: dict = {}
    for inst, seq, _ in read_truth(truth_path).samples.values():
        key = (inst, lease(seq))
        if seq > want.get(inst, (None, 0))[1]:
            want[inst] = (key, seq)
    end = time.time() + timeout
    while time.time() < end:
        t = read_truth(truth_path)
        if all(t.acked.get(key, 0) >= s for key, s in want.values()):
            return True
        time.sleep(0.2)
    return False
