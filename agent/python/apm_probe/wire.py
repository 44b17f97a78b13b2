"""The probe's wire format: JSON lines to the agent, control lines back.

docs/probe-protocol.md is the contract; this module is the only place that builds or
parses lines. Every line is ASCII, ends with a newline and is at most MAX_LINE_BYTES long
by construction: strings are cut to fixed lengths and lists are filled item by item
until the next item would pass the cap.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20
MAX_CONTROL_BYTES = 64 << 10
MAX_FILE_CHARS = 512
MAX_NAME_CHARS = 256
MAX_ARGS = 32
MAX_ARG_CHARS = 512
MAX_ERROR_CHARS = 256
# Room kept free for the closing of a list line: "],"truncated":N}\n".
_TAIL_RESERVE = 64

_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


class LineTooLong(ValueError):
    """A line would pass MAX_LINE_BYTES; the builders make this unreachable."""


def clean_text(text: Any, limit: int) -> str:
    """A string the agent can always decode: no lone surrogates, at most `limit` characters.

    Long texts keep their end ("..." + tail), because a path's end names the file.
    """
    if not isinstance(text, str):
        text = str(text)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = "..." + text[len(text) - (limit - 3):]
    return text


def encode(obj: Dict[str, Any]) -> bytes:
    """One line: compact ASCII JSON and a newline. Raises LineTooLong past the cap."""
    data = (_encoder.encode(obj) + "\n").encode("ascii")
    if len(data) > MAX_LINE_BYTES:
        raise LineTooLong(f"{obj.get('type')} line of {len(data)} bytes")
    return data


def encode_with_list(header: Dict[str, Any], key: str, items: Sequence[Dict[str, Any]]) -> bytes:
    """A line whose `key` holds as many of `items` as fit, in order, and whose
    "truncated" field counts the ones left out."""
    head = _encoder.encode(header)
    budget = MAX_LINE_BYTES - len(head) - len(key) - _TAIL_RESERVE
    parts: List[str] = []
    used = 0
    for item in items:
        text = _encoder.encode(item)
        if used + len(text) + 1 > budget:
            break
        parts.append(text)
        used += len(text) + 1
    left_out = len(items) - len(parts)
    line = f'{head[:-1]},"{key}":[{",".join(parts)}],"truncated":{left_out}}}\n'
    data = line.encode("ascii")
    if len(data) > MAX_LINE_BYTES:
        raise LineTooLong(f"{header.get('type')} line of {len(data)} bytes")
    return data


def hello(
    t: float,
    pid: int,
    ppid: int,
    python: str,
    implementation: str,
    name: str,
    argv: Sequence[str],
    settings: Dict[str, Any],
    tracing: bool,
    probe_version: str,
) -> bytes:
    return encode(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "probe_version": clean_text(probe_version, 32),
            "t": t,
            "pid": pid,
            "ppid": ppid,
            "python": clean_text(python, 32),
            "implementation": clean_text(implementation, 32),
            "name": clean_text(name, MAX_NAME_CHARS),
            "argv": [clean_text(a, MAX_ARG_CHARS) for a in list(argv)[:MAX_ARGS]],
            "argc": len(argv),
            "mode": settings["mode"],
            "interval_s": settings["interval"],
            "top_n": settings["top_n"],
            "frames": settings["frames"],
            "key_type": settings["key_type"],
            "max_memory": settings["max_memory"],
            "trace_window_s": settings["trace_window"],
            "tracing": tracing,
        }
    )


def gc_line(t: float, count: Sequence[int], stats: Sequence[Dict[str, int]], garbage: int) -> bytes:
    return encode(
        {
            "type": "gc",
            "t": t,
            "count": [int(c) for c in count],
            "stats": [
                {
                    "collections": int(s.get("collections", 0)),
                    "collected": int(s.get("collected", 0)),
                    "uncollectable": int(s.get("uncollectable", 0)),
                }
                for s in stats
            ],
            "garbage": int(garbage),
        }
    )


def objects_line(
    t: float, total: int, types: Sequence[Tuple[str, int, int]], cost_s: float
) -> bytes:
    header = {"type": "objects", "t": t, "total": total, "cost_s": cost_s}
    items = [
        {"type": clean_text(name, MAX_NAME_CHARS), "count": count, "count_diff": diff}
        for name, count, diff in types
    ]
    return encode_with_list(header, "types", items)


def site_entry(
    key_type: str,
    frames: Sequence[Tuple[str, int]],
    size: int,
    size_diff: int,
    count: int,
    count_diff: int,
) -> Dict[str, Any]:
    """One allocation site. `frames` come oldest call first, the allocating line last."""
    file, line = frames[-1]
    entry: Dict[str, Any] = {"file": clean_text(file, MAX_FILE_CHARS), "line": int(line)}
    if key_type == "traceback":
        entry["traceback"] = [[clean_text(f, MAX_FILE_CHARS), int(n)] for f, n in frames]
    entry.update(size=size, size_diff=size_diff, count=count, count_diff=count_diff)
    return entry


def sampled_site_entry(
    key_type: str,
    frames: Sequence[Tuple[str, int]],
    estimate: Tuple[int, int, int, int, int, int],
) -> Dict[str, Any]:
    """A site of a sampled diff: site_entry's fields as estimates, plus `size_err` (the
    standard error of `size`) and `growth_var` (running variance of its changes)."""
    size, size_diff, count, count_diff, size_err, growth_var = estimate
    entry = site_entry(key_type, frames, size, size_diff, count, count_diff)
    entry.update(size_err=size_err, growth_var=growth_var)
    return entry


def diff_line(header: Dict[str, Any], top: Sequence[Dict[str, Any]]) -> bytes:
    line: Dict[str, Any] = {"type": "diff"}
    line.update(header)
    return encode_with_list(line, "top", top)


def trace_state(
    t: float,
    state: str,
    reason: str,
    session: int,
    frames: int,
    window_s: Optional[float],
    max_memory: int,
    sample_bytes: Optional[int] = None,
) -> bytes:
    """A tracing state change; sample_bytes (the sampling rate now) in sampled mode."""
    obj: Dict[str, Any] = {
        "type": "trace_state",
        "t": t,
        "state": state,
        "reason": reason,
        "session": session,
        "frames": frames,
        "window_s": window_s,
        "max_memory": max_memory,
    }
    if sample_bytes is not None:
        obj["sample_bytes"] = sample_bytes
    return encode(obj)


def stats_line(t: float, counters: Dict[str, Any], last_error: Optional[str]) -> bytes:
    obj: Dict[str, Any] = {"type": "stats", "t": t}
    obj.update(counters)
    obj["last_error"] = None if last_error is None else clean_text(last_error, MAX_ERROR_CHARS)
    return encode(obj)


def control_error(t: float, error: str) -> bytes:
    return encode({"type": "control_error", "t": t, "error": clean_text(error, MAX_ERROR_CHARS)})


class Control:
    """A checked control command from the agent."""

    __slots__ = ("action", "duration_s", "max_memory", "exact")

    def __init__(
        self, action: str, duration_s: Optional[float], max_memory: Optional[int], exact: bool = False
    ) -> None:
        self.action = action
        self.duration_s = duration_s
        self.max_memory = max_memory
        self.exact = exact  # trace with tracemalloc even in sampled mode


def parse_control(line: bytes, max_window_s: float) -> Control:
    """Parse one line from the agent (without its newline). Raises ValueError saying why
    a line is refused; unknown extra keys are ignored so the agent can grow the format."""
    if len(line) > MAX_CONTROL_BYTES:
        raise ValueError("control line too long")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("control line is not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != "control":
        raise ValueError("not a control object")
    action = obj.get("action")
    if action == "stop":
        return Control("stop", None, None)
    if action != "trace":
        raise ValueError(f"unknown action {clean_text(action, 32)!r}")
    duration = obj.get("duration_s")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise ValueError("duration_s must be a number")
        if not math.isfinite(duration) or not 0 < duration <= max_window_s:
            raise ValueError(f"duration_s must be in (0, {max_window_s:g}]")
        duration = float(duration)
    cap = obj.get("max_memory")
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 < cap < 1 << 62:
            raise ValueError("max_memory must be a positive integer")
    exact = obj.get("exact", False)
    if not isinstance(exact, bool):
        raise ValueError("exact must be true or false")
    return Control("trace", duration, cap, exact)
