"""tracemalloc snapshots, grouped and diffed with Snapshot.compare_to's exact semantics.

compare_to(old, key_type) groups both snapshots by key, subtracts, and sorts by
(|size_diff|, size, |count_diff|, count, traceback), largest first. Grouping is the cost:
one pass in Python over every live trace, twice per diff (old and new), after a
filter_traces pass that copies the trace list once more. We do one pass per snapshot that
filters and groups together (the filter decision is cached per file name), keep only the
grouped totals of the previous snapshot instead of the snapshot itself, and pick the top N
with heapq.nlargest, which the documentation defines as sorted(reverse=True)[:N]. The
result is the same list, in the same order, with the same numbers; the tests check it
against compare_to itself.
"""

from __future__ import annotations

import fnmatch
import heapq
import os
import time
import tracemalloc
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

Frame = Tuple[str, int]
# A group key is the raw frame (filename, lineno) for "lineno", or the raw traceback
# tuple, most recent frame first as _tracemalloc stores it, for "traceback".
Key = Any
Groups = Dict[Key, List[int]]


def _normalize(filename: str) -> str:
    # The same normalisation tracemalloc.Filter applies to names and patterns.
    filename = os.path.normcase(filename)
    if filename.endswith(".pyc"):
        filename = filename[:-1]
    return filename


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

EXCLUDED_PATTERNS: Tuple[str, ...] = (
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
    _normalize(tracemalloc.__file__),
    os.path.join(_PACKAGE_DIR, "*"),
)


def filters() -> List[tracemalloc.Filter]:
    """The filters the probe applies, as tracemalloc.Filter objects: a snapshot passed
    through snapshot.filter_traces(filters()) holds exactly the traces the probe counts."""
    return [tracemalloc.Filter(False, pattern) for pattern in EXCLUDED_PATTERNS]


class _Exclusion:
    """Whether a trace is dropped, decided by its most recent frame's file name (as an
    exclusive tracemalloc.Filter with all_frames=False decides), cached per name."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = [_normalize(p) for p in patterns]
        self._cache: Dict[str, bool] = {}

    def __call__(self, filename: str) -> bool:
        hit = self._cache.get(filename)
        if hit is None:
            name = _normalize(filename)
            hit = any(fnmatch.fnmatch(name, p) for p in self._patterns)
            if len(self._cache) > 100000:
                self._cache.clear()
            self._cache[filename] = hit
        return hit


def raw_traces(snapshot: tracemalloc.Snapshot) -> Sequence[Tuple[Any, ...]]:
    """The snapshot's trace tuples (domain, size, traceback[, total_nframe]), traceback
    most recent frame first. Uses the stored tuples when this Python has them (every
    CPython from 3.4 on), else rebuilds them through the public API."""
    traces = getattr(snapshot.traces, "_traces", None)
    if isinstance(traces, (list, tuple)):
        return traces
    return [
        (t.domain, t.size, tuple((f.filename, f.lineno) for f in reversed(t.traceback)))
        for t in snapshot.traces
    ]


def group(traces: Iterable[Tuple[Any, ...]], key_type: str, excluded: Callable[[str], bool]) -> Groups:
    """Filter and group in one pass: key -> [size, count]."""
    groups: Groups = {}
    get = groups.get
    skip: Dict[Any, bool] = {}
    if key_type == "lineno":
        for trace in traces:
            frame = trace[2][0]
            entry = get(frame)
            if entry is not None:
                entry[0] += trace[1]
                entry[1] += 1
            elif not excluded(frame[0]):
                groups[frame] = [trace[1], 1]
    elif key_type == "traceback":
        for trace in traces:
            tb = trace[2]
            entry = get(tb)
            if entry is not None:
                entry[0] += trace[1]
                entry[1] += 1
            else:
                dropped = skip.get(tb[0])
                if dropped is None:
                    dropped = skip[tb[0]] = excluded(tb[0][0])
                if not dropped:
                    groups[tb] = [trace[1], 1]
    else:
        raise ValueError(f"unknown key_type {key_type!r}")
    return groups


def _order(key_type: str) -> Callable[[Key], Any]:
    # tracemalloc.Traceback compares its frames oldest first: the raw tuple reversed.
    if key_type == "lineno":
        return lambda key: key
    return lambda key: key[::-1]


def top(old: Groups, new: Groups, key_type: str, n: int) -> List[Tuple[Key, int, int, int, int]]:
    """The first n entries of compare_to's list: (key, size, size_diff, count, count_diff)."""
    diffs: List[Tuple[Key, int, int, int, int]] = []
    append = diffs.append
    for key, (size, count) in new.items():
        before = old.get(key)
        if before is None:
            append((key, size, size, count, count))
        else:
            append((key, size, size - before[0], count, count - before[1]))
    for key, (size, count) in old.items():
        if key not in new:
            append((key, 0, -size, 0, -count))
    order = _order(key_type)
    return heapq.nlargest(
        n, diffs, key=lambda d: (abs(d[2]), d[1], abs(d[4]), d[3], order(d[0]))
    )


def frames_of(key: Key, key_type: str) -> List[Frame]:
    """A key's frames oldest call first, the allocating line last."""
    if key_type == "lineno":
        return [key]
    return list(key[::-1])


class Result:
    """One diff, ready to be put on the wire."""

    __slots__ = ("top", "total_size", "total_count", "total_size_diff", "total_count_diff",
                 "groups", "cost_s", "snapshot")

    def __init__(self) -> None:
        self.top: List[Tuple[Key, int, int, int, int]] = []
        self.total_size = 0
        self.total_count = 0
        self.total_size_diff = 0
        self.total_count_diff = 0
        self.groups = 0
        self.cost_s = 0.0
        self.snapshot: Optional[tracemalloc.Snapshot] = None


class Differ:
    """Holds the previous snapshot's groups; each diff() compares a new snapshot with it.

    keep_snapshots keeps the raw tracemalloc.Snapshot of each step in Result.snapshot so a
    test can recompute compare_to on the very same data; it costs the snapshot's memory.
    """

    def __init__(self, key_type: str, top_n: int, keep_snapshots: bool = False) -> None:
        self.key_type = key_type
        self.top_n = top_n
        self._keep = keep_snapshots
        self._excluded = _Exclusion(EXCLUDED_PATTERNS)
        self._previous: Optional[Groups] = None
        self._previous_totals = (0, 0)

    @property
    def has_baseline(self) -> bool:
        return self._previous is not None

    def reset(self) -> None:
        self._previous = None
        self._previous_totals = (0, 0)

    def step(self) -> Result:
        """Take a snapshot, diff it against the previous one (or an empty one if none),
        and make it the new previous. Needs tracemalloc to be tracing."""
        started = time.thread_time()
        snapshot = tracemalloc.take_snapshot()
        groups = group(raw_traces(snapshot), self.key_type, self._excluded)
        result = Result()
        if self._keep:
            result.snapshot = snapshot
        del snapshot
        old = self._previous if self._previous is not None else {}
        result.top = top(old, groups, self.key_type, self.top_n)
        size = count = 0
        for entry in groups.values():
            size += entry[0]
            count += entry[1]
        result.total_size = size
        result.total_count = count
        result.total_size_diff = size - self._previous_totals[0]
        result.total_count_diff = count - self._previous_totals[1]
        result.groups = len(groups)
        self._previous = groups
        self._previous_totals = (size, count)
        result.cost_s = time.thread_time() - started
        return result
