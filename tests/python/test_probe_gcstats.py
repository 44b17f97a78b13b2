"""gc statistics and object counts."""

from __future__ import annotations

import gc
import unittest

from apm_probe import gcstats


class Leaky:
    pass


class GcStats(unittest.TestCase):
    def test_read_matches_gc(self) -> None:
        count, stats, garbage = gcstats.read()
        self.assertEqual(len(count), len(gc.get_count()))
        self.assertEqual(len(stats), len(gc.get_stats()))
        self.assertEqual(set(stats[0]), {"collections", "collected", "uncollectable"})
        self.assertEqual(garbage, len(gc.garbage))

    def test_collections_are_counted(self) -> None:
        before = gcstats.read()[1][2]["collections"]
        gc.collect()
        self.assertEqual(gcstats.read()[1][2]["collections"], before + 1)

    def test_object_counter_reports_growth_of_a_type(self) -> None:
        counter = gcstats.ObjectCounter(top_n=5)
        counter.sample()
        keep = [Leaky() for _ in range(5000)]
        total, rows, cost = counter.sample()
        self.assertGreater(total, 5000)
        self.assertGreaterEqual(cost, 0.0)
        name = f"{__name__}.Leaky"
        self.assertEqual(rows[0][0], name)
        self.assertEqual(rows[0][2], 5000)
        del keep
        _, rows, _ = counter.sample()
        self.assertIn((name, 0, -5000), rows)


if __name__ == "__main__":
    unittest.main()
