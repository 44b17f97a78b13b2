"""A duty-cycle bound on the probe's expensive steps (snapshots, object counts).

After a step that cost c seconds of the probe thread's CPU, the next one may run no
sooner than c / fraction seconds later, so on average the step uses at most `fraction` of
wall time however large the heap grows. A fraction of 0 lifts the bound.
"""

from __future__ import annotations


class Budget:
    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._next = 0.0
        self.skips = 0

    def allows(self, now: float) -> bool:
        """True when a step may run at monotonic time `now`; a refusal is counted."""
        if self._fraction <= 0 or now >= self._next:
            return True
        self.skips += 1
        return False

    @property
    def next_at(self) -> float:
        """The monotonic time from which the next step may run."""
        return self._next

    def spent(self, now: float, cost_s: float) -> None:
        if self._fraction > 0:
            self._next = now + cost_s / self._fraction
