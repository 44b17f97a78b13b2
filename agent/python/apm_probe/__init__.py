"""apm_probe: the in-process part of the apm memory-leak monitor.

    import apm_probe
    apm_probe.start()          # settings from APM_PROBE_* or keyword arguments
    apm_probe.stats()          # counters, for the curious
    apm_probe.stop()

Or, with no code change: `apm-run python app.py`. Importing this package does nothing by
itself; see docs/probe.md for what the probe sends and what it costs.
"""

from __future__ import annotations

import atexit
import os
import pkgutil
import threading
from typing import Any, Dict, Optional

# The compiled part (_sampler) may live in another directory of the same name on sys.path:
# a build tree's python/apm_probe beside the sources (the tests), for example.
__path__ = pkgutil.extend_path(__path__, __name__)

from . import config
from .log import RateLimitedLog
from .probe import Probe
from .version import VERSION

__version__ = VERSION
__all__ = ["start", "stop", "stats", "__version__"]

_lock = threading.Lock()
_probe: Optional[Probe] = None
_hooks_installed = False
_log = RateLimitedLog()


def start(**kwargs: Any) -> bool:
    """Start the probe in this process, once; later calls are no-ops while it runs.

    Keyword arguments are the APM_PROBE_* names lower-cased (socket, mode, interval,
    top_n, frames, key_type, max_memory, trace_window, snapshot_budget, object_counts,
    buffer_bytes, reconnect_max) and win over the environment. Returns True when the
    probe runs. A bad keyword argument raises ValueError (config.ConfigError), since it is
    a mistake in the calling code; a bad environment variable is logged once and the
    probe does not start. Nothing else raises.
    """
    try:
        settings = config.load(kwargs, os.environ)
    except config.ConfigError as exc:
        if not exc.from_env:
            raise
        _log.warn("config", f"not started: {exc}")
        return False
    try:
        unknown = config.unknown_env_names(os.environ)
        if unknown:
            _log.warn("config-unknown", "ignoring unknown settings " + ", ".join(unknown))
        return _start(settings)
    except Exception as exc:
        _log.warn("start", f"not started: {type(exc).__name__}: {exc}")
        return False


def _start(settings: config.Settings) -> bool:
    global _probe, _hooks_installed
    with _lock:
        if _probe is not None and _probe.alive and _probe.pid == os.getpid():
            return True
        probe = Probe(settings)
        probe.start()
        _probe = probe
        if not _hooks_installed:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            atexit.register(_stop_at_exit)
            _hooks_installed = True
    return True


def stop(timeout: float = 1.0) -> None:
    """Stop the probe, stopping tracemalloc if the probe started it. Waits at most
    `timeout` seconds for the probe thread; never raises."""
    global _probe
    try:
        with _lock:
            probe, _probe = _probe, None
        if probe is not None:
            probe.stop(timeout)
    except Exception as exc:
        _log.warn("stop", f"stop: {type(exc).__name__}: {exc}")


def stats() -> Dict[str, Any]:
    """The probe's counters (lines sent and dropped, errors, snapshots, ...) as a dict;
    {"running": False} when the probe is not running."""
    try:
        probe = _probe
        if probe is None:
            return {"running": False}
        return probe.stats()
    except Exception as exc:
        return {"running": False, "last_error": f"{type(exc).__name__}: {exc}"}


def _after_fork_in_child() -> None:
    # The child has only the thread that forked; the probe thread and any lock it held
    # are gone. Start afresh: new lock, new probe for the new pid, the parent's
    # descriptors closed on this side.
    global _lock, _probe
    try:
        _lock = threading.Lock()
        parent = _probe
        _probe = None
        if parent is not None and not parent._stopping:
            _probe = parent.forked()
    except Exception as exc:
        _log.warn("fork", f"not restarted after fork: {type(exc).__name__}: {exc}")


def _stop_at_exit() -> None:
    stop(timeout=0.5)
