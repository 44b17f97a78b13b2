"""Garbage collector statistics and, optionally, live object counts by type.

gc counters are a few integers and cost nothing to read. Object counts walk every object
the collector tracks (gc.get_objects()), which is linear in the heap, so they are off by
default and, when on, run under the probe's cost budget.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Dict, List, Tuple


def read() -> Tuple[List[int], List[Dict[str, int]], int]:
    """(gc.get_count(), per-generation {collections, collected, uncollectable}, len(gc.garbage))."""
    count = list(gc.get_count())
    stats = [
        {
            "collections": int(s.get("collections", 0)),
            "collected": int(s.get("collected", 0)),
            "uncollectable": int(s.get("uncollectable", 0)),
        }
        for s in gc.get_stats()
    ]
    return count, stats, len(gc.garbage)


def _type_name(kind: type) -> str:
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or getattr(kind, "__name__", "?")
    if not isinstance(module, str) or module == "builtins":
        return str(name)
    return f"{module}.{name}"


class ObjectCounter:
    """Counts live gc-tracked objects by type name and how each count moved since the
    previous sample. Names are kept for at most `max_types` types between samples."""

    def __init__(self, top_n: int, max_types: int = 10000) -> None:
        self._top_n = top_n
        self._max_types = max_types
        self._previous: Dict[str, int] = {}

    def sample(self) -> Tuple[int, List[Tuple[str, int, int]], float]:
        """(objects counted, top types as (name, count, count_diff), cost in CPU seconds).

        Types rank like compare_to's sites: by |count_diff|, then count, largest first.
        """
        started = time.thread_time()
        objects = gc.get_objects()
        by_type = Counter(map(type, objects))
        total = len(objects)
        del objects
        counts: Dict[str, int] = {}
        for kind, n in by_type.items():
            name = _type_name(kind)
            counts[name] = counts.get(name, 0) + n
        del by_type
        rows = [(name, n, n - self._previous.get(name, 0)) for name, n in counts.items()]
        for name, n in self._previous.items():
            if name not in counts:
                rows.append((name, 0, -n))
        rows.sort(key=lambda r: (abs(r[2]), r[1], r[0]), reverse=True)
        if len(counts) > self._max_types:
            keep = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[: self._max_types]
            counts = dict(keep)
        self._previous = counts
        return total, rows[: self._top_n], time.thread_time() - started
