"""A raw agent for integration tests: frames of proto/apm.proto written by hand.

Our own encoder only ever sends clean, well-formed data; a test that plays a hostile or
careless peer needs to send what a real agent never would (bytes that are not UTF-8,
control characters, more processes than a limit allows). Only the fields the tests use are
here; field numbers follow proto/apm.proto.
"""
from __future__ import annotations

import socket
import struct
from typing import Iterable, Optional


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def f_varint(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v) if v else b""


def f_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_packed_sint(num: int, values: Iterable[int]) -> bytes:
    return f_bytes(num, b"".join(varint(zigzag(v)) for v in values))


def framed(frame_body: bytes) -> bytes:
    return struct.pack(">I", len(frame_body)) + frame_body


def hello(token: bytes, agent_id: bytes, host: bytes, instance: int = 1) -> bytes:
    h = (f_varint(1, 1) + f_bytes(2, agent_id) + f_bytes(3, host) + f_bytes(4, b"boot")
         + f_bytes(5, b"raw-0.1") + f_bytes(6, token) + f_varint(7, instance))
    return framed(f_bytes(1, h))


def process_def(ref: int, pid: int, start_ms: int, name: int, cmdline: int = 0,
                cgroup: int = 0) -> bytes:
    return (f_varint(1, ref) + f_varint(2, pid) + f_varint(3, 1) + f_varint(4, start_ms)
            + f_varint(5, name) + f_varint(6, cmdline) + f_varint(7, cgroup))


def series_def(ref: int, process: int, metric: int) -> bytes:
    return f_varint(1, ref) + f_varint(2, process) + f_varint(3, metric)


def samples(series: int, t_deltas: list[int], v_deltas: list[int]) -> bytes:
    return f_varint(1, series) + f_packed_sint(2, t_deltas) + f_packed_sint(3, v_deltas)


def site_def(ref: int, file: int, line: int) -> bytes:
    return f_varint(1, ref) + f_varint(2, file) + f_varint(3, line)


def trace_diff(process: int, t_ms: int, probe_seq: int, top: list[tuple[int, int, int]]) -> bytes:
    """top: (site ref, size, size_diff) in compare_to order."""
    stats = b"".join(f_bytes(11, f_varint(1, s) + f_varint(2, size) + f_varint(3, diff)
                             + f_varint(4, 1) + f_varint(5, 1)) for s, size, diff in top)
    total = sum(size for _, size, _ in top)
    return (f_varint(1, process) + f_varint(2, t_ms) + f_varint(3, probe_seq)
            + f_bytes(4, b"lineno") + f_varint(5, 1) + f_varint(6, total) + f_varint(7, total)
            + f_varint(9, total) + f_varint(10, len(top)) + stats + f_varint(12, 1)
            + f_varint(13, 60000) + f_varint(16, len(top)))


def batch(seq: int, base_ms: int, strings: list[bytes] = (), processes: list[bytes] = (),
          series: list[bytes] = (), sample_msgs: list[bytes] = (), sites: list[bytes] = (),
          diffs: list[bytes] = ()) -> bytes:
    b = f_varint(1, seq) + f_varint(2, base_ms)
    b += b"".join(f_bytes(3, s) for s in strings)
    b += b"".join(f_bytes(4, p) for p in processes)
    b += b"".join(f_bytes(5, s) for s in series)
    b += b"".join(f_bytes(6, s) for s in sample_msgs)
    b += b"".join(f_bytes(7, s) for s in sites)
    b += b"".join(f_bytes(8, d) for d in diffs)
    return framed(f_bytes(3, b))


def parse_fields(data: bytes) -> dict[int, list]:
    """Decodes one message's fields: varints as ints, length-delimited as bytes."""
    out: dict[int, list] = {}
    i = 0

    def rd_varint() -> int:
        nonlocal i
        shift = v = 0
        while True:
            b = data[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    while i < len(data):
        key = rd_varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.setdefault(num, []).append(rd_varint())
        elif wt == 2:
            n = rd_varint()
            out.setdefault(num, []).append(data[i:i + n])
            i += n
        else:
            raise ValueError(f"wire type {wt} not expected")
    return out


class RawAgent:
    """One connection that speaks the protocol by hand. Replies: (kind, fields)."""

    KINDS = {2: "hello_ack", 4: "ack", 5: "error", 6: "control"}

    def __init__(self, port: int, token: bytes, agent_id: bytes, host: bytes, instance: int = 1):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.sock.sendall(hello(token, agent_id, host, instance))
        kind, fields = self.recv()
        if kind != "hello_ack":
            raise AssertionError(f"expected a HelloAck, got {kind} {fields}")

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def recv(self, timeout: float = 10.0) -> tuple[Optional[str], dict]:
        """The next frame from the collector, or (None, {}) when it closed the connection."""
        self.sock.settimeout(timeout)
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None, {}
            self.buf += chunk
        n = struct.unpack(">I", self.buf[:4])[0]
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        frame = parse_fields(body)
        num = next(iter(frame))
        return self.KINDS.get(num, str(num)), parse_fields(frame[num][0])

    def wait_ack(self, seq: int) -> None:
        while True:
            kind, f = self.recv()
            if kind == "ack" and f.get(1, [0])[0] >= seq:
                return
            if kind in ("error", None):
                raise AssertionError(f"expected ack {seq}, got {kind} {f}")

    def close(self) -> None:
        self.sock.close()
