"""The probe installed by pip into virtualenvs finds a leak through the real agent and collector.

1. A virtualenv of Debian's /usr/bin/python3 (python3-venv) gets the build's wheel
   (build/python-wheels/, the one the agent package ships) with `pip install --no-index`.
2. When the `python3` first on PATH is another interpreter (a 3.11 built elsewhere), a
   virtualenv of it gets the probe from a copy of the sources with `pip install --no-index
   --no-build-isolation` (no `wheel` package there: setup.py's stand-in makes the wheel).
   Otherwise the second virtualenv is Debian's again, installed from the sources the same way.
In each: `import apm_probe` and its `_sampler` extension come from the virtualenv, and
`--version` of the `apm-run` entry point and of `python -m apm_probe` print version.py's.
The first virtualenv's apm-run starting a Python that has no probe (a bare virtualenv) gives
it the probe from beside apm-run's _boot, without that site-packages on its path.
Then a leaking app runs in each virtualenv, under its `apm-run` in the first and under
`python -m apm_probe` in the second, at the probe's defaults (sampled mode) with a real
collector and agent; `apm-cli top` must name each app's leaking line first, as a sampled
estimate. Bounded: every wait has a deadline, the whole test takes 20 to 60 s.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
from harness import BUILD, SOURCE, Cluster, wait_for  # noqa: E402

DEBIAN_PY = "/usr/bin/python3"
LEAKY = textwrap.dedent(
    """
    import os, sys, time
    import apm_probe, apm_probe._sampler
    print("probe", apm_probe.__file__, flush=True)
    print("sampler", apm_probe._sampler.__file__, flush=True)
    print("pythonpath", os.environ.get("PYTHONPATH", ""), flush=True)
    cache = []
    while True:
        cache.append(bytearray(20000))   # LEAK
        time.sleep(0.02)
    """
)
LEAK_LINE = LEAKY.splitlines().index("    cache.append(bytearray(20000))   # LEAK") + 1


def run(argv: list, **kw) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "APM_PROBE_", "PIP_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", **extra)
    return env


def version() -> str:
    text = open(os.path.join(SOURCE, "agent", "python", "apm_probe", "version.py")).read()
    return re.search(r'^VERSION = "([^"]+)"$', text, re.M).group(1)


def make_venv(python: str, path: str, install: list) -> str:
    """A virtualenv of `python` at `path` with the probe installed from `install` (pip args)."""
    run([python, "-m", "venv", path], env=clean_env())
    vpy = os.path.join(path, "bin", "python")
    run([vpy, "-m", "pip", "install", "--no-index", *install], env=clean_env(), cwd=path)
    site = run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               env=clean_env()).strip()
    # Imported from /: no source tree on the path, only what pip installed.
    got = run([vpy, "-c", "import apm_probe, apm_probe._sampler as s; print(apm_probe.__file__); "
               "print(s.__file__)"], env=clean_env(), cwd="/").split()
    assert all(f.startswith(site + "/apm_probe/") for f in got), (site, got)
    want = version()
    assert run([os.path.join(path, "bin", "apm-run"), "--version"], env=clean_env()).strip() \
        == f"apm-run {want}"
    assert run([vpy, "-m", "apm_probe", "--version"], env=clean_env(), cwd="/").strip() \
        == f"python -m apm_probe {want}"
    where = run([vpy, "-c", "import sys; print(sys.version.split()[0], sys._base_executable)"],
                env=clean_env()).strip()
    print(f"{path}: Python {where} (from {python}) has the probe {want} in {site}")
    return site


def process_seen(c: Cluster, pid: int) -> None:
    wait_for(f"process {pid} stored",
             lambda: any(p["pid"] == pid for p in c.get("/api/v1/processes")["processes"]), 30)


def main() -> int:
    wheels = glob.glob(os.path.join(BUILD, "python-wheels", "apm_probe-*.whl"))
    assert len(wheels) == 1, (f"want one wheel in {BUILD}/python-wheels, found {wheels} (python3-setuptools, "
                              "python3-wheel and python3-pip build it: deploy/install-deps.sh)")
    other = shutil.which("python3", path=os.environ.get("PATH", "")) or DEBIAN_PY
    c = Cluster()
    tmp = c.dir
    try:
        # pip builds in the tree it is given: a copy, so the sources stay clean.
        src = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(SOURCE, "agent", "python"), src,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        venv1, venv2 = os.path.join(tmp, "venv-wheel"), os.path.join(tmp, "venv-src")
        site1 = make_venv(DEBIAN_PY, venv1, wheels)
        site2 = make_venv(other, venv2, ["--no-build-isolation", src])

        # The virtualenv's apm-run starting an interpreter that has no probe: it gets the
        # probe from beside _boot (sitecustomize), not the virtualenv's site-packages.
        bare = os.path.join(tmp, "venv-bare")
        run([DEBIAN_PY, "-m", "venv", "--without-pip", bare], env=clean_env())
        out = run([os.path.join(venv1, "bin", "apm-run"), os.path.join(bare, "bin", "python"), "-c",
                   "import sys, apm_probe; print(apm_probe.__file__); print(sys.path)"],
                  env=clean_env(APM_PROBE_SOCKET=os.path.join(tmp, "nobody.sock")), cwd="/")
        assert out.startswith(f"{site1}/apm_probe/__init__.py\n") and f"'{site1}'" not in out, out

        sock = os.path.join(tmp, "probe.sock")
        c.start_collector()
        c.start_agent("--probe-socket", sock, interval="0.5s")
        script = os.path.join(tmp, "leaky.py")
        with open(script, "w") as f:
            f.write(LEAKY)
        env = clean_env(APM_PROBE_SOCKET=sock, APM_PROBE_INTERVAL="1")
        py1, py2 = os.path.join(venv1, "bin", "python"), os.path.join(venv2, "bin", "python")
        apps = [(c.spawn("app-apm-run", [os.path.join(venv1, "bin", "apm-run"), py1, script], env), site1),
                (c.spawn("app-python-m", [py2, "-m", "apm_probe", py2, script], env), site2)]
        for app, _ in apps:
            process_seen(c, app.p.pid)

        def leading(pid: int):
            sites = c.cli_json("top", "--pid", str(pid), "--window", "1m")["sites"]
            return sites if sites and sites[0]["file"] == script and sites[0]["line"] == LEAK_LINE \
                and sites[0]["size_growth"] > 0 and sites[0]["source"] == "sampled" else None

        for app, site in apps:
            pid = app.p.pid
            sites = wait_for(f"{app.name}'s leaking line on top", lambda: leading(pid), 60)
            out = app.output()
            # The probe and its extension came from this virtualenv; apm-run put no
            # site-packages directory on PYTHONPATH, only the probe's _boot.
            assert f"probe {site}/apm_probe/__init__.py" in out, out
            assert f"sampler {site}/apm_probe/_sampler" in out, out
            assert f"pythonpath {site}/apm_probe/_boot\n" in out, out
            table = c.cli("top", "--pid", str(pid), "--window", "1m").stdout
            assert f"{script}:{LEAK_LINE}" in table, table
            print(f"{app.name}: {sites[0]['site']} +{sites[0]['rate_mb_per_h']:.1f} MB/h "
                  f"({sites[0]['source']})")
            app.stop()
        return 0
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()
        c.cleanup()


if __name__ == "__main__":
    sys.exit(main())
