"""The probe's compiled part for pip (pyproject.toml has everything else).

apm_probe._sampler (sampler/*.c) reads CPython 3.11 and 3.12 frames; it is compiled
with the headers of the interpreter that runs the build (sysconfig's include directory:
python3-dev for Debian's python3). Elsewhere, another interpreter or no headers, the build
leaves it out with one line saying why, and the probe falls back to tracemalloc
(docs/probe.md). APM_PROBE_BUILD_SAMPLER=1 turns that into an error, =0 skips it.

setuptools before 70.1 makes wheels with the `wheel` package's bdist_wheel command. A
virtualenv has setuptools (from ensurepip) but not `wheel`, and --no-index cannot fetch it;
there the small BdistWheel below stands in, so `pip install --no-index --no-build-isolation
./agent/python` works in a plain virtualenv of any interpreter. Where `wheel` is importable
(Debian's python3-wheel) it is used as usual.
"""

import base64
import hashlib
import os
import shutil
import sys
import sysconfig
import zipfile

from setuptools import Command, Extension, setup
from setuptools.command.build_ext import build_ext

WANT = os.environ.get("APM_PROBE_BUILD_SAMPLER", "")


def _why_not() -> str:
    if WANT == "0":
        return "APM_PROBE_BUILD_SAMPLER=0"
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 12):
        return f"it reads CPython 3.11 and 3.12 frames, this is {sys.implementation.name} {sys.version.split()[0]}"
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "internal", "pycore_frame.h")):
        return f"no Python headers in {include} (Debian: apt-get install python3-dev)"
    return ""


class BuildExt(build_ext):
    """Says, once, that the extension is left out, or fails when it was asked for."""

    def run(self) -> None:
        why = _why_not()
        if why:
            if WANT == "1":
                raise SystemExit(f"apm_probe._sampler: cannot build: {why}")
            sys.stderr.write(f"apm_probe._sampler: not built ({why}); the probe uses tracemalloc\n")
            self.extensions = []
            return
        super().run()


SAMPLER = Extension(
    "apm_probe._sampler",
    sources=["sampler/sampler.c", "sampler/sampler_hooks.c", "sampler/sampler_table.c"],
    depends=["sampler/sampler_priv.h"],
    libraries=["m"],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden"],
)

def _walk(top: str, base: str) -> "list[tuple[str, str]]":
    """(path, path relative to base) of every file below top."""
    return [(os.path.join(root, n), os.path.relpath(os.path.join(root, n), base))
            for root, _, names in os.walk(top) for n in sorted(names)]


class BdistWheel(Command):
    """A wheel of what `build` made, tagged for this interpreter (used without `wheel`)."""

    description = "build a wheel (apm's stand-in for the wheel package's bdist_wheel)"
    user_options = [("dist-dir=", "d", "directory for the .whl")]

    def initialize_options(self) -> None:
        self.dist_dir = None

    def finalize_options(self) -> None:
        self.dist_dir = self.dist_dir or "dist"

    @staticmethod
    def egg2dist(egg_info: str, dist_info: str) -> None:
        """The .dist-info of an .egg-info: METADATA is PKG-INFO (no requirements to map)."""
        shutil.rmtree(dist_info, ignore_errors=True)
        os.makedirs(dist_info)
        shutil.copyfile(os.path.join(egg_info, "PKG-INFO"), os.path.join(dist_info, "METADATA"))
        for name in ("entry_points.txt", "top_level.txt"):
            if os.path.exists(os.path.join(egg_info, name)):
                shutil.copyfile(os.path.join(egg_info, name), os.path.join(dist_info, name))

    def run(self) -> None:
        self.run_command("build")
        lib = self.get_finalized_command("build").build_lib
        self.run_command("egg_info")
        egg_info = self.get_finalized_command("egg_info").egg_info
        name = self.distribution.get_name().replace("-", "_")
        stem = f"{name}-{self.distribution.get_version()}"
        impl = f"cp{sys.version_info[0]}{sys.version_info[1]}"
        tag = f"{impl}-{impl}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"
        dist_info = os.path.join(self.get_finalized_command("build").build_base, stem + ".dist-info")
        self.egg2dist(egg_info, dist_info)
        with open(os.path.join(dist_info, "WHEEL"), "w") as f:
            f.write(f"Wheel-Version: 1.0\nGenerator: apm-probe setup.py\nRoot-Is-Purelib: false\nTag: {tag}\n")
        files = _walk(lib, lib) + _walk(dist_info, os.path.dirname(dist_info))
        os.makedirs(self.dist_dir, exist_ok=True)
        record = f"{stem}.dist-info/RECORD"
        lines = []
        with zipfile.ZipFile(os.path.join(self.dist_dir, f"{stem}-{tag}.whl"), "w", zipfile.ZIP_DEFLATED) as z:
            for path, arc in files:
                if arc == record or arc.endswith(".pyc"):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                lines.append(f"{arc},sha256={digest},{len(data)}")
                z.write(path, arc)
            z.writestr(record, "\n".join(lines + [f"{record},,"]) + "\n")


try:
    import wheel.bdist_wheel  # noqa: F401  (Debian's python3-wheel, when importable)

    COMMANDS = {"build_ext": BuildExt}
except ImportError:
    COMMANDS = {"build_ext": BuildExt, "bdist_wheel": BdistWheel}

setup(ext_modules=[SAMPLER], cmdclass=COMMANDS)
