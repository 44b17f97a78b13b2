"""Rate-limited warnings: a failing probe must not flood the application's log.

Messages go to the "apm_probe" logger, so an application that configures logging decides
where they land; without configuration Python prints warnings to stderr.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Tuple


class RateLimitedLog:
    """At most one message per key per `period` seconds; the rest are counted and the
    count is reported with the next message that gets through."""

    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period
        self._clock = clock
        self._last: Dict[str, Tuple[float, int]] = {}
        self.suppressed = 0

    def warn(self, key: str, message: str) -> None:
        now = self._clock()
        last, held = self._last.get(key, (-1e18, 0))
        if now - last < self._period:
            self._last[key] = (last, held + 1)
            self.suppressed += 1
            return
        if len(self._last) > 256:
            self._last.clear()
        self._last[key] = (now, 0)
        if held:
            message = f"{message} ({held} similar messages suppressed)"
        try:
            logging.getLogger("apm_probe").warning("apm_probe: %s", message)
        except Exception:  # A broken handler of the application's is not ours to fix.
            pass
