#!/usr/bin/python3
"""The Debian packages, built by CPack and installed on this machine with apt-get.

Builds apm-agent, apm-collector and apm-cli .debs with deploy/build-packages.sh in a separate
tree (APM_BUILD_DIR/packages: never sanitizer binaries; Debian's dpkg-buildflags), then:
- checks their metadata: shared-library dependencies, conffiles, no token inside;
- checks that the programs carry Debian's hardening (RELRO, PIE, stack protector,
  fortified libc calls);
- installs them with apt-get, so dependencies, maintainer scripts and conffiles run, and
  checks the apm user, /var/lib/apm, the generated token, the configs, the probe's byte
  code, the enabled collector unit, and `systemd-analyze verify` on both units;
- checks `--version` of each program against the package version;
- runs the installed agent with the installed config before a token is set (it must refuse
  with one line), then the collector and the agent with the installed configs on ports of
  their own, each with the user and capabilities its installed unit names (the agent: apm
  with CAP_SYS_PTRACE only), a Python program started by the installed apm-run, and the packaged apm-cli;
  samples must flow, PSS of a root-owned process included (the capability at work);
- reinstalls over the running state (the upgrade path): token, data and an edited conffile stay;
- removes (data, token and configs stay) and purges (they go, and the units' links).

The machine is left as it was found: a package test on a machine where apm is installed,
or /etc/apm or /var/lib/apm exist, fails before touching anything; the apm user and any
dependency apt-get pulled in are removed when the test created them. A lock file keeps
two runs (the normal and the sanitizer build, say) from overlapping. Needs root.
"""
from __future__ import annotations

import fcntl
import glob
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(__file__))
from harness import free_port, wait_for  # noqa: E402

BUILD = os.path.abspath(os.environ.get("APM_BUILD_DIR") or "build")
SOURCE = os.path.abspath(os.environ.get("APM_SOURCE_DIR")
                         or os.path.join(os.path.dirname(__file__), "..", ".."))
PKG_DIR = os.path.join(BUILD, "packages")
PACKAGES = ("apm-agent", "apm-collector", "apm-cli")
LOCK = "/run/lock/apm-package-test.lock"
HOST = "pkg-test-host"
APT_ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
APT = ["apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120",
       "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
APP = r"""
import sys, time
assert "apm_probe" in sys.modules, "apm-run did not load the probe"
print("probe loaded from", sys.modules["apm_probe"].__file__, flush=True)
print("probe mode", sys.modules["apm_probe"].stats().get("mode"),
      sys.modules["apm_probe"].stats().get("sampler_error"), flush=True)
hold = [bytearray(1 << 20) for _ in range(16)]
time.sleep(120)
"""


# ctest kills the test at 300 s, which would skip the cleanup: every command gets at most
# what is left before this budget, so a slow step fails in time for the cleanup to run.
BUDGET_S = 240.0
STARTED = time.monotonic()


def log(msg: str) -> None:
    print(msg, flush=True)


def run(argv: list[str], timeout: float = 60, check: bool = True, env: Optional[dict] = None,
        cwd: Optional[str] = None, budget: bool = True) -> subprocess.CompletedProcess:
    if budget:
        timeout = max(5.0, min(timeout, BUDGET_S - (time.monotonic() - STARTED)))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def pkg_status(name: str) -> str:
    """dpkg's two-letter status ('ii', 'rc', ...), or '' when dpkg does not know the package."""
    r = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name], check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def new_packages(apt_output: str) -> set[str]:
    """The packages apt-get says it installs anew ("The following NEW packages ...")."""
    names: set[str] = set()
    inside = False
    for line in apt_output.splitlines():
        if line.startswith("The following NEW packages will be installed"):
            inside = True
        elif inside and line.startswith("  "):
            names.update(line.split())
        else:
            inside = False
    return names


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name: str) -> bool:
    return run(["getent", "group", name], check=False).returncode == 0


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def mode_owner(path: str) -> tuple[int, str, str]:
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def as_unit(unit: str) -> list[str]:
    """A setpriv prefix that runs a program with the user and capabilities the installed
    unit gives it (systemd itself is not running here), with no new privileges."""
    keys: dict[str, str] = {}
    with open(f"/lib/systemd/system/{unit}") as f:
        for line in f:
            k, sep, v = line.strip().partition("=")
            if sep and not k.startswith("#"):
                keys[k] = v.strip()
    expect(keys.get("NoNewPrivileges") == "yes", f"{unit}: NoNewPrivileges is not yes")
    ambient = keys.get("AmbientCapabilities", "").split()
    bounding = keys.get("CapabilityBoundingSet", "").split()
    expect(set(ambient) <= set(bounding), f"{unit}: ambient capabilities outside the bounding set")
    caps = "".join(",+" + c.lower().removeprefix("cap_") for c in ambient)
    bset = "".join(",+" + c.lower().removeprefix("cap_") for c in bounding)
    return ["setpriv", f"--reuid={keys['User']}", f"--regid={keys['Group']}", "--init-groups",
            "--no-new-privs", f"--inh-caps=-all{caps}", f"--ambient-caps=-all{caps}",
            f"--bounding-set=-all{bset}"]


