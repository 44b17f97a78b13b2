"""The probe's grouped diff gives exactly Snapshot.compare_to's list, filters included."""

from __future__ import annotations

import os
import random
import tracemalloc
import unittest
from typing import Any, List, Tuple

from apm_probe import snapshot


def expected(old: tracemalloc.Snapshot, new: tracemalloc.Snapshot, key_type: str, n: int) -> List[Tuple[Any, ...]]:
    f = snapshot.filters()
    stats = new.filter_traces(f).compare_to(old.filter_traces(f), key_type)[:n]
    return [
        (tuple((fr.filename, fr.lineno) for fr in s.traceback), s.size, s.size_diff, s.count, s.count_diff)
        for s in stats
    ]


def ours(old: tracemalloc.Snapshot, new: tracemalloc.Snapshot, key_type: str, n: int) -> List[Tuple[Any, ...]]:
    excluded = snapshot._Exclusion(snapshot.EXCLUDED_PATTERNS)
    old_g = snapshot.group(snapshot.raw_traces(old), key_type, excluded)
    new_g = snapshot.group(snapshot.raw_traces(new), key_type, excluded)
    return [
        (tuple(snapshot.frames_of(key, key_type)), size, sd, count, cd)
        for key, size, sd, count, cd in snapshot.top(old_g, new_g, key_type, n)
    ]


def synthetic(rng: random.Random, files: List[str], n_traces: int, depth: int) -> tracemalloc.Snapshot:
    traces = []
    for _ in range(n_traces):
        frames = tuple((rng.choice(files), rng.randint(1, 4)) for _ in range(rng.randint(1, depth)))
        # Few distinct sizes, so ties on size and count are common and the traceback
        # must break them exactly as compare_to does.
        traces.append((0, rng.choice([16, 32, 64, 4096]), frames, len(frames)))
    return tracemalloc.Snapshot(traces, depth)


PROBE_FILE = os.path.join(os.path.dirname(snapshot.__file__), "probe.py")
FILES = ["/app/a.py", "/app/b.py", "/app/c.pyc", "<frozen importlib._bootstrap>",
         "<frozen importlib._bootstrap_external>", "<unknown>", tracemalloc.__file__,
         PROBE_FILE, "/app/\udcff-odd.py", "/app/é.py"]


class SyntheticEquivalence(unittest.TestCase):
    def test_top_equals_compare_to_with_ties_and_filters_lineno(self) -> None:
        rng = random.Random(1)
        for round_ in range(30):
            old = synthetic(rng, FILES, rng.randint(0, 300), 1)
            new = synthetic(rng, FILES, rng.randint(0, 300), 1)
            for n in (1, 5, 25, 1000):
                with self.subTest(round=round_, n=n):
                    self.assertEqual(ours(old, new, "lineno", n), expected(old, new, "lineno", n))

    def test_top_equals_compare_to_with_ties_and_filters_traceback(self) -> None:
        rng = random.Random(2)
        for round_ in range(30):
            old = synthetic(rng, FILES, rng.randint(0, 300), 3)
            new = synthetic(rng, FILES, rng.randint(0, 300), 3)
            for n in (1, 25, 1000):
                with self.subTest(round=round_, n=n):
                    self.assertEqual(ours(old, new, "traceback", n), expected(old, new, "traceback", n))

    def test_excluded_frames_never_reach_the_top(self) -> None:
        rng = random.Random(3)
        old = synthetic(rng, FILES, 0, 1)
        new = synthetic(rng, FILES, 500, 1)
        files = {frames[-1][0] for frames, *_ in ours(old, new, "lineno", 1000)}
        self.assertTrue(files)
        self.assertTrue(files <= {"/app/a.py", "/app/b.py", "/app/c.pyc", "/app/\udcff-odd.py", "/app/é.py"})

    def test_site_gone_since_old_appears_with_negative_diff(self) -> None:
        old = tracemalloc.Snapshot([(0, 100, (("/app/gone.py", 7),), 1)], 1)
        new = tracemalloc.Snapshot([], 1)
        self.assertEqual(ours(old, new, "lineno", 5), [((("/app/gone.py", 7),), 0, -100, 0, -1)])
        self.assertEqual(ours(old, new, "lineno", 5), expected(old, new, "lineno", 5))


def workload(keep: List[Any], rounds: int) -> None:
    for i in range(rounds):
        keep.append(bytearray(1000 + i))
        keep.append([str(j) for j in range(i % 7)])
        if i % 3 == 0:
            keep.append({"k": i})
        if i % 5 == 0 and keep:
            keep.pop(0)


class LiveEquivalence(unittest.TestCase):
    def tearDown(self) -> None:
        tracemalloc.stop()

    def _run(self, key_type: str, frames: int) -> None:
        tracemalloc.start(frames)
        differ = snapshot.Differ(key_type, 25, keep_snapshots=True)
        keep: List[Any] = []
        first = differ.step()
        workload(keep, 400)
        second = differ.step()
        del keep[:100]
        workload(keep, 200)
        third = differ.step()
        for old, new in ((first, second), (second, third)):
            got = [(tuple(snapshot.frames_of(k, key_type)), s, sd, c, cd) for k, s, sd, c, cd in new.top]
            self.assertEqual(got, expected(old.snapshot, new.snapshot, key_type, 25))
            self.assertGreaterEqual(len(got), 4)
        self.assertGreater(third.total_size, 0)

    def test_differ_matches_compare_to_lineno(self) -> None:
        self._run("lineno", 1)

    def test_differ_matches_compare_to_traceback(self) -> None:
        self._run("traceback", 5)

    def test_traces_of_the_probe_itself_are_filtered(self) -> None:
        tracemalloc.start(1)
        differ = snapshot.Differ("lineno", 1000)
        differ.step()
        result = differ.step()
        package = os.path.dirname(snapshot.__file__)
        for key, *_ in result.top:
            self.assertFalse(key[0].startswith(package), key)
            self.assertNotEqual(key[0], tracemalloc.__file__)


if __name__ == "__main__":
    unittest.main()
