"""Starts the real programs for integration tests: collector, agent, apm-cli.

Everything runs on loopback with temporary directories, every child is
stopped at the end, and every wait is bounded in time.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

BUILD = os.environ.get("APM_BUILD_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
SOURCE = os.environ.get("APM_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
COLLECTOR = os.path.join(BUILD, "server", "apm-collector")
AGENT = os.path.join(BUILD, "agent", "apm-agent")
CLI = os.path.join(BUILD, "cli", "apm-cli")
# How ASan, LeakSanitizer, UBSan and TSan begin a report (tests/run.sh's sanitizer builds).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def varint(n: int) -> bytes:
    """A protobuf varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def field_bytes(num: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(num << 3 | 2) + varint(len(data)) + data


def http_request(url: str, method: str, auth: Optional[str] = None,
                 body: Optional[bytes] = None) -> tuple[int, Any]:
    """One HTTP request with an optional Authorization header: (status, JSON answer), errors too."""
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def hello_frame(token: bytes, agent_id: bytes = b"intruder", host: bytes = b"evil-host") -> bytes:
    """A framed Hello (protocol 1) as an agent sends it first (docs/protocol.md)."""
    hello = (varint(1 << 3) + varint(1) + field_bytes(2, agent_id) + field_bytes(3, host)
             + field_bytes(6, token))
    frame = field_bytes(1, hello)
    return struct.pack(">I", len(frame)) + frame


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


class Proc:
    """A child process with its output in a log file, always stopped by stop()."""

    def __init__(self, name: str, argv: list[str], workdir: str, env: Optional[dict] = None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> Optional[int]:
        rc: Optional[int] = self.p.returncode
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                rc = self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
                rc = None
        else:
            rc = self.p.returncode
        self.log.close()
        return rc

    def kill9(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Cluster:
    """One collector and any number of agents in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="apm-it-")
        self.data_dir = os.path.join(self.dir, "data")
        self.ingest_port = free_port()
        self.http_port = free_port()
        self.token_file = os.path.join(self.dir, "token")
        self.collector: Optional[Proc] = None
        self.agents: list[Proc] = []
        self.others: list[Proc] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start_collector(self, *extra: str, env: Optional[dict] = None,
                        wait: bool = True) -> Proc:
        """env: the collector's whole environment (None: ours). wait=False returns at once,
        for a start that may die before it serves HTTP (a crash point, common/base/fault.h)."""
        argv = [COLLECTOR, "--foreground", "--data-dir", self.data_dir,
                "--listen", f"127.0.0.1:{self.ingest_port}",
                "--http", f"127.0.0.1:{self.http_port}",
                "--token-file", self.token_file, *extra]
        self.collector = Proc("collector", argv, self.dir, env)
        if wait:
            wait_for("collector HTTP", lambda: self.get("/api/v1/status") is not None, 15)
        return self.collector

    def start_agent(self, *extra: str, interval: str = "0.5s", name: str = "agent") -> Proc:
        argv = [AGENT, "--collector", f"127.0.0.1:{self.ingest_port}", "--interval", interval,
                "--token-file", self.token_file, "--host", "it-host", *extra]
        a = Proc(name, argv, self.dir)
        self.agents.append(a)
        return a

    def spawn(self, name: str, argv: list[str], env: Optional[dict] = None) -> Proc:
        p = Proc(name, argv, self.dir, env)
        self.others.append(p)
        return p

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([CLI, "--server", self.url, *args], capture_output=True, text=True,
                           timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"apm-cli {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli("--json", *args).stdout)

    def close(self) -> None:
        for p in self.others + self.agents:
            p.stop()
        if self.collector is not None:
            self.collector.stop()

    def cleanup(self) -> None:
        """Removes the directory; then fails if a sanitizer spoke in one of our programs' logs.

        In the sanitizer builds a report may come at any time, at exit too (a leak, a race
        while stopping), when no request would notice; so every log is read at the end.
        """
        reports = self.sanitizer_reports()
        shutil.rmtree(self.dir, ignore_errors=True)
        if reports:
            raise AssertionError("a sanitizer reported in " + "\n".join(reports))

    def sanitizer_reports(self) -> list[str]:
        found = []
        for p in [self.collector] + self.agents:
            if p is None:
                continue
            text = p.output()
            at = min((i for i in (text.find(m) for m in SANITIZER_MARKS) if i >= 0), default=-1)
            if at >= 0:
                found.append(f"{p.name} ({p.log_path}):\n{text[at:at + 6000]}")
        return found

    def dump_logs(self) -> None:
        for p in [self.collector] + self.agents + self.others:
            if p is not None:
                sys.stderr.write(f"----- {p.name} log -----\n{p.output()[-6000:]}\n")
