"""The probe's diffs through agent and collector, end to end.

1. A scripted Python workload runs the probe in always mode (cost bound off, 1 s
   interval) with a test hook that records Snapshot.compare_to of the very snapshots
   each diff was made from. For consecutive diffs, the top N the collector's
   /api/v1/sites returns over the window between the two snapshots equals that
   compare_to list: same lines, order, sizes and counts.
2. A leaking service runs under apm-run in on-demand mode: `apm-cli trace` starts
   tracing and `apm-cli top` then names its leaking line first.
3. The same service under apm-run in the default mode, sampled (the build's extension on
   its path): with no trace request, `apm-cli top` names the leaking line first, as an
   estimate ("+N MiB/h ± M %"), and the forecast's suspects carry the rate's error.
"""
from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import sampler_env  # noqa: E402
from harness import SOURCE, Cluster, wait_for  # noqa: E402

PYTHON = "/usr/bin/python3"
PROBE_DIR = os.path.join(SOURCE, "agent", "python")
TOP_N = 10

WORKLOAD = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from apm_probe import config, snapshot
    from apm_probe.probe import Probe

    out_path, sock = sys.argv[2], sys.argv[3]
    filters = snapshot.filters()

    def hook(seq, old, new):
        top = new.filter_traces(filters).compare_to(old.filter_traces(filters), "lineno")[:%d]
        rows = [[s.traceback[0].filename, s.traceback[0].lineno, s.size, s.size_diff,
                 s.count, s.count_diff] for s in top]
        with open(out_path, "a") as f:
            f.write(json.dumps({"seq": seq, "top": rows}) + "\\n")

    settings = config.load(dict(socket=sock, mode="always", interval=1.0, top_n=%d,
                                snapshot_budget=0.0), {})
    Probe(settings, snapshot_hook=hook).start()
    keep, churn = [], []
    i = 0
    while True:
        keep.append(bytearray(3000 + i %% 7))          # the leak
        keep.append("x" * (100 + i %% 50))              # a smaller leak
        churn.append([j for j in range(i %% 20)])       # comes and goes
        if len(churn) > 30:
            churn = churn[15:]
        i += 1
        time.sleep(0.01)
    """
    % (TOP_N, TOP_N)
)

LEAKY = textwrap.dedent(
    """
    import time
    cache = []
    def handle(i):
        cache.append(bytearray(20000))   # LEAK
        return len(cache)
    i = 0
    while True:
        handle(i)
        i += 1
        time.sleep(0.02)
    """
)


def process_id(c: Cluster, pid: int) -> str:
    def find():
        for p in c.get("/api/v1/processes")["processes"]:
            if p["pid"] == pid:
                return p["id"]
        return None

    return wait_for(f"process {pid} stored", find, 30)


def diff_times(c: Cluster, pid: int) -> list:
    """Times of the stored diffs: the traced series has one sample per diff."""
    series = c.get(f"/api/v1/series?pid={pid}&metric=traced")["series"]
    if not series:
        return []
    samples = c.get(f"/api/v1/series/{series[0]['id']}/samples")["samples"]
    return [s[0] if isinstance(s, list) else s["t"] for s in samples]


def check_top_n(c: Cluster, tmp: str) -> None:
    out = os.path.join(tmp, "compare_to.jsonl")
    sock = os.path.join(tmp, "probe.sock")
    w = c.spawn("workload", [PYTHON, "-c", WORKLOAD, PROBE_DIR, out, sock])
    pid = w.p.pid
    pid_id = process_id(c, pid)

    def enough():
        if not os.path.exists(out):
            return None
        rows = [json.loads(l) for l in open(out) if l.endswith("\n")]
        times = diff_times(c, pid)
        return (rows, times) if len(rows) >= 4 and len(times) >= rows[-1]["seq"] else None

    rows, times = wait_for("four compared diffs stored", enough, 60)
    checked = 0
    for row in rows:
        seq = row["seq"]
        if seq < 2 or seq > len(times):
            continue
        t_prev, t = times[seq - 2], times[seq - 1]
        got = c.get(f"/api/v1/sites?process={pid_id}&from={(t_prev + t) / 2:.3f}&to={t:.3f}"
                    f"&limit={TOP_N}")["sites"]
        got_rows = [[s["file"], s["line"], s["size"], s["size_growth"], s["count"],
                     s["count_growth"]] for s in got]
        assert got_rows == row["top"], f"diff {seq}:\ncollector {got_rows}\ncompare_to {row['top']}"
        checked += bool(got_rows)
    assert checked >= 3, f"only {checked} diffs compared"
    w.stop()
    print(f"top {TOP_N} of {checked} diffs equal compare_to")


def check_on_demand(c: Cluster, tmp: str) -> None:
    script = os.path.join(tmp, "leaky.py")
    with open(script, "w") as f:
        f.write(LEAKY)
    leak_line = LEAKY.splitlines().index("    cache.append(bytearray(20000))   # LEAK") + 1
    env = dict(os.environ, APM_PROBE_SOCKET=os.path.join(tmp, "probe.sock"),
               APM_PROBE_MODE="on-demand", APM_PROBE_INTERVAL="1")
    p = c.spawn("leaky", [PYTHON, os.path.join(PROBE_DIR, "apm-run"), PYTHON, script], env=env)
    pid = p.p.pid
    process_id(c, pid)
    # Nothing is traced until asked.
    assert c.cli_json("top", "--pid", str(pid))["sites"] == []
    # The agent may not have joined the probe's connection yet: ask until it is there.
    wait_for("trace accepted", lambda: c.cli("trace", "--pid", str(pid), "--for", "1m",
                                             check=False).returncode == 0, 20)

    def leading():
        sites = c.cli_json("top", "--pid", str(pid), "--window", "1m")["sites"]
        return sites if sites and sites[0]["file"] == script and sites[0]["line"] == leak_line \
            and sites[0]["size_growth"] > 0 else None

    sites = wait_for("leaking line on top", leading, 60)
    table = c.cli("top", "--pid", str(pid), "--window", "1m").stdout
    # Rates read in the CLI's one unit family (IEC, per hour), like every other table.
    assert f"{script}:{leak_line}" in table and re.search(r" \+[0-9.]+ (B|KiB|MiB|GiB)/h ", table), \
        table
    print(table)
    status = c.get("/api/v1/status")
    assert status["store"]["sites_refused"] == 0
    print(f"on demand: {sites[0]['site']} grew {sites[0]['size_growth']} bytes "
          f"({sites[0]['rate_mb_per_h']:.1f} MB/h)")


def check_sampled(c: Cluster, tmp: str) -> None:
    if not sampler_env.available():
        print("sampled: the extension is not built, skipped")
        return
    script = os.path.join(tmp, "leaky_sampled.py")
    with open(script, "w") as f:
        f.write(LEAKY)
    leak_line = LEAKY.splitlines().index("    cache.append(bytearray(20000))   # LEAK") + 1
    env = sampler_env.env(dict(os.environ, APM_PROBE_SOCKET=os.path.join(tmp, "probe.sock"),
                               APM_PROBE_INTERVAL="1"), probe_on_path=False)
    env.pop("APM_PROBE_MODE", None)
    p = c.spawn("leaky-sampled", [PYTHON, os.path.join(PROBE_DIR, "apm-run"), PYTHON, script],
                env=env)
    pid = p.p.pid
    process_id(c, pid)

    def leading():
        sites = c.cli_json("top", "--pid", str(pid), "--window", "1m")["sites"]
        return sites if sites and sites[0]["file"] == script and sites[0]["line"] == leak_line \
            and sites[0]["size_growth"] > 0 and sites[0]["source"] == "sampled" else None

    sites = wait_for("leaking line on top, sampled", leading, 90)
    assert sites[0]["rate_err_bytes_per_s"] > 0, sites[0]
    table = c.cli("top", "--pid", str(pid), "--window", "1m").stdout
    assert f"{script}:{leak_line}" in table and re.search(
        r" \+[0-9.]+ (B|KiB|MiB|GiB)/h \u00b1 [0-9]+ % ", table), table
    print(table)
    # An exact trace request reaches the agent with its flag (the probe side of it:
    # tests/python/test_probe_sampler.py).
    sent = c.cli_json("trace", "--pid", str(pid), "--for", "5s", "--exact")
    assert sent["exact"] is True and sent["agents"] >= 1, sent
    # The true rate: 20000-byte buffers (20056 bytes with their header) every ~20 ms.
    print(f"sampled: {sites[0]['site']} grew ~{sites[0]['size_growth']} bytes "
          f"({sites[0]['rate_mb_per_h']:.1f} MB/h ± {sites[0]['rate_err_bytes_per_s'] * 0.0036:.1f})")
    p.stop()


def main() -> int:
    c = Cluster()
    tmp = c.dir
    try:
        c.start_collector()
        c.start_agent("--probe-socket", os.path.join(tmp, "probe.sock"), interval="0.5s")
        check_top_n(c, tmp)
        check_on_demand(c, tmp)
        check_sampled(c, tmp)
        return 0
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()
        c.cleanup()


if __name__ == "__main__":
    sys.exit(main())
