"""Start the probe without code changes; called from the sitecustomize that apm-run
puts first on PYTHONPATH. This is the one place allowed a side effect at start-up."""

from __future__ import annotations

import sys


def run() -> None:
    """Start the probe from the environment; never raises."""
    try:
        import apm_probe

        apm_probe.start()
    except BaseException as exc:  # Nothing may stop the application from starting.
        try:
            sys.stderr.write(f"apm_probe: not started: {type(exc).__name__}: {exc}\n")
        except Exception:
            pass
