"""Sampled mode: per-site estimates from the _sampler extension's live samples.

A block of s bytes is sampled with probability p = 1 - exp(-s / R), R being the mean
bytes between samples when it was drawn. Each live sample stands for w = s / p bytes and
1 / p blocks (Horvitz-Thompson), so a site's estimated size is the sum of its samples'
w, and the variance of that estimate is the sum of w^2 (1 - p) (each block is in or out
of the sample independently, given the Poisson process). The variance of a site's change
between two steps comes from the samples that arrived or left in between; `growth_var`
sums it over the whole sampling session, so the collector gets the standard error of
any window's growth as the square root of the difference of two `growth_var` values.

The diff has the shape of the tracemalloc one (snapshot.Result): sites keyed by their
innermost frame (or whole stack), the same exclusions, the same order.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any, Dict, List, Optional, Tuple

from .snapshot import EXCLUDED_PATTERNS, Key, _Exclusion, _order

try:  # The compiled part; missing on an interpreter it was not built for.
    from . import _sampler
except ImportError as _exc:  # pragma: no cover - depends on the build
    _sampler = None  # type: ignore[assignment]
    IMPORT_ERROR: Optional[str] = f"{type(_exc).__name__}: {_exc}"
else:
    IMPORT_ERROR = None

# Past this, a variance is stored as this (int64 on the wire and in the store).
VAR_MAX = 1 << 62
# A trace request raises the rate by this factor, down to MIN_TRACE_BYTES.
TRACE_FACTOR = 16
MIN_TRACE_BYTES = 4096


def available() -> bool:
    return _sampler is not None


def weight(size: int, rate: int) -> Tuple[float, float, float]:
    """(bytes, blocks, variance of bytes) one sample of a `size`-byte block stands for."""
    p = -math.expm1(-size / rate) if size > 0 else 0.0
    if p <= 0.0:
        return 0.0, 0.0, 0.0
    w = size / p
    return w, 1.0 / p, w * w * (1.0 - p)


class SampledResult:
    """One sampled diff, ready for the wire: like snapshot.Result, plus the errors."""

    __slots__ = ("top", "total_size", "total_count", "total_size_diff", "total_count_diff",
                 "groups", "cost_s", "samples", "sample_bytes")

    def __init__(self) -> None:
        # (key, size, size_diff, count, count_diff, size_err, growth_var)
        self.top: List[Tuple[Key, int, int, int, int, int, int]] = []
        self.total_size = 0
        self.total_count = 0
        self.total_size_diff = 0
        self.total_count_diff = 0
        self.groups = 0
        self.cost_s = 0.0
        self.samples = 0
        self.sample_bytes = 0


class SampleDiffer:
    """Turns the sampler's table into per-site estimates, diffed against the previous step."""

    def __init__(self, key_type: str, top_n: int) -> None:
        self.key_type = key_type
        self.top_n = top_n
        self._excluded = _Exclusion(EXCLUDED_PATTERNS)
        self._previous: Optional[Dict[Key, List[float]]] = None
        self._previous_totals = (0, 0)
        # id -> (key, variance) of the samples seen at the previous step.
        self._seen: Dict[int, Tuple[Key, float]] = {}
        self._growth_var: Dict[Key, float] = {}

    @property
    def has_baseline(self) -> bool:
        return self._previous is not None

    def reset(self) -> None:
        self._previous = None
        self._previous_totals = (0, 0)
        self._seen = {}
        self._growth_var = {}

    def _key(self, frames: Tuple[Tuple[str, int], ...]) -> Optional[Key]:
        if not frames or self._excluded(frames[0][0]):
            return None
        return frames[0] if self.key_type == "lineno" else frames

    def step(self, sample_bytes: int) -> SampledResult:
        started = time.thread_time()
        samples = _sampler.samples()
        groups: Dict[Key, List[float]] = {}  # key -> [size, count, variance]
        seen: Dict[int, Tuple[Key, float]] = {}
        change: Dict[Key, float] = {}  # variance of each site's change since the last step
        previous_seen = self._seen
        for sid, size, rate, frames in samples:
            key = self._key(frames)
            if key is None:
                continue
            w, n, var = weight(size, rate)
            entry = groups.get(key)
            if entry is None:
                groups[key] = [w, n, var]
            else:
                entry[0] += w
                entry[1] += n
                entry[2] += var
            seen[sid] = (key, var)
            if previous_seen.pop(sid, None) is None:
                change[key] = change.get(key, 0.0) + var
        for key, var in previous_seen.values():  # samples freed since the last step
            change[key] = change.get(key, 0.0) + var
        self._seen = seen
        growth_var = self._growth_var
        for key, var in change.items():
            growth_var[key] = growth_var.get(key, 0.0) + var

        result = SampledResult()
        result.samples = len(samples)
        result.sample_bytes = sample_bytes
        old = self._previous if self._previous is not None else {}
        diffs = []
        for key, (size, count, var) in groups.items():
            before = old.get(key)
            s, c = int(round(size)), int(round(count))
            if before is None:
                diffs.append((key, s, s, c, c, var))
            else:
                diffs.append((key, s, s - int(round(before[0])), c, c - int(round(before[1])), var))
        for key, (size, count, _var) in old.items():
            if key not in groups:
                diffs.append((key, 0, -int(round(size)), 0, -int(round(count)), 0.0))
        order = _order(self.key_type)
        best = heapq.nlargest(
            self.top_n, diffs, key=lambda d: (abs(d[2]), d[1], abs(d[4]), d[3], order(d[0]))
        )
        result.top = [
            (key, s, sd, c, cd, int(round(math.sqrt(var))),
             min(VAR_MAX, int(round(growth_var.get(key, 0.0)))))
            for key, s, sd, c, cd, var in best
        ]
        size_total = sum(int(round(g[0])) for g in groups.values())
        count_total = sum(int(round(g[1])) for g in groups.values())
        result.total_size = size_total
        result.total_count = count_total
        result.total_size_diff = size_total - self._previous_totals[0]
        result.total_count_diff = count_total - self._previous_totals[1]
        result.groups = len(groups)
        self._previous = groups
        self._previous_totals = (size_total, count_total)
        # Sites that left the table keep no running variance once they are reported gone.
        for key in [k for k in growth_var if k not in groups and k not in old]:
            del growth_var[key]
        result.cost_s = time.thread_time() - started
        return result


class Sampler:
    """The process-wide sampler: hooks installed once, rate changed for trace windows."""

    def __init__(self, sample_bytes: int, frames: int) -> None:
        self.sample_bytes = sample_bytes
        self.frames = frames
        self.rate = sample_bytes

    def start(self) -> None:
        _sampler.start(self.sample_bytes, self.frames)
        self.rate = self.sample_bytes

    def raise_rate(self) -> int:
        """Samples TRACE_FACTOR times as often (a trace window); returns the new rate."""
        self.rate = max(MIN_TRACE_BYTES, self.sample_bytes // TRACE_FACTOR)
        _sampler.set_rate(self.rate)
        return self.rate

    def restore_rate(self) -> None:
        self.rate = self.sample_bytes
        _sampler.set_rate(self.rate)

    def ensure_hooked(self) -> bool:
        """Re-installs the hooks if someone put other allocators in their place without
        chaining (tracemalloc started before us and stopped since, say). The table is
        dropped then, since frees were missed. Returns False when that happened."""
        if _sampler.hooked():
            return True
        _sampler.stop()
        _sampler.start(self.rate, self.frames)
        return False

    def stop(self) -> None:
        _sampler.stop()

    @staticmethod
    def stats() -> Dict[str, Any]:
        return dict(_sampler.stats())
