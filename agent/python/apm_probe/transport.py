"""Unix stream socket to the agent: JSON lines out, control lines in.

Used by the probe thread only. Nothing here blocks: the socket is non-blocking and the one
wait is a select() bounded by the caller's timeout, which also watches a wake-up pipe so
stop() is immediate. Lines wait in a queue bounded in bytes; when it is full the oldest
lines go first and are counted. A lost connection is retried with exponential backoff;
every new connection starts with a fresh hello line.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional

from . import wire

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_RECV_CHUNK = 65536
# A connection that dies younger than this does not reset the backoff, so an agent that
# accepts and at once hangs up is not hammered.
_STABLE_AFTER_S = 2.0
_BACKOFF_MIN_S = 0.05


class Transport:
    """The probe's connection. Not thread-safe: only the probe thread calls it."""

    def __init__(
        self,
        path: str,
        buffer_bytes: int,
        reconnect_max: float,
        hello: Callable[[], bytes],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._buffer_bytes = buffer_bytes
        self._reconnect_max = reconnect_max
        self._hello = hello
        self._clock = clock
        self._sock: Optional[socket.socket] = None
        self._queue: Deque[bytes] = deque()
        self._queued = 0
        self._out = memoryview(b"")
        self._out_started = False
        self._rbuf = bytearray()
        self._discarding = False
        self._backoff = _BACKOFF_MIN_S
        self._next_attempt = 0.0
        self._connected_at = 0.0
        # wake() runs on other threads; the lock keeps it from writing to a closed (and
        # perhaps reused) descriptor.
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sent = 0
        self.dropped = 0
        self.send_failures = 0
        self.connects = 0
        self.connect_failures = 0
        self.oversized_input = 0
        self.last_error: Optional[str] = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def buffered(self) -> int:
        return len(self._queue) + (1 if len(self._out) else 0)

    def enqueue(self, line: bytes) -> None:
        """Queue one encoded line; drops the oldest queued lines if over the byte bound."""
        self._queue.append(line)
        self._queued += len(line)
        while self._queued > self._buffer_bytes and len(self._queue) > 1:
            self._queued -= len(self._queue.popleft())
            self.dropped += 1

    def wake(self) -> None:
        """Interrupt pump()'s wait; safe from any thread."""
        with self._wake_lock:
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def pump(self, timeout: float) -> List[bytes]:
        """Connect if due, write what the socket takes, wait up to `timeout` seconds for
        input or room, and return the complete lines received (newline stripped)."""
        now = self._clock()
        if self._sock is None and now >= self._next_attempt:
            self._connect(now)
        if self._sock is not None:
            self._write()
        if self._sock is None:
            timeout = min(timeout, max(0.0, self._next_attempt - now))
        rlist = [self._wake_r]
        wlist = []
        if self._sock is not None:
            rlist.append(self._sock)
            if len(self._out) or self._queue:
                wlist.append(self._sock)
        try:
            readable, writable, _ = select.select(rlist, wlist, [], max(0.0, timeout))
        except (OSError, ValueError) as exc:
            self._fail(f"select: {exc}")
            return []
        if self._wake_r in readable:
            self._drain_wake()
        lines: List[bytes] = []
        if self._sock is not None and self._sock in readable:
            lines = self._read()
        if self._sock is not None and writable:
            self._write()
        return lines

    def flush(self, deadline: float) -> None:
        """Try to send everything queued until `deadline` (monotonic); used at shutdown."""
        while (len(self._out) or self._queue) and self._clock() < deadline:
            if self._sock is None and self._clock() < self._next_attempt:
                return
            self.pump(max(0.0, min(0.05, deadline - self._clock())))

    def close(self) -> None:
        """Close the socket and the wake-up pipe; the transport is unusable afterwards."""
        self._disconnect()
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._wake_r = self._wake_w = -1

    def close_after_fork(self) -> None:
        """In a forked child: close this process's copies of the descriptors without
        taking any lock (a lock may have been held by a thread that no longer exists)."""
        fds = [self._wake_r, self._wake_w]
        if self._sock is not None:
            fds.append(self._sock.detach())
            self._sock = None
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1

    def _connect(self, now: float) -> None:
        sock = None
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect(self._path)
        except (OSError, ValueError, TypeError) as exc:
            if sock is not None:
                sock.close()
            self.connect_failures += 1
            self.last_error = f"connect {self._path}: {exc}"
            self._schedule_retry(now)
            return
        self._sock = sock
        self._connected_at = now
        self.connects += 1
        self._rbuf.clear()
        self._discarding = False
        if self._out_started and len(self._out):
            # The agent saw the start of this line on the old connection; its end is useless.
            self.dropped += 1
            self._out = memoryview(b"")
        try:
            hello = self._hello()
        except Exception as exc:
            self.last_error = f"hello: {exc!r}"
            self._disconnect()
            self._schedule_retry(now)
            return
        if len(self._out):
            self._queue.appendleft(self._out.tobytes())
            self._queued += len(self._out)
        self._out = memoryview(hello)
        self._out_started = False

    def _schedule_retry(self, now: float) -> None:
        jitter = random.uniform(0.8, 1.2)
        self._next_attempt = now + self._backoff * jitter
        self._backoff = min(self._backoff * 2.0, self._reconnect_max)

    def _write(self) -> None:
        assert self._sock is not None
        while True:
            if not len(self._out):
                if not self._queue:
                    return
                line = self._queue.popleft()
                self._queued -= len(line)
                self._out = memoryview(line)
                self._out_started = False
            try:
                n = self._sock.send(self._out, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fail(f"send: {exc}")
                return
            self._out_started = True
            self._out = self._out[n:]
            if not len(self._out):
                self.sent += 1

    def _read(self) -> List[bytes]:
        assert self._sock is not None
        try:
            data = self._sock.recv(_RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            self._fail(f"recv: {exc}")
            return []
        if not data:
            self._fail("agent closed the connection")
            return []
        lines: List[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            elif len(self._rbuf) + end - start > wire.MAX_CONTROL_BYTES:
                self.oversized_input += 1
            else:
                self._rbuf += data[start:end]
                lines.append(bytes(self._rbuf))
            self._rbuf.clear()
            start = end + 1
        if not self._discarding:
            self._rbuf += data[start:]
            if len(self._rbuf) > wire.MAX_CONTROL_BYTES:
                # Skip to the next newline rather than hold an unbounded line.
                self.oversized_input += 1
                self._rbuf.clear()
                self._discarding = True
        return lines

    def _fail(self, reason: str) -> None:
        self.send_failures += 1
        self.last_error = reason
        now = self._clock()
        if now - self._connected_at >= _STABLE_AFTER_S:
            self._backoff = _BACKOFF_MIN_S
        self._disconnect()
        self._schedule_retry(now)

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
