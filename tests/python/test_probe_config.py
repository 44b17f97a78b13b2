"""Settings: keyword arguments over APM_PROBE_* over defaults, every value checked."""

from __future__ import annotations

import os
import unittest
from unittest import mock

import apm_probe
from apm_probe import config


class Load(unittest.TestCase):
    def test_defaults_match_the_product_contract(self) -> None:
        s = config.load({}, {})
        self.assertEqual((s.socket, s.mode, s.interval, s.top_n, s.frames, s.key_type),
                         ("/run/apm/probe.sock", "sampled", 60.0, 25, 1, "lineno"))
        self.assertEqual(s.sample_bytes, 524288)
        self.assertFalse(s.object_counts)

    def test_environment_is_read_and_parsed(self) -> None:
        env = {"APM_PROBE_SOCKET": "/tmp/x.sock", "APM_PROBE_MODE": "always", "APM_PROBE_INTERVAL": "2m",
               "APM_PROBE_TOP_N": "10", "APM_PROBE_FRAMES": "4", "APM_PROBE_KEY_TYPE": "traceback",
               "APM_PROBE_MAX_MEMORY": "1000000", "APM_PROBE_TRACE_WINDOW": "30",
               "APM_PROBE_SNAPSHOT_BUDGET": "0", "APM_PROBE_OBJECT_COUNTS": "yes"}
        s = config.load({}, env)
        self.assertEqual((s.socket, s.mode, s.interval, s.top_n, s.frames, s.key_type, s.max_memory,
                          s.trace_window, s.snapshot_budget, s.object_counts),
                         ("/tmp/x.sock", "always", 120.0, 10, 4, "traceback", 1000000, 30.0, 0.0, True))

    def test_keyword_arguments_win_over_the_environment(self) -> None:
        s = config.load({"interval": 5, "mode": "off"}, {"APM_PROBE_INTERVAL": "bad", "APM_PROBE_MODE": "always"})
        self.assertEqual((s.interval, s.mode), (5.0, "off"))

    def test_bad_environment_value_names_the_variable(self) -> None:
        for name, value in (("APM_PROBE_INTERVAL", "soon"), ("APM_PROBE_INTERVAL", "0"),
                            ("APM_PROBE_TOP_N", "1.5"), ("APM_PROBE_MODE", "sometimes"),
                            ("APM_PROBE_FRAMES", "0"), ("APM_PROBE_OBJECT_COUNTS", "maybe"),
                            ("APM_PROBE_SOCKET", "/" + "x" * 200), ("APM_PROBE_INTERVAL", "nan")):
            with self.subTest(name=name, value=value):
                with self.assertRaises(config.ConfigError) as ctx:
                    config.load({}, {name: value})
                self.assertTrue(ctx.exception.from_env)
                self.assertIn(name, str(ctx.exception))

    def test_bad_keyword_is_a_value_error_naming_it(self) -> None:
        for kwargs in ({"top_n": 0}, {"top_n": True}, {"interval": "1"}, {"colour": "red"}, {"key_type": "file"}):
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(ValueError) as ctx:
                    config.load(kwargs, {})
                self.assertIn(next(iter(kwargs)), str(ctx.exception))

    def test_unknown_environment_names_are_reported(self) -> None:
        self.assertEqual(config.unknown_env_names({"APM_PROBE_INTERVALL": "1", "APM_PROBE_MODE": "off"}),
                         ("APM_PROBE_INTERVALL",))


class StartRefusals(unittest.TestCase):
    def test_start_with_bad_environment_returns_false_without_raising(self) -> None:
        with mock.patch.dict(os.environ, {"APM_PROBE_INTERVAL": "soon"}):
            with self.assertLogs("apm_probe", "WARNING") as logs:
                self.assertFalse(apm_probe.start())
        self.assertIn("APM_PROBE_INTERVAL", logs.output[0])
        self.assertFalse(apm_probe.stats()["running"])

    def test_start_with_bad_keyword_raises_value_error(self) -> None:
        with self.assertRaises(ValueError):
            apm_probe.start(mode="sometimes")
        self.assertFalse(apm_probe.stats()["running"])


if __name__ == "__main__":
    unittest.main()
