"""What the process calls itself: the script's base name or the -m module, and argv.

The probe may start before __main__ runs (from sitecustomize), when sys.argv is not yet
final (it reads ['-m', ...] for a module), so the original command line is parsed when
this Python keeps it (sys.orig_argv, 3.10 and later).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

def _from_command_line(argv: List[str]) -> Optional[str]:
    """Walk the interpreter's options the way Python does, up to what it will run."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-":
            return "-"
        if arg == "--":
            return os.path.basename(argv[i + 1]) if i + 1 < len(argv) else None
        if arg == "--check-hash-based-pycs":
            i += 2
            continue
        if arg.startswith("--"):
            i += 1
            continue
        if not arg.startswith("-"):
            return os.path.basename(arg)
        # A cluster of short options such as "-Bu" or "-Im module".
        for j in range(1, len(arg)):
            option = arg[j]
            if option in "cmWX":
                rest = arg[j + 1:]
                if not rest:
                    i += 1
                    rest = argv[i] if i < len(argv) else ""
                if option == "c":
                    return "-c"
                if option == "m":
                    return rest or None
                break
        i += 1
    return None


def program_name() -> str:
    """The name a person uses for this program: "app.py", "pkg.worker", "-c" or "python"."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name:
        return spec_name[: -len(".__main__")] if spec_name.endswith(".__main__") else spec_name
    orig = getattr(sys, "orig_argv", None)
    if orig:
        name = _from_command_line(list(orig))
        if name:
            return name
    if sys.argv and sys.argv[0] not in ("", "-m"):
        return os.path.basename(sys.argv[0]) or sys.argv[0]
    return os.path.basename(sys.executable or "python") or "python"


def command_line() -> List[str]:
    """The full command line as the interpreter received it."""
    orig = getattr(sys, "orig_argv", None)
    if orig:
        return [str(a) for a in orig]
    return [sys.executable or "python"] + [str(a) for a in sys.argv]