class Child:
    def __init__(self, name: str, argv: list[str], workdir: str, env: Optional[dict] = None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)

    def stop(self) -> Optional[int]:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
                return None
        self.log.close()
        return self.p.returncode

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class PackageTest:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="apm-pkg-")
        os.chmod(self.tmp, 0o755)  # the apm user reaches the probe socket and the app here
        self.children: list[Child] = []
        self.app: Optional[Child] = None
        self.user_before = user_exists("apm")
        self.group_before = group_exists("apm")
        self.pulled_in: set[str] = set()
        self.touched = False
        self.debs: dict[str, str] = {}

    # -- preconditions and build ---------------------------------------------------------

    def preconditions(self) -> None:
        for p in PACKAGES:
            st = pkg_status(p)
            expect(st in ("", "un", "pn"),
                   f"{p} is known to dpkg here ({st}); this test installs and purges it, so it "
                   "will not run on a machine where apm is installed")
        for d in ("/etc/apm", "/var/lib/apm", "/var/lib/apm-agent", "/usr/lib/apm"):
            expect(not os.path.lexists(d),
                   f"{d} exists; this test would delete it at purge, so it refuses to run")

    def build(self) -> None:
        t0 = time.monotonic()
        run([os.path.join(SOURCE, "deploy", "build-packages.sh"), PKG_DIR], timeout=480)
        for p in PACKAGES:
            found = glob.glob(os.path.join(PKG_DIR, f"{p}_*.deb"))
            expect(len(found) == 1, f"expected one {p}_*.deb in {PKG_DIR}, found {found}")
            self.debs[p] = found[0]
        log(f"ok: built {', '.join(os.path.basename(d) for d in self.debs.values())} "
            f"in {time.monotonic() - t0:.0f}s")

    def inspect(self) -> None:
        field = lambda p, f: run(["dpkg-deb", "-f", self.debs[p], f]).stdout.strip()  # noqa: E731
        for p, libs in (("apm-agent", ("libuv1", "libprotobuf-c1", "libinih1", "python3", "adduser")),
                        ("apm-collector", ("libuv1", "liblmdb0", "libhttp-parser2.9", "libjansson4",
                                           "adduser")),
                        ("apm-cli", ("libcurl4", "libjansson4"))):
            deps = field(p, "Depends")
            for lib in libs:
                expect(re.search(rf"(^|, ){re.escape(lib)}( |,|$)", deps) is not None,
                       f"{p} Depends lacks {lib}: {deps}")
        for p, conf in (("apm-agent", "/etc/apm/agent.conf"),
                        ("apm-collector", "/etc/apm/collector.conf")):
            r = run(["dpkg-deb", "-I", self.debs[p], "conffiles"])
            expect(r.stdout.split() == [conf], f"{p} conffiles: {r.stdout!r}")
        for p in PACKAGES:
            listing = run(["dpkg-deb", "-c", self.debs[p]]).stdout
            expect("token" not in listing.replace("token-file", ""), f"{p} ships a token:\n{listing}")
            expect("__pycache__" not in listing, f"{p} ships byte code")
        listing = run(["dpkg-deb", "-c", self.debs["apm-agent"]]).stdout
        expect(re.search(r"/usr/lib/python3/dist-packages/apm_probe/_sampler\.cpython-3\d+-[^ ]*\.so",
                         listing) is not None, f"apm-agent lacks the sampling extension:\n{listing}")
        expect(re.search(r"/usr/share/apm/wheels/apm_probe-[0-9.]+-cp3\d+-cp3\d+-linux_[a-z0-9_]+\.whl",
                         listing) is not None, f"apm-agent lacks the probe's wheel:\n{listing}")
        shipped = {"apm-agent": ("man8/apm-agent.8.gz", "man5/apm-agent.conf.5.gz"),
                   "apm-collector": ("man8/apm-collector.8.gz", "man5/apm-collector.conf.5.gz"),
                   "apm-cli": ("man1/apm-cli.1.gz",)}
        for p in PACKAGES:
            listing = run(["dpkg-deb", "-c", self.debs[p]]).stdout
            wanted = [f"./usr/share/doc/{p}/copyright", f"./usr/share/doc/{p}/changelog.Debian.gz"]
            wanted += [f"./usr/share/man/{m}" for m in shipped[p]]
            if p == "apm-cli":
                wanted.append("./usr/share/bash-completion/completions/apm-cli")
            for path in wanted:
                expect(re.search(rf" {re.escape(path)}$", listing, re.M) is not None,
                       f"{p} lacks {path}:\n{listing}")
        log("ok: package metadata (Depends from the shared libraries, conffiles, no token, "
            "copyright, changelog, man pages, completion)")
        self.check_hardening()

    def check_hardening(self) -> None:
        """What dpkg-buildflags asks for is in each program, as hardening-check would see it."""
        for p, prog in (("apm-agent", "apm-agent"), ("apm-collector", "apm-collector"),
                        ("apm-cli", "apm-cli")):
            root = os.path.join(self.tmp, "x-" + p)
            run(["dpkg-deb", "-x", self.debs[p], root])
            binary = os.path.join(root, "usr", "bin", prog)
            header = run(["readelf", "-hW", binary]).stdout
            segments = run(["readelf", "-lW", binary]).stdout
            syms = run(["readelf", "--dyn-syms", "-W", binary]).stdout
            expect(re.search(r"Type:\s+DYN", header) is not None, f"{prog} is not PIE")
            expect("GNU_RELRO" in segments, f"{prog} has no RELRO segment")
            expect("__stack_chk_fail" in syms, f"{prog} is built without the stack protector")
            expect(re.search(r"__\w+_chk\b", syms.replace("__stack_chk_fail", "")) is not None,
                   f"{prog} calls no fortified libc function (-D_FORTIFY_SOURCE)")
        log("ok: programs hardened (PIE, RELRO, stack protector, fortified calls)")

    # -- install -------------------------------------------------------------------------

    def install(self, reinstall: bool = False) -> str:
        self.touched = True
        argv = APT + (["--reinstall"] if reinstall else []) + ["install"] + \
            [self.debs[p] for p in PACKAGES]
        out = run(argv, env=APT_ENV, timeout=240).stdout
        self.pulled_in |= new_packages(out) - set(PACKAGES)
        return out

    def check_installed(self, out: str) -> None:
        for p in PACKAGES:
            expect(pkg_status(p) == "ii", f"{p} not installed: {pkg_status(p)}")
        u = pwd.getpwnam("apm")
        expect(u.pw_uid < 1000 and u.pw_shell in ("/usr/sbin/nologin", "/bin/false"),
               f"apm is not a system user: {u}")
        expect(mode_owner("/var/lib/apm") == (0o750, "apm", "apm"),
               f"/var/lib/apm is {mode_owner('/var/lib/apm')}")
        expect(mode_owner("/var/lib/apm-agent") == (0o750, "apm", "apm"),
               f"/var/lib/apm-agent (the agent's spool) is {mode_owner('/var/lib/apm-agent')}")
        expect(mode_owner("/var/lib/apm/token") == (0o600, "apm", "apm"),
               f"token is {mode_owner('/var/lib/apm/token')}")
        with open("/var/lib/apm/token") as f:
            expect(re.fullmatch(r"[0-9a-f]{64}\n", f.read()) is not None, "token is not 64 hex")
        for conf, p in (("/etc/apm/agent.conf", "apm-agent"),
                        ("/etc/apm/collector.conf", "apm-collector")):
            expect(mode_owner(conf) == (0o644, "root", "root"), f"{conf} is {mode_owner(conf)}")
            cf = run(["dpkg-query", "-W", "-f=${Conffiles}", p]).stdout
            expect(conf in cf, f"dpkg does not list {conf} as a conffile of {p}: {cf!r}")
        expect(glob.glob("/usr/lib/python3/dist-packages/apm_probe/__pycache__/*.pyc") != [],
               "the postinst did not byte-compile apm_probe")
        wants = "/etc/systemd/system/multi-user.target.wants"
        expect(os.path.islink(f"{wants}/apm-collector.service"), "apm-collector.service not enabled")
        expect(not os.path.lexists(f"{wants}/apm-agent.service"),
               "apm-agent.service enabled before it has a token")
        expect("token" in out and "/etc/apm/agent.conf" in out,
               f"the agent's postinst did not say how to set the token:\n{out}")
        r = run(["systemd-analyze", "verify", "/lib/systemd/system/apm-agent.service",
                 "/lib/systemd/system/apm-collector.service"], check=False, timeout=60)
        expect(r.returncode == 0 and "apm-" not in r.stdout + r.stderr,
               f"systemd-analyze verify: {r.returncode}\n{r.stdout}{r.stderr}")
        r = run(["/usr/bin/python3", "-c", "import apm_probe, sys; print(apm_probe.__file__)"],
                cwd="/")
        expect(r.stdout.startswith("/usr/lib/python3/dist-packages/apm_probe/"),
               f"Debian's python3 finds apm_probe at {r.stdout!r}")
        r = run(["/usr/bin/python3", "-c", "import apm_probe._sampler as s; print(s.__file__)"],
                cwd="/", env=dict(os.environ, PYTHONPATH=""))
        expect(r.stdout.startswith("/usr/lib/python3/dist-packages/apm_probe/_sampler"),
               f"Debian's python3 loads the sampling extension from {r.stdout!r}")
        tls = "/var/lib/apm/tls"
        for f, mode in (("ca.key", 0o600), ("server.key", 0o600), ("ca.crt", 0o644),
                        ("server.crt", 0o644)):
            expect(mode_owner(f"{tls}/{f}") == (mode, "apm", "apm"),
                   f"{tls}/{f} is {mode_owner(f'{tls}/{f}')}")
        r = run(["openssl", "verify", "-CAfile", f"{tls}/ca.crt", f"{tls}/server.crt"],
                check=False)
        expect(r.returncode == 0, f"the package's server certificate: {r.stdout}{r.stderr}")
        san = run(["openssl", "x509", "-in", f"{tls}/server.crt", "-noout", "-ext",
                   "subjectAltName"]).stdout
        expect("IP Address:127.0.0.1" in san and "DNS:localhost" in san,
               f"the server certificate names {san!r}")
        log("ok: installed: apm user, /var/lib/apm 0750, token 0600, conffiles, byte code, "
            "collector unit enabled, units verified, probe importable, sampler loads, TLS CA and "
            "server certificate made")

    def check_versions(self) -> None:
        version = run(["dpkg-query", "-W", "-f=${Version}", "apm-collector"]).stdout
        upstream = version.rsplit("-", 1)[0]
        for prog in ("apm-agent", "apm-collector", "apm-cli"):
            out = run([f"/usr/bin/{prog}", "--version"]).stdout.strip()
            m = re.fullmatch(rf"{prog} (\S+) \(([0-9a-f]{{7,40}}|[^)]+)\)", out)
            expect(m is not None, f"{prog} --version says {out!r}")
            expect(m.group(1) == upstream, f"{prog} --version {m.group(1)} != package {upstream}")
            commit = m.group(2).split("-dirty")[0]
            if not os.path.exists(os.path.join(SOURCE, ".git")):
                continue  # a source tarball: CMake found no commit to name
            r = run(["git", "-C", SOURCE, "cat-file", "-e", f"{commit}^{{commit}}"], check=False)
            expect(r.returncode == 0, f"{prog} --version names commit {commit}, unknown to git")
        log(f"ok: --version reports {upstream} and a commit of this repository")

    # -- run the installed programs ------------------------------------------------------

    def agent_refuses_without_token(self) -> None:
        r = run(as_unit("apm-agent.service") + ["/usr/bin/apm-agent", "--config", "/etc/apm/agent.conf"], check=False,
                timeout=20)
        lines = r.stderr.splitlines()
        expect(r.returncode != 0 and len(lines) == 1 and "no token" in lines[0],
               f"agent without a token: exit {r.returncode}, stderr {r.stderr!r}")
        # Outside journald (no JOURNAL_STREAM): RFC 3339 time, program, level; no colour codes.
        expect(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z apm-agent error: ", lines[0])
               is not None and "\x1b" not in lines[0], f"log line {lines[0]!r}")
        log(f"ok: the installed agent refuses to start without a token: {lines[0]}")

    def operator_sets_token(self) -> None:
        run(["install", "-o", "apm", "-g", "apm", "-m", "0600", "/var/lib/apm/token",
             "/etc/apm/token"])
        with open("/etc/apm/agent.conf") as f:
            text = f.read()
        new, n = re.subn(r"(?m)^# token-file = /etc/apm/token$", "token-file = /etc/apm/token",
                         text)
        expect(n == 1, "agent.conf has no '# token-file = /etc/apm/token' line to uncomment")
        # TLS: one line on each side, with the CA the collector's package made.
        run(["install", "-m", "0644", "/var/lib/apm/tls/ca.crt", "/etc/apm/ca.crt"])
        new, n = re.subn(r"(?m)^# tls-ca = /etc/apm/ca.crt$", "tls-ca = /etc/apm/ca.crt", new)
        expect(n == 1, "agent.conf has no '# tls-ca = /etc/apm/ca.crt' line to uncomment")
        with open("/etc/apm/agent.conf", "w") as f:
            f.write(new)
        with open("/etc/apm/collector.conf") as f:
            text = f.read()
        new, n = re.subn(r"(?m)^# tls = false$", "tls = true", text)
        expect(n == 1, "collector.conf has no '# tls = false' line to uncomment")
        with open("/etc/apm/collector.conf", "w") as f:
            f.write(new)

    def start(self) -> tuple[str, int]:
        ingest, http = free_port(), free_port()
        url = f"http://127.0.0.1:{http}"
        col = Child("collector", as_unit("apm-collector.service") + [
            "/usr/bin/apm-collector", "--config", "/etc/apm/collector.conf", "--foreground",
            "--listen", f"127.0.0.1:{ingest}", "--http", f"127.0.0.1:{http}"], self.tmp)
        self.children.append(col)
        wait_for("the installed collector's HTTP API", lambda: self.cli(url, "status").returncode == 0
                 or col.p.poll() is not None, 20)
        expect(col.p.poll() is None, f"collector exited:\n{col.output()}")
        sock = os.path.join(self.tmp, "probe.sock")
        agent = Child("agent", as_unit("apm-agent.service") + [
            "/usr/bin/apm-agent", "--config", "/etc/apm/agent.conf", "--collector",
            f"127.0.0.1:{ingest}", "--interval", "0.5s", "--probe-socket", sock, "--host", HOST],
            self.tmp)
        self.children.append(agent)
        script = os.path.join(self.tmp, "app.py")
        with open(script, "w") as f:
            f.write(APP)
        env = dict(os.environ, APM_PROBE_SOCKET=sock)
        env.pop("PYTHONPATH", None)
        app = Child("app", ["/usr/bin/apm-run", "/usr/bin/python3", script], self.tmp, env)
        self.children.append(app)
        self.app = app
        return url, app.p.pid

    def cli(self, url: str, *args: str) -> subprocess.CompletedProcess:
        return run(["/usr/bin/apm-cli", "--server", url, *args], check=False, timeout=20)

    def check_flow(self, url: str, app_pid: int) -> None:
        def hosts() -> bool:
            r = self.cli(url, "--json", "hosts")
            return r.returncode == 0 and HOST in r.stdout

        def metrics() -> set[str]:
            r = self.cli(url, "--json", "series")
            if r.returncode != 0:
                return set()
            return {s["metric"] for s in json.loads(r.stdout)["series"] if s.get("pid") == app_pid}

        try:
            wait_for("the agent's host in apm-cli hosts", hosts, 30)
            got = wait_for("rss and pss of the apm-run program",
                           lambda: {"rss", "pss"} <= metrics() and metrics(), 30)
        except AssertionError:
            for c in self.children:
                log(f"--- {c.name} log:\n{c.output()}")
            raise
        expect(self.app.p.poll() is None,
               f"the program under apm-run exited:\n{self.app.output()}")
        try:
            wait_for("the program under apm-run to report where the probe came from",
                     lambda: "probe loaded from" in self.app.output(), 15)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.app.output()}") from None
        expect("probe loaded from /usr/lib/apm/apm_probe/" in self.app.output(),
               f"apm-run loaded the probe from elsewhere:\n{self.app.output()}")
        expect("probe mode sampled" in self.app.output(),
               f"the probe under apm-run does not sample:\n{self.app.output()}")
        table = self.cli(url, "series", "--pid", str(app_pid), "--metric", "pss")
        expect(table.returncode == 0 and re.search(rf"\b{app_pid}\b.*\bpss\b", table.stdout),
               f"apm-cli series (table): {table.returncode} {table.stdout} {table.stderr}")
        st = json.loads(self.cli(url, "--json", "status").stdout)
        expect(st["ingest"]["tls_sessions"] >= 1,
               f"the agent did not connect over TLS: {st['ingest']}")
        log(f"ok: samples flow over TLS: {HOST} in apm-cli hosts; series {sorted(got)} of the "
            f"root-owned program {app_pid} started by apm-run (PSS read by the agent as apm with "
            f"CAP_SYS_PTRACE)")

    def stop_all(self) -> None:
        for c in reversed(self.children):
            rc = c.stop()
            if c.name != "app":
                expect(rc == 0, f"{c.name} exited {rc} on SIGTERM:\n{c.output()}")
        self.children = []

    # -- upgrade, remove, purge ----------------------------------------------------------

    def reinstall(self) -> None:
        with open("/var/lib/apm/token") as f:
            token = f.read()
        self.install(reinstall=True)
        with open("/var/lib/apm/token") as f:
            expect(f.read() == token, "reinstalling replaced the token")
        with open("/etc/apm/agent.conf") as f:
            expect("\ntoken-file = /etc/apm/token\n" in f.read(), "reinstalling lost the edited conffile")
        expect(os.path.exists("/var/lib/apm/data.mdb"), "reinstalling lost the store")
        log("ok: reinstall (upgrade path) keeps the token, the store and the edited agent.conf")

    def remove(self) -> None:
        run(APT + ["remove"] + list(PACKAGES), env=APT_ENV, timeout=120)
        for p in PACKAGES:
            expect(pkg_status(p) in ("rc", ""), f"{p} after remove: {pkg_status(p)}")
        for f in ("/usr/bin/apm-agent", "/usr/bin/apm-collector", "/usr/bin/apm-cli",
                  "/usr/bin/apm-run", "/usr/lib/apm", "/usr/lib/python3/dist-packages/apm_probe",
                  "/usr/share/apm/wheels"):
            expect(not os.path.lexists(f), f"{f} still there after remove")
        for f in ("/var/lib/apm/data.mdb", "/var/lib/apm/token", "/etc/apm/agent.conf",
                  "/etc/apm/collector.conf", "/etc/apm/token"):
            expect(os.path.exists(f), f"{f} gone after remove (only purge may delete it)")
        log("ok: remove: programs gone; store, token and configs kept")

    def purge(self) -> None:
        # apm-cli has no conffiles: remove already made dpkg forget it.
        left = [p for p in PACKAGES if pkg_status(p) == "rc"]
        expect(set(left) == {"apm-agent", "apm-collector"}, f"removed, not purged: {left}")
        run(APT + ["purge"] + left, env=APT_ENV, timeout=120)
        for p in PACKAGES:
            expect(pkg_status(p) in ("", "un", "pn"), f"{p} after purge: {pkg_status(p)}")
        for f in ("/var/lib/apm", "/var/lib/apm-agent", "/etc/apm"):
            if os.path.lexists(f):
                raise AssertionError(f"{f} still there after purge: {os.listdir(f)}")
        left = [p for p in glob.glob("/etc/systemd/system/**/apm-*", recursive=True)
                + glob.glob("/var/lib/systemd/deb-systemd-*/**/apm-*", recursive=True)]
        expect(left == [], f"unit links or state left after purge: {left}")
        log("ok: purge: /var/lib/apm, /etc/apm and the units' links are gone")

    # -- cleanup ---------------------------------------------------------------------------

    def cleanup(self) -> None:
        for c in self.children:
            c.stop()
        if self.touched:
            known = [p for p in PACKAGES if pkg_status(p) not in ("", "un", "pn")]
            if known:
                run(APT + ["purge"] + known, env=APT_ENV, timeout=60, check=False, budget=False)
            extra = sorted(p for p in self.pulled_in if pkg_status(p) == "ii")
            if extra:
                log(f"cleanup: purging what apt-get pulled in: {' '.join(extra)}")
                run(APT + ["purge"] + extra, env=APT_ENV, timeout=60, check=False, budget=False)
            for d in ("/etc/apm", "/var/lib/apm", "/usr/lib/apm"):
                shutil.rmtree(d, ignore_errors=True)
            if not self.user_before and user_exists("apm"):
                run(["userdel", "apm"], check=False, budget=False)
            if not self.group_before and group_exists("apm"):
                run(["groupdel", "apm"], check=False, budget=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    if os.geteuid() != 0:
        log("skipped: the package test installs .debs with apt-get and needs root")
        return 0
    for tool in ("apt-get", "dpkg-deb", "dpkg-shlibdeps", "cpack", "setpriv", "systemd-analyze"):
        if shutil.which(tool) is None:
            log(f"FAIL: {tool} is missing (deploy/install-deps.sh installs it)")
            return 1
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "w") as lock:
        deadline = time.monotonic() + 90
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log(f"FAIL: another package test holds {LOCK}")
                    return 1
                time.sleep(1)
        t0 = time.monotonic()
        t = PackageTest()
        try:
            t.preconditions()
            t.build()
            t.inspect()
            out = t.install()
            t.check_installed(out)
            t.check_versions()
            t.agent_refuses_without_token()
            t.operator_sets_token()
            url, app_pid = t.start()
            t.check_flow(url, app_pid)
            t.stop_all()
            t.reinstall()
            t.remove()
            t.purge()
        except (AssertionError, subprocess.TimeoutExpired) as e:
            log(f"FAIL: {e}")
            return 1
        finally:
            t.cleanup()
    log(f"package test passed in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
