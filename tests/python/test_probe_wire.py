"""Wire lines stay valid, ASCII and under the size cap whatever they carry; control
lines from the agent are checked strictly."""

from __future__ import annotations

import json
import unittest

from apm_probe import wire

from probe_fakeagent import validate


def huge_site(i: int) -> dict:
    name = "/very/long/\U0001F600" * 300 + f"{i}.py"
    frames = [(name, n) for n in range(100)]
    return wire.site_entry("traceback", frames, 10, 10, 1, 1)


HEADER = {"t": 1.0, "seq": 1, "session": 1, "key_type": "traceback", "frames": 100,
          "interval_s": 1.0, "traced_current": 0, "traced_peak": 0, "tracemalloc_memory": 0,
          "total_size": 0, "total_count": 0, "total_size_diff": 0, "total_count_diff": 0,
          "groups": 0, "cost_s": 0.0}


class Lines(unittest.TestCase):
    def test_diff_line_with_huge_sites_is_cut_to_the_cap_and_says_so(self) -> None:
        top = [huge_site(i) for i in range(500)]
        line = wire.diff_line(HEADER, top)
        self.assertLessEqual(len(line), wire.MAX_LINE_BYTES)
        self.assertTrue(line.endswith(b"\n"))
        obj = json.loads(line)
        validate(obj)
        self.assertGreater(obj["truncated"], 0)
        self.assertEqual(len(obj["top"]) + obj["truncated"], 500)
        self.assertEqual(obj["top"][0]["traceback"][-1], [obj["top"][0]["file"], 99])

    def test_small_diff_line_is_whole(self) -> None:
        entry = wire.site_entry("lineno", [("/app/a.py", 3)], 100, 50, 2, 1)
        obj = json.loads(wire.diff_line(dict(HEADER, key_type="lineno", frames=1), [entry]))
        validate(obj)
        self.assertEqual(obj["truncated"], 0)
        self.assertEqual(obj["top"], [{"file": "/app/a.py", "line": 3, "size": 100, "size_diff": 50,
                                       "count": 2, "count_diff": 1}])

    def test_text_is_ascii_without_lone_surrogates_and_keeps_its_tail(self) -> None:
        text = wire.clean_text("/x/\udcff" + "a" * 600 + "/end.py", 512)
        self.assertEqual(len(text), 512)
        self.assertTrue(text.startswith("...") and text.endswith("/end.py"))
        line = wire.encode({"type": "control_error", "t": 1.0, "error": wire.clean_text("\udcff\u00e9", 10)})
        line.decode("ascii")
        self.assertEqual(json.loads(line)["error"], "\\udcff\u00e9")

    def test_hello_with_a_huge_command_line_fits(self) -> None:
        settings = {"mode": "always", "interval": 1.0, "top_n": 500, "frames": 100, "key_type": "lineno",
                    "max_memory": 1, "trace_window": 1.0}
        argv = ["\U0001F600" * 5000] * 1000
        line = wire.hello(1.0, 2, 1, "3.11.2", "cpython", "x" * 9999, argv, settings, False, "0.1.0")
        self.assertLessEqual(len(line), wire.MAX_LINE_BYTES)
        obj = json.loads(line)
        validate(obj)
        self.assertEqual(len(obj["argv"]), 32)
        self.assertEqual(obj["argc"], 1000)

    def test_nan_is_refused_rather_than_sent(self) -> None:
        with self.assertRaises(ValueError):
            wire.encode({"type": "gc", "t": float("nan")})


class Control(unittest.TestCase):
    def test_trace_and_stop_parse(self) -> None:
        c = wire.parse_control(b'{"type":"control","action":"trace","duration_s":2,"max_memory":1000}', 60)
        self.assertEqual((c.action, c.duration_s, c.max_memory), ("trace", 2.0, 1000))
        c = wire.parse_control(b'{"type":"control","action":"trace"}', 60)
        self.assertEqual((c.duration_s, c.max_memory), (None, None))
        self.assertEqual(wire.parse_control(b'{"type":"control","action":"stop","x":1}', 60).action, "stop")

    def test_bad_control_lines_are_refused(self) -> None:
        bad = [b"", b"garbage", b"\xff\xfe", b"[]", b'{"type":"hello"}', b'{"type":"control"}',
               b'{"type":"control","action":"explode"}',
               b'{"type":"control","action":"trace","duration_s":-1}',
               b'{"type":"control","action":"trace","duration_s":1e9}',
               b'{"type":"control","action":"trace","duration_s":"5"}',
               b'{"type":"control","action":"trace","duration_s":true}',
               b'{"type":"control","action":"trace","duration_s":NaN}',
               b'{"type":"control","action":"trace","max_memory":0}',
               b'{"type":"control","action":"trace","max_memory":1.5}',
               b"[" * 100000, b'{"type":"control","action":"stop","pad":"' + b"x" * 70000 + b'"}']
        for line in bad:
            with self.subTest(line=line[:60]):
                with self.assertRaises(ValueError):
                    wire.parse_control(line, 60)


if __name__ == "__main__":
    unittest.main()
