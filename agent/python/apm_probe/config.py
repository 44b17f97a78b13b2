"""Probe settings: keyword arguments of start(), then APM_PROBE_* variables, then defaults.

A keyword argument given in code wins over the environment, and the environment over the
default. Every value is checked here, once, so the rest of the probe can trust its Settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

ENV_PREFIX = "APM_PROBE_"
# "sampled" falls back to "on-demand" where the _sampler extension does not load.
MODES = ("sampled", "on-demand", "always", "off")
KEY_TYPES = ("lineno", "traceback")

# Upper bounds keep every wire line below its size cap and every cost finite.
MAX_TOP_N = 500
MAX_FRAMES = 100
MAX_INTERVAL_S = 86400.0
MIN_INTERVAL_S = 0.01
MAX_WINDOW_S = 7 * 86400.0
MIN_BUFFER_BYTES = 1 << 20
MIN_SAMPLE_BYTES = 256
MAX_SAMPLE_BYTES = 1 << 34


class ConfigError(ValueError):
    """A setting has a bad value; `name` is the keyword or variable that carried it."""

    def __init__(self, name: str, value: Any, reason: str, from_env: bool) -> None:
        super().__init__(f"{name}={value!r}: {reason}")
        self.name = name
        self.from_env = from_env


@dataclass(frozen=True)
class Settings:
    """Everything the probe can be told; see docs/probe.md for each field."""

    socket: str = "/run/apm/probe.sock"
    mode: str = "sampled"
    # Sampled mode: mean bytes allocated between two samples.
    sample_bytes: int = 512 << 10
    interval: float = 60.0
    top_n: int = 25
    frames: int = 1
    key_type: str = "lineno"
    # Tracing stops by itself when tracemalloc's own memory passes this many bytes.
    max_memory: int = 64 << 20
    # How long an on-demand trace lasts when the agent's command names no duration.
    trace_window: float = 1200.0
    # Fraction of wall time the snapshot and object-count work may use; 0 lifts the bound.
    snapshot_budget: float = 0.01
    object_counts: bool = False
    buffer_bytes: int = 4 << 20
    reconnect_max: float = 30.0


def _parse_seconds(text: str) -> float:
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    text = text.strip()
    scale = 1.0
    if text and text[-1] in units:
        scale = units[text[-1]]
        text = text[:-1]
    return float(text) * scale


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _parse_int(text: str) -> int:
    return int(text.strip(), 10)


# For each setting: how to read it from a string, and the check its value must pass
# (returning an error text, or None when the value is good).
def _check_range(lo: float, hi: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if isinstance(value, float) and not math.isfinite(value):
            return "must be finite"
        if not lo <= value <= hi:
            return f"must be between {lo:g} and {hi:g}"
        return None

    return check


def _check_choice(choices: Tuple[str, ...]) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def _check_socket(value: Any) -> Optional[str]:
    if not value:
        return "must not be empty"
    if "\0" in value[1:]:
        return "must not contain NUL"
    if len(value.encode("utf-8", "surrogateescape")) > 107:
        return "is longer than a Unix socket path may be (107 bytes)"
    return None


_SPEC: Dict[str, Tuple[type, Callable[[str], Any], Callable[[Any], Optional[str]]]] = {
    "socket": (str, str, _check_socket),
    "mode": (str, lambda s: s.strip(), _check_choice(MODES)),
    "sample_bytes": (int, _parse_int, _check_range(MIN_SAMPLE_BYTES, MAX_SAMPLE_BYTES)),
    "interval": (float, _parse_seconds, _check_range(MIN_INTERVAL_S, MAX_INTERVAL_S)),
    "top_n": (int, _parse_int, _check_range(1, MAX_TOP_N)),
    "frames": (int, _parse_int, _check_range(1, MAX_FRAMES)),
    "key_type": (str, lambda s: s.strip(), _check_choice(KEY_TYPES)),
    "max_memory": (int, _parse_int, _check_range(1, 1 << 50)),
    "trace_window": (float, _parse_seconds, _check_range(0.01, MAX_WINDOW_S)),
    "snapshot_budget": (float, float, _check_range(0.0, 1.0)),
    "object_counts": (bool, _parse_bool, lambda v: None),
    "buffer_bytes": (int, _parse_int, _check_range(MIN_BUFFER_BYTES, 1 << 30)),
    "reconnect_max": (float, _parse_seconds, _check_range(0.01, 3600.0)),
}


def _coerce(name: str, value: Any, from_env: bool) -> Any:
    kind, parse, check = _SPEC[name]
    label = ENV_PREFIX + name.upper() if from_env else name
    if from_env:
        try:
            value = parse(value)
        except ValueError as exc:
            raise ConfigError(label, value, str(exc) or "cannot be parsed", True) from None
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif kind is int and isinstance(value, bool):
        raise ConfigError(label, value, "must be an integer", False)
    if not isinstance(value, kind):
        raise ConfigError(label, value, f"must be of type {kind.__name__}", from_env)
    if kind is int and not isinstance(value, bool):
        value = int(value)
    error = check(value)
    if error is not None:
        raise ConfigError(label, value, error, from_env)
    return value


def unknown_env_names(environ: Mapping[str, str]) -> Tuple[str, ...]:
    """Names that start with APM_PROBE_ but are no setting (a typo, most likely)."""
    known = {ENV_PREFIX + name.upper() for name in _SPEC}
    return tuple(sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known))


def load(kwargs: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Build Settings from keyword arguments over environment over defaults.

    Raises ConfigError (a ValueError) naming the keyword or variable at fault; its
    `from_env` tells which. An unknown keyword is a ConfigError too.
    """
    values: Dict[str, Any] = {}
    for name in kwargs:
        if name not in _SPEC:
            raise ConfigError(name, kwargs[name], "unknown setting", False)
    for f in fields(Settings):
        if f.name in kwargs:
            values[f.name] = _coerce(f.name, kwargs[f.name], False)
        else:
            env_name = ENV_PREFIX + f.name.upper()
            if env_name in environ:
                values[f.name] = _coerce(f.name, environ[env_name], True)
    return replace(Settings(), **values)
