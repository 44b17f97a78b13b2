"""A fake apm-agent for the probe tests: a Unix socket server in a temporary directory
that records every line each probe sends and checks it against docs/probe-protocol.md."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

MAX_LINE_BYTES = 1 << 20
INT64 = 1 << 63


class ProtocolViolation(AssertionError):
    pass


def _check(cond: bool, line: Dict[str, Any], why: str) -> None:
    if not cond:
        raise ProtocolViolation(f"{why}: {json.dumps(line)[:400]}")


def _is_int(v: Any, lo: int = 0, hi: int = INT64 - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v: Any, lo: float = 0.0) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= lo


def _is_str(v: Any, limit: int) -> bool:
    return isinstance(v, str) and len(v) <= limit


def validate(line: Dict[str, Any]) -> None:
    """Check one decoded line the way the agent must; raises ProtocolViolation."""
    _check(isinstance(line, dict), line, "not an object")
    kind = line.get("type")
    _check(_is_num(line.get("t")), line, "t")
    if kind == "hello":
        _check(line["protocol"] == 1, line, "protocol")
        _check(_is_int(line["pid"], 1) and _is_int(line["ppid"]), line, "pid")
        for key, limit in (("probe_version", 32), ("python", 32), ("implementation", 32), ("name", 256)):
            _check(_is_str(line[key], limit), line, key)
        _check(isinstance(line["argv"], list) and len(line["argv"]) <= 32, line, "argv")
        _check(all(_is_str(a, 512) for a in line["argv"]), line, "argv items")
        _check(_is_int(line["argc"]), line, "argc")
        _check(line["mode"] in ("sampled", "on-demand", "always", "off"), line, "mode")
        _check(line["key_type"] in ("lineno", "traceback"), line, "key_type")
        _check(_is_num(line["interval_s"]) and _is_num(line["trace_window_s"]), line, "durations")
        _check(_is_int(line["top_n"], 1, 500) and _is_int(line["frames"], 1, 100), line, "top_n/frames")
        _check(_is_int(line["max_memory"], 1), line, "max_memory")
        _check(isinstance(line["tracing"], bool), line, "tracing")
    elif kind == "gc":
        _check(isinstance(line["count"], list) and 1 <= len(line["count"]) <= 4, line, "count")
        _check(all(_is_int(c) for c in line["count"]), line, "count items")
        _check(isinstance(line["stats"], list) and 1 <= len(line["stats"]) <= 4, line, "stats")
        for s in line["stats"]:
            _check(set(s) == {"collections", "collected", "uncollectable"}, line, "stats keys")
            _check(all(_is_int(v) for v in s.values()), line, "stats values")
        _check(_is_int(line["garbage"]), line, "garbage")
    elif kind == "diff":
        _check(_is_int(line["seq"], 1) and _is_int(line["session"], 1), line, "seq/session")
        _check(line["key_type"] in ("lineno", "traceback"), line, "key_type")
        _check(_is_int(line["frames"], 1, 65535), line, "frames")
        for key in ("traced_current", "traced_peak", "tracemalloc_memory", "total_size",
                    "total_count", "groups", "truncated"):
            _check(_is_int(line[key]), line, key)
        for key in ("total_size_diff", "total_count_diff"):
            _check(_is_int(line[key], -INT64 + 1), line, key)
        _check(_is_num(line["interval_s"]) and _is_num(line["cost_s"]), line, "interval/cost")
        _check(isinstance(line["top"], list) and len(line["top"]) <= 500, line, "top")
        _check(line.get("source", "tracemalloc") in ("tracemalloc", "sampled"), line, "source")
        sampled = line.get("source") == "sampled"
        _check(sampled == ("sample_bytes" in line) == ("samples" in line), line, "sampled fields")
        if sampled:
            _check(_is_int(line["sample_bytes"], 1) and _is_int(line["samples"]), line, "rate")
        for e in line["top"]:
            _check(sampled == ("size_err" in e) == ("growth_var" in e), line, "site errors")
            if sampled:
                _check(_is_int(e["size_err"]) and _is_int(e["growth_var"]), line, "site errors")
            _check(_is_str(e["file"], 512) and _is_int(e["line"]), line, "site file/line")
            _check(_is_int(e["size"]) and _is_int(e["count"]), line, "site size/count")
            _check(_is_int(e["size_diff"], -INT64 + 1) and _is_int(e["count_diff"], -INT64 + 1), line, "diffs")
            if line["key_type"] == "traceback":
                tb = e["traceback"]
                _check(isinstance(tb, list) and 1 <= len(tb) <= 65535, line, "traceback")
                _check(all(_is_str(f, 512) and _is_int(n) for f, n in tb), line, "frames")
                _check(tb[-1] == [e["file"], e["line"]], line, "site is the last frame")
            else:
                _check("traceback" not in e, line, "traceback with lineno")
    elif kind == "trace_state":
        _check(line["state"] in ("started", "extended", "stopped"), line, "state")
        reasons = {
            "started": {"control", "mode_always", "mode_sampled", "fork"},
            "extended": {"control", "window"},
            "stopped": {"control", "window", "memory_cap", "shutdown", "external"},
        }[line["state"]]
        _check(line["reason"] in reasons, line, "reason")
        _check(_is_int(line["session"], 1) and _is_int(line["frames"], 1), line, "session/frames")
        _check(line["window_s"] is None or _is_num(line["window_s"]), line, "window_s")
        _check(_is_int(line["max_memory"], 1), line, "max_memory")
        _check("sample_bytes" not in line or _is_int(line["sample_bytes"], 1), line, "sample_bytes")
    elif kind == "stats":
        for key in ("sent", "dropped", "buffered", "errors", "send_failures", "connects",
                    "connect_failures", "bad_control", "snapshots", "budget_skips"):
            _check(_is_int(line[key]), line, key)
        _check(_is_num(line["cpu_s"]), line, "cpu_s")
        _check(line["last_error"] is None or _is_str(line["last_error"], 256), line, "last_error")
    elif kind == "objects":
        _check(_is_int(line["total"]) and _is_num(line["cost_s"]), line, "total/cost")
        _check(_is_int(line["truncated"]), line, "truncated")
        for e in line["types"]:
            _check(_is_str(e["type"], 256) and _is_int(e["count"]), line, "type entry")
            _check(_is_int(e["count_diff"], -INT64 + 1), line, "count_diff")
    elif kind == "control_error":
        _check(_is_str(line["error"], 256), line, "error")
    else:
        raise ProtocolViolation(f"unknown type {kind!r}")


class Connection:
    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock = sock
        self.index = index
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.peer_pid = struct.unpack("3i", creds)[0]


class FakeAgent:
    """Listens on <tempdir>/probe.sock; every received line becomes a dict with
    "_conn" (connection index) and "_peer_pid" (from SO_PEERCRED) added."""

    def __init__(self, path: Optional[str] = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="apm-probe-test-")
        self.path = path or os.path.join(self._dir.name, "probe.sock")
        self.lines: List[Dict[str, Any]] = []
        self.violations: List[str] = []
        self.connections: List[Connection] = []
        self._cond = threading.Condition()
        self._server: Optional[socket.socket] = None
        self.listen()

    def listen(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                sock, _ = server.accept()
            except OSError:
                return
            with self._cond:
                conn = Connection(sock, len(self.connections))
                self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: Connection) -> None:
        buf = b""
        while True:
            try:
                data = conn.sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._record(conn, raw)

    def _record(self, conn: Connection, raw: bytes) -> None:
        try:
            if len(raw) + 1 > MAX_LINE_BYTES:
                raise ProtocolViolation(f"line of {len(raw) + 1} bytes")
            raw.decode("ascii")
            line = json.loads(raw)
            validate(line)
        except (ProtocolViolation, ValueError, KeyError, TypeError) as exc:
            with self._cond:
                self.violations.append(f"{exc!r}: {raw[:300]!r}")
                self._cond.notify_all()
            return
        line["_conn"] = conn.index
        line["_peer_pid"] = conn.peer_pid
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[List[Dict[str, Any]]], Any], timeout: float = 5.0) -> Any:
        """Wait until pred(lines) is truthy and return its value; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred(list(self.lines))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [l["type"] for l in self.lines][-30:]
                    raise AssertionError(f"timed out; last lines: {kinds}; violations: {self.violations[:3]}")
                self._cond.wait(min(left, 0.05))

    def of_type(self, kind: str, **match: Any) -> List[Dict[str, Any]]:
        with self._cond:
            return [l for l in self.lines
                    if l["type"] == kind and all(l.get(k) == v for k, v in match.items())]

    def send(self, obj: Any, conn: int = -1) -> None:
        data = obj if isinstance(obj, bytes) else (json.dumps(obj) + "\n").encode()
        self.connections[conn].sock.sendall(data)

    def stop_listening(self, drop_connections: bool = True) -> None:
        """The agent goes away: no listener, and (by default) every connection closed."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if os.path.exists(self.path):
            os.unlink(self.path)
        if drop_connections:
            for conn in self.connections:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.sock.close()

    def close(self) -> None:
        self.stop_listening()
        self._dir.cleanup()


def kinds(lines: List[Dict[str, Any]]) -> List[str]:
    return [l["type"] for l in lines]
