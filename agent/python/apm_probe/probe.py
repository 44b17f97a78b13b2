"""The probe thread: gc statistics every interval, tracemalloc diffs while tracing,
control commands from the agent.

A trace request (a control line from the agent, sent when the collector suspects a leak
or an operator runs `apm-cli trace`) takes its first snapshot at once and diffs against
it FOLLOW_UPS times, FOLLOW_UP_S apart, before the diffs fall back to the regular
interval: the collector gets the growing sites within seconds, not an interval later.

The application only ever calls start(), stop() and stats() from its own threads; all
other work happens on one daemon thread that owns the transport, the differ and the
tracing state. Every step of that thread is guarded: a failure is counted, logged at a
limited rate, and the loop goes on. The thread waits in select() (without the GIL), so an
idle probe costs one wake-up per interval.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from dataclasses import asdict
from typing import Any, Callable, Dict, Optional, TypeVar

from . import gcstats, identity, sampling, wire
from .budget import Budget
from .config import MAX_WINDOW_S, Settings
from .log import RateLimitedLog
from .snapshot import Differ, Result, frames_of
from .transport import Transport
from .version import VERSION

# While tracing, tracemalloc's own memory is checked against the cap this often.
CAP_CHECK_S = 1.0
# At shutdown, queued lines get this long to leave.
FLUSH_AT_STOP_S = 0.2
# After a trace request, this many diffs come this far apart (or at the interval if it
# is shorter): three diffs give each site four points, enough to see it grow in a line.
FOLLOW_UPS = 3
FOLLOW_UP_S = 3.0

# Called on the probe thread after each diff: (seq, previous snapshot, new snapshot).
SnapshotHook = Callable[[int, tracemalloc.Snapshot, tracemalloc.Snapshot], None]
T = TypeVar("T")


class _Inherited:
    """Tracing state a forked child takes over from its parent."""

    def __init__(self, tracing: bool, we_started: bool, deadline: Optional[float], cap: int) -> None:
        self.tracing = tracing
        self.we_started = we_started
        self.deadline = deadline
        self.cap = cap


class Probe:
    def __init__(
        self,
        settings: Settings,
        snapshot_hook: Optional[SnapshotHook] = None,
        clock: Callable[[], float] = time.monotonic,
        inherited: Optional[_Inherited] = None,
    ) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._clock = clock
        self._hook = snapshot_hook
        self._inherited = inherited
        self._log = RateLimitedLog()
        self._transport = Transport(
            settings.socket, settings.buffer_bytes, settings.reconnect_max, self._hello, clock
        )
        self._differ = Differ(settings.key_type, settings.top_n, keep_snapshots=snapshot_hook is not None)
        self._snapshot_budget = Budget(settings.snapshot_budget)
        self._object_budget = Budget(settings.snapshot_budget)
        self._objects = gcstats.ObjectCounter(settings.top_n) if settings.object_counts else None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self._started_tracemalloc = False
        # Tracing state, owned by the probe thread.
        self._tracing = False
        self._we_started = False
        self._session = 0
        self._deadline: Optional[float] = None
        self._cap = settings.max_memory
        self._previous_snapshot: Optional[tracemalloc.Snapshot] = None
        self._last_snapshot_at = 0.0
        self._last_snapshot_t = 0.0  # its wall-clock time, the t its diff would carry
        self._follow_ups = 0  # quick diffs still owed to the last trace request
        self._seq = 0
        # Sampled mode: the sampler (None where it did not start: mode falls back to
        # on-demand), its differ, and the end of a raised-rate window.
        self.mode = settings.mode
        self._sampler: Optional[sampling.Sampler] = None
        self._sampled = sampling.SampleDiffer(settings.key_type, settings.top_n)
        self._sampled_session = 0
        self._rate_deadline: Optional[float] = None
        self._last_sample_at = 0.0
        self._last_sample_t = 0.0
        self.sampler_error: Optional[str] = None
        # Counters.
        self.errors = 0
        self.bad_control = 0
        self.snapshots = 0
        self.last_error: Optional[str] = None

    # --- Called from application threads --------------------------------------------

    def start(self) -> None:
        """Start the thread. In "always" mode tracing starts here, and in "sampled" mode the
        sampler's hooks are installed here, before returning, so the application's first
        allocations are seen."""
        if self.settings.mode == "sampled":
            self._start_sampler()
        if self.settings.mode == "always" and self._inherited is None and not tracemalloc.is_tracing():
            tracemalloc.start(self.settings.frames)
            self._started_tracemalloc = True
        self._thread = threading.Thread(target=self._run, name="apm-probe", daemon=True)
        self._thread.start()

    def _start_sampler(self) -> None:
        settings = self.settings
        if not sampling.available():
            self.sampler_error = f"_sampler unavailable ({sampling.IMPORT_ERROR})"
        else:
            try:
                sampler = sampling.Sampler(settings.sample_bytes, settings.frames)
                sampler.start()
                self._sampler = sampler
            except Exception as exc:
                self.sampler_error = f"_sampler did not start: {type(exc).__name__}: {exc}"
        if self._sampler is None:
            # The documented fallback: tracemalloc when asked, as in on-demand mode.
            self.mode = "on-demand"
            self._log.warn("sampler", f"{self.sampler_error}; falling back to on-demand tracemalloc")

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to finish (stopping tracing it started) and wait up to `timeout`."""
        self._stopping = True
        self._transport.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def stats(self) -> Dict[str, Any]:
        counters = self._counters()
        counters.update(
            pid=self.pid,
            running=self.alive,
            mode=self.mode,
            tracing=self._tracing,
            sampler=self._sampler.stats() if self._sampler is not None else None,
            sampler_error=self.sampler_error,
            session=self._session,
            seq=self._seq,
            connected=self._transport.connected,
            log_suppressed=self._log.suppressed,
            last_error=self.last_error or self._transport.last_error,
            cpu_s=self._thread_cpu(),
        )
        return counters

    def _thread_cpu(self) -> Optional[float]:
        # CPU seconds of the probe thread, where the platform can tell.
        thread = self._thread
        try:
            if thread is None or thread.ident is None or not thread.is_alive():
                return None
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (AttributeError, OSError):
            return None

    def forked(self) -> "Probe":
        """In a freshly forked child: a new probe for this process that keeps the
        parent's tracing state but nothing else. The parent's socket and pipe are closed
        here (the parent keeps its own copies); its thread does not exist in the child."""
        deadline = self._deadline if self._tracing else None
        inherited = _Inherited(
            self._tracing and tracemalloc.is_tracing(),
            self._we_started or self._started_tracemalloc,
            deadline,
            self._cap,
        )
        self._transport.close_after_fork()
        child = Probe(self.settings, self._hook, self._clock, inherited)
        child.start()
        return child

    # --- The probe thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # The thread must end quietly whatever happens.
            self._failed("loop", exc)
        finally:
            self._guard("shutdown", self._shutdown)

    def _loop(self) -> None:
        settings = self.settings
        now = self._clock()
        inherited = self._inherited
        if inherited is not None and inherited.tracing:
            self._we_started = inherited.we_started
            window = None if inherited.deadline is None else max(0.0, inherited.deadline - now)
            self._guard("begin", self._begin, now, "fork", window, inherited.cap, True)
        elif settings.mode == "always":
            self._we_started = self._started_tracemalloc
            self._guard("begin", self._begin, now, "mode_always", None, settings.max_memory, True)
        if self._sampler is not None:
            self._guard("begin", self._begin_sampled, now)
        next_tick = now
        while not self._stopping:
            now = self._clock()
            self._guard("check", self._check_tracing, now)
            if now >= next_tick:
                self._guard("tick", self._tick, now)
                next_tick += settings.interval
                if next_tick <= now:
                    next_tick = now + settings.interval
            self._guard("follow_up", self._follow_up, self._clock())
            wait = next_tick - self._clock()
            if self._rate_deadline is not None:
                wait = min(wait, self._rate_deadline - now)
            if self._tracing or self._sampling():
                follow_up = self._follow_up_at()
                if follow_up is not None:
                    wait = min(wait, follow_up - self._clock())
            if self._tracing:
                wait = min(wait, CAP_CHECK_S)
                if self._deadline is not None:
                    wait = min(wait, self._deadline - now)
            lines = self._guard("pump", self._transport.pump, max(0.0, wait))
            if lines is None:
                time.sleep(min(1.0, settings.interval))
                continue
            for line in lines:
                self._guard("control", self._control, line)

    def _shutdown(self) -> None:
        try:
            if self._tracing:
                self._end(self._clock(), "shutdown")
            if self._sampler is not None:
                self._sampler.stop()
            self._transport.flush(self._clock() + FLUSH_AT_STOP_S)
        finally:
            self._transport.close()

    def _tick(self, now: float) -> None:
        t = time.time()
        count, stats, garbage = gcstats.read()
        self._send(wire.gc_line(t, count, stats, garbage))
        if self._objects is not None and self._object_budget.allows(now):
            total, rows, cost = self._objects.sample()
            self._object_budget.spent(self._clock(), cost)
            self._send(wire.objects_line(t, total, rows, cost))
        # A diff needs some time since the previous snapshot to mean anything; a trace
        # that began just before this tick waits for the next one.
        due = now - self._last_snapshot_at >= 0.5 * self.settings.interval
        if self._tracing and self._differ.has_baseline and due and self._snapshot_budget.allows(now):
            self._diff(now, t)
        sample_due = now - self._last_sample_at >= 0.5 * self.settings.interval
        if self._sampling() and sample_due and self._snapshot_budget.allows(now):
            self._diff_sampled(now, t)
        counters: Dict[str, Any] = self._counters()
        counters["cpu_s"] = time.thread_time()
        self._send(wire.stats_line(t, counters, self.last_error or self._transport.last_error))

    def _sampling(self) -> bool:
        """Whether sampled diffs are sent now: the sampler runs and no exact trace does."""
        return self._sampler is not None and not self._tracing and self._sampled.has_baseline

    def _follow_up_at(self) -> Optional[float]:
        """When the next quick diff after a trace request is due (within the snapshot
        budget), or None when none is owed."""
        if self._follow_ups <= 0:
            return None
        gap = min(FOLLOW_UP_S, self.settings.interval)
        if self._tracing and self._differ.has_baseline:
            last = self._last_snapshot_at
        elif self._sampling():
            last = self._last_sample_at
        else:
            return None
        return max(last + gap, self._snapshot_budget.next_at)

    def _follow_up(self, now: float) -> None:
        due = self._follow_up_at()
        if due is None or now < due:
            return
        self._follow_ups -= 1
        if self._tracing:
            self._diff(now, time.time())
        else:
            self._diff_sampled(now, time.time())

    # --- Sampled mode -----------------------------------------------------------------

    def _begin_sampled(self, now: float) -> None:
        self._session += 1
        self._sampled_session = self._session
        self._sampled.reset()
        self._send(self._state_line("started", "mode_sampled"))
        self._last_sample_t = time.time()
        result = self._sampled.step(self._sampler.rate)
        self._snapshot_budget.spent(self._clock(), result.cost_s)
        self._last_sample_at = now

    def _diff_sampled(self, now: float, t: float) -> None:
        sampler = self._sampler
        if not sampler.ensure_hooked():
            self._log.warn("sampler", "allocator hooks were replaced; reinstalled, samples dropped")
        result = self._sampled.step(sampler.rate)
        self.snapshots += 1
        self._snapshot_budget.spent(self._clock(), result.cost_s)
        self._seq += 1
        key_type = self.settings.key_type
        wall = t - self._last_sample_t
        monotonic = max(0.0, now - self._last_sample_at)
        header = {
            "t": t,
            "seq": self._seq,
            "session": self._sampled_session,
            "key_type": key_type,
            "frames": self.settings.frames,
            "interval_s": wall if abs(wall - monotonic) < 1.0 else monotonic,
            "traced_current": result.total_size,
            "traced_peak": result.total_size,
            "tracemalloc_memory": sampler.stats()["table_bytes"],
            "total_size": result.total_size,
            "total_count": result.total_count,
            "total_size_diff": result.total_size_diff,
            "total_count_diff": result.total_count_diff,
            "groups": result.groups,
            "cost_s": result.cost_s,
            "source": "sampled",
            "sample_bytes": result.sample_bytes,
            "samples": result.samples,
        }
        top = [
            wire.sampled_site_entry(key_type, frames_of(key, key_type), estimate)
            for key, *estimate in result.top
        ]
        self._last_sample_at = now
        self._last_sample_t = t
        self._send(wire.diff_line(header, top))

    def _raise_rate(self, now: float, window: float) -> None:
        self._rate_deadline = now + window
        self._sampler.raise_rate()
        self._follow_ups = FOLLOW_UPS
        self._send(self._state_line("extended", "control", window))

    def _restore_rate(self, reason: str) -> None:
        self._rate_deadline = None
        self._sampler.restore_rate()
        self._send(self._state_line("extended", reason, None))

    def _diff(self, now: float, t: float) -> None:
        result = self._differ.step()
        self.snapshots += 1
        self._snapshot_budget.spent(self._clock(), result.cost_s)
        self._seq += 1
        current, peak = tracemalloc.get_traced_memory()
        key_type = self.settings.key_type
        header = {
            "t": t,
            "seq": self._seq,
            "session": self._session,
            "key_type": key_type,
            "frames": tracemalloc.get_traceback_limit(),
            "interval_s": self._interval_since_snapshot(now, t),
            "traced_current": current,
            "traced_peak": peak,
            "tracemalloc_memory": tracemalloc.get_tracemalloc_memory(),
            "total_size": result.total_size,
            "total_count": result.total_count,
            "total_size_diff": result.total_size_diff,
            "total_count_diff": result.total_count_diff,
            "groups": result.groups,
            "cost_s": result.cost_s,
        }
        top = [
            wire.site_entry(key_type, frames_of(key, key_type), size, size_diff, count, count_diff)
            for key, size, size_diff, count, count_diff in result.top
        ]
        self._last_snapshot_at = now
        self._last_snapshot_t = t
        self._send(wire.diff_line(header, top))
        self._after_snapshot(result)

    def _interval_since_snapshot(self, now: float, t: float) -> float:
        """Seconds since the previous snapshot, by the wall clock that stamps t, so that
        t - interval_s is the previous diff's t; by the monotonic clock if the wall clock
        stepped in between."""
        monotonic = max(0.0, now - self._last_snapshot_at)
        wall = t - self._last_snapshot_t
        return wall if abs(wall - monotonic) < 1.0 else monotonic

    def _after_snapshot(self, result: Result) -> None:
        if self._hook is None:
            return
        previous, self._previous_snapshot = self._previous_snapshot, result.snapshot
        if previous is not None and result.snapshot is not None:
            self._hook(self._seq, previous, result.snapshot)

    def _check_tracing(self, now: float) -> None:
        if self._rate_deadline is not None and now >= self._rate_deadline:
            self._restore_rate("window")
        if not self._tracing:
            return
        if not tracemalloc.is_tracing():
            self._end(now, "external")
        elif self._deadline is not None and now >= self._deadline:
            self._end(now, "window")
        elif tracemalloc.get_tracemalloc_memory() > self._cap:
            self._end(now, "memory_cap")

    def _begin(self, now: float, reason: str, window: Optional[float], cap: int, keep_owner: bool) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.settings.frames)
            self._we_started = True
        elif not keep_owner:
            # Someone else traces already: use it, and leave it running when we are done.
            self._we_started = False
        self._tracing = True
        self._follow_ups = FOLLOW_UPS if reason == "control" else 0
        self._session += 1
        self._deadline = None if window is None else now + window
        self._cap = cap
        self._send(self._state_line("started", reason))
        self._differ.reset()
        self._previous_snapshot = None
        self._last_snapshot_t = time.time()
        result = self._differ.step()
        self.snapshots += 1
        self._snapshot_budget.spent(self._clock(), result.cost_s)
        self._last_snapshot_at = now
        self._after_snapshot(result)

    def _end(self, now: float, reason: str) -> None:
        self._tracing = False
        self._follow_ups = 0
        self._deadline = None
        self._differ.reset()
        self._previous_snapshot = None
        if self._we_started and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._we_started = False
        self._send(self._state_line("stopped", reason))

    _NO_WINDOW = -1.0

    def _state_line(self, state: str, reason: str, sampled_window: Optional[float] = _NO_WINDOW) -> bytes:
        """A trace_state line: of the tracemalloc session, or (sampled_window given, which
        may be None for no end) of the sampler's session, with its rate."""
        if sampled_window != self._NO_WINDOW or (reason == "mode_sampled"):
            window = None if sampled_window == self._NO_WINDOW else sampled_window
            return wire.trace_state(
                time.time(), state, reason, self._sampled_session, self.settings.frames,
                window, self._cap, self._sampler.rate,
            )
        window = None if self._deadline is None else max(0.0, self._deadline - self._clock())
        frames = tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() else self.settings.frames
        return wire.trace_state(time.time(), state, reason, self._session, frames, window, self._cap)

    def _control(self, line: bytes) -> None:
        try:
            command = wire.parse_control(line, MAX_WINDOW_S)
        except ValueError as exc:
            self._refuse(str(exc))
            return
        now = self._clock()
        if command.action == "stop":
            if self._tracing:
                self._end(now, "control")
            if self._rate_deadline is not None:
                self._restore_rate("control")
            return
        if self.mode == "off":
            self._refuse("tracing is disabled (mode off)")
            return
        cap = command.max_memory if command.max_memory is not None else self.settings.max_memory
        window = command.duration_s if command.duration_s is not None else self.settings.trace_window
        if self._sampler is not None and not command.exact and not self._tracing:
            # Sampled mode answers a trace request with more samples, not tracemalloc.
            self._raise_rate(now, window)
            return
        if self._tracing:
            if self._deadline is not None:
                self._deadline = now + window
            self._cap = cap
            # A new request wants fresh suspects as soon as the first one did.
            self._follow_ups = FOLLOW_UPS
            self._send(self._state_line("extended", "control"))
        else:
            self._begin(now, "control", window, cap, False)

    def _refuse(self, reason: str) -> None:
        self.bad_control += 1
        self._log.warn("control", f"refused a control line from the agent: {reason}")
        self._send(wire.control_error(time.time(), reason))

    # --- Helpers ------------------------------------------------------------------------

    def _hello(self) -> bytes:
        return wire.hello(
            time.time(),
            os.getpid(),
            os.getppid(),
            "%d.%d.%d" % sys.version_info[:3],
            sys.implementation.name,
            identity.program_name(),
            identity.command_line(),
            dict(asdict(self.settings), mode=self.mode),
            tracemalloc.is_tracing(),
            VERSION,
        )

    def _send(self, line: bytes) -> None:
        self._transport.enqueue(line)

    def _counters(self) -> Dict[str, int]:
        transport = self._transport
        return {
            "sent": transport.sent,
            "dropped": transport.dropped,
            "buffered": transport.buffered,
            "errors": self.errors,
            "send_failures": transport.send_failures,
            "connects": transport.connects,
            "connect_failures": transport.connect_failures,
            "bad_control": self.bad_control + transport.oversized_input,
            "snapshots": self.snapshots,
            "budget_skips": self._snapshot_budget.skips + self._object_budget.skips,
        }

    def _guard(self, step: str, fn: Callable[..., T], *args: Any) -> Optional[T]:
        try:
            return fn(*args)
        except Exception as exc:
            self._failed(step, exc)
            return None

    def _failed(self, step: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{step}: {type(exc).__name__}: {exc}"
        self._log.warn(step, self.last_error)

