"""How a test starts a Python process that loads the probe's sampling extension.

ctest passes APM_SAMPLER_DIR (the build tree's python/ directory, which holds
apm_probe/_sampler*.so; empty when the extension is not built) and, in the ASan build,
APM_SAMPLER_PRELOAD (libasan's path). An ASan-built extension loads only into a process
whose first library is libasan, so such a process gets it in LD_PRELOAD, with
PYTHONMALLOC=malloc (every Python allocation then reaches ASan through our hooks) and
leak detection off (the interpreter keeps objects alive at exit by design).
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

SOURCE = os.environ.get("APM_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
PROBE_DIR = os.path.join(os.path.abspath(SOURCE), "agent", "python")
SAMPLER_DIR = os.environ.get("APM_SAMPLER_DIR", "")
PRELOAD = os.environ.get("APM_SAMPLER_PRELOAD", "")


def available() -> bool:
    return bool(SAMPLER_DIR) and os.path.isdir(os.path.join(SAMPLER_DIR, "apm_probe"))


def env(base: Optional[Mapping[str, str]] = None, probe_on_path: bool = True) -> Dict[str, str]:
    """The environment of a child Python that can import apm_probe and its extension."""
    out = dict(os.environ if base is None else base)
    paths = [PROBE_DIR, SAMPLER_DIR] if probe_on_path else [SAMPLER_DIR]
    old = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    out["PYTHONPATH"] = os.pathsep.join([p for p in paths if p] + old)
    if PRELOAD:
        out["LD_PRELOAD"] = PRELOAD
        out["PYTHONMALLOC"] = "malloc"
        opts = out.get("ASAN_OPTIONS", "")
        out["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return out
