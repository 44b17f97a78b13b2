#!/usr/bin/python3
"""apm-cli analyze on the shipped leakbench traces must keep its detection quality.

Runs the real binary over tests/data/leakbench/traces with --json, scores the
output with the shipped score.py and fails when balanced F1 < 0.88 or the
false-positive rate on no-leak traces > 0.10 (the quality bar). Then the
near-limit traces of tests/data/analysis (memory wandering between 85 and 97 %
of its limit, fills that level off near it) must get no alert at all.
"""
import json
import os
import subprocess
import sys
import tempfile

MIN_F1 = 0.88
MAX_FPR = 0.10


def main() -> int:
    build = os.environ.get("APM_BUILD_DIR", "build")
    source = os.environ.get("APM_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    cli = os.path.join(build, "cli", "apm-cli")
    bench = os.path.join(source, "tests", "data", "leakbench")
    out = subprocess.run([cli, "analyze", "--json", os.path.join(bench, "traces")],
                         capture_output=True, text=True, timeout=240)
    if out.returncode != 0:
        print("apm-cli analyze failed (%d): %s" % (out.returncode, out.stderr), file=sys.stderr)
        return 1
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    names = [r["trace"] for r in lines]
    if names != sorted(names) or len(names) != len(os.listdir(os.path.join(bench, "traces"))):
        print("expected one record per trace, sorted by name", file=sys.stderr)
        return 1
    for r in lines:
        for key in ("kind", "t_alert", "predicted_exhaustion_t", "predicted_exhaustion_lo_t",
                    "predicted_exhaustion_hi_t", "class", "confidence"):
            if key not in r:
                print("record without %s: %r" % (key, r), file=sys.stderr)
                return 1
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(out.stdout)
        det = f.name
    try:
        score = subprocess.run([sys.executable, os.path.join(bench, "score.py"), det, "--json"],
                               capture_output=True, text=True, check=True)
    finally:
        os.unlink(det)
    m = json.loads(score.stdout)
    print("leakbench balanced: F1 %.3f, FPR %.3f, delay %s, TTE MdAPE %s"
          % (m["f1"], m["fpr_noleak"], m["delay_frac_median"], m["tte_mdape"]))
    failed = 0
    if m["f1"] < MIN_F1 or m["fpr_noleak"] > MAX_FPR:
        print("below the bar: F1 >= %.2f and FPR <= %.2f required" % (MIN_F1, MAX_FPR),
              file=sys.stderr)
        failed = 1
    near = subprocess.run([cli, "analyze", "--json", os.path.join(source, "tests", "data", "analysis")],
                          capture_output=True, text=True, timeout=240)
    if near.returncode != 0:
        print("apm-cli analyze failed on the near-limit traces: %s" % near.stderr, file=sys.stderr)
        return 1
    records = [json.loads(line) for line in near.stdout.splitlines() if line.strip()]
    if len(records) < 6:
        print("expected the six near-limit traces, got %d" % len(records), file=sys.stderr)
        return 1
    for r in records:
        if r["t_alert"] is not None:
            print("near-limit trace %s got a %s alert at %.0f s" % (r["trace"], r.get("alert"), r["t_alert"]),
                  file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
