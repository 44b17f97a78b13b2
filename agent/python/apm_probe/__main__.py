"""`python -m apm_probe COMMAND [ARGS...]`: apm-run, for where apm-run is not on PATH."""

import sys

from .launcher import main

sys.exit(main(prog="python -m apm_probe"))
