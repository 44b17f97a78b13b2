"""apm-run: start a Python program with the apm probe inside, without changing its code.

    apm-run python app.py [ARGS...]
    apm-run python -m package.module [ARGS...]
    apm-run gunicorn app:wsgi          (any program that runs on Python)
    python -m apm_probe python app.py  (the same, where apm-run is not on PATH)

It puts the directory holding the probe's sitecustomize.py (apm_probe/_boot; that module
runs any sitecustomize it shadows, then starts the probe) first on PYTHONPATH and replaces
itself with the command. The directory holding apm_probe goes on PYTHONPATH too, unless it
is a site-packages directory (a virtualenv's, after `pip install`): that one holds other
packages, and the virtualenv's interpreter finds apm_probe there anyway. Settings come from
the APM_PROBE_* environment variables; see docs/probe.md. Python processes the program
starts inherit PYTHONPATH and are probed too. Python run with -E or -I ignores PYTHONPATH
and so runs without the probe.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from . import config
from .version import VERSION

SITE_DIRS = ("site-packages", "dist-packages")


def _paths() -> "tuple[str, str]":
    """The directory holding the apm_probe package, and its _boot directory."""
    package = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(package), os.path.join(package, "_boot")


def main(argv: Optional[List[str]] = None, prog: str = "apm-run") -> int:
    """Runs argv (default sys.argv[1:]) with the probe inside; returns only on an error."""
    argv = sys.argv[1:] if argv is None else argv
    usage = f"usage: {prog} COMMAND [ARGS...]   (for example: {prog} python app.py)"
    if argv and argv[0] == "--":
        argv = argv[1:]
    elif argv and argv[0] in ("-h", "--help"):
        print(usage)
        print("Settings: APM_PROBE_SOCKET, APM_PROBE_MODE, APM_PROBE_INTERVAL, APM_PROBE_TOP_N,")
        print("APM_PROBE_FRAMES, APM_PROBE_KEY_TYPE and more; see docs/probe.md.")
        return 0
    elif argv and argv[0] == "--version":
        print(f"{prog} {VERSION}")
        return 0
    elif argv and argv[0].startswith("-"):
        sys.stderr.write(f"{prog}: unknown option {argv[0]}\n{usage}\n")
        return 1
    if not argv:
        sys.stderr.write(usage + "\n")
        return 1
    here, boot = _paths()
    if not os.path.isfile(os.path.join(boot, "sitecustomize.py")):
        sys.stderr.write(f"{prog}: {boot}/sitecustomize.py is missing; is the probe installed?\n")
        return 1
    # Refuse bad settings here, with the variable named, rather than in every process.
    try:
        config.load({}, os.environ)
    except config.ConfigError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    ours = [boot] if os.path.basename(here) in SITE_DIRS else [boot, here]
    old = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in (boot, here)]
    os.environ["PYTHONPATH"] = os.pathsep.join(ours + old)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"{prog}: {argv[0]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 126
