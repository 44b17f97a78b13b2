#!/usr/bin/python3
"""Scores apm-cli analyze on leakbench at several sampling densities.

For each density (every sample, every 5th, every 10th: `awk 'NR==1 || (NR-2)%K==0'` per trace,
labels unchanged) it runs `apm-cli analyze --json`, scores the public split with score.py, and
reports band coverage (how often the true exhaustion time lies in the stated
[predicted_exhaustion_lo_t, predicted_exhaustion_hi_t] on true positives) with the median band
width relative to the time left at the alert. With --wild DIR it also prints the share of the
wild-gcd series that get an alert.

usage: leakbench_eval.py CLI LEAKBENCH_DIR [--wild DIR] [--densities 1,5,10]
       [--sensitivity S] [--split all|tuning|heldout] [--json]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def split_names(labels, split):
    real = sorted(k for k in labels if k.startswith("real-"))
    tune = set(real[0::2])
    for k in labels:
        m = re.match(r"syn-(\d+)", k)
        if m and int(m.group(1)) % 2 == 0:
            tune.add(k)
    if split == "all":
        return set(labels)
    return {k for k in labels if (k in tune) == (split == "tuning")}


def thin(src, dst, k):
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        if not name.endswith(".csv"):
            continue
        with open(os.path.join(src, name)) as f, open(os.path.join(dst, name), "w") as g:
            for i, line in enumerate(f):
                if i == 0 or (i - 1) % k == 0:
                    g.write(line)


def analyze(cli, path, sensitivity, env=None):
    out = subprocess.run([cli, "analyze", "--json", "--sensitivity", sensitivity, path],
                         capture_output=True, text=True, check=True, env=env)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def score(bench, records, names):
    """Runs the shipped scorer on the given subset; adds band coverage and width."""
    labels = json.load(open(os.path.join(bench, "labels.json")))
    sub = {k: v for k, v in labels["traces"].items() if k in names}
    with tempfile.TemporaryDirectory() as d:
        json.dump({"schema": labels["schema"], "traces": sub}, open(os.path.join(d, "labels.json"), "w"))
        det = os.path.join(d, "det.jsonl")
        with open(det, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        m = json.loads(subprocess.run([sys.executable, os.path.join(bench, "score.py"), det,
                                       "--corpus", d, "--json", "--by-kind"],
                                      capture_output=True, text=True, check=True).stdout)
    inside = n = 0
    widths = []
    for r in records:
        lab = sub.get(r["trace"])
        if not lab or lab["class"] != "leak" or r["t_alert"] is None:
            continue
        ta, ex = r["t_alert"], lab["exhaustion_t"]
        if ta < lab["leak_start_s"] or ta >= ex:
            continue
        lo, hi = r.get("predicted_exhaustion_lo_t"), r.get("predicted_exhaustion_hi_t")
        if lo is None:
            continue
        n += 1
        hi = float("inf") if hi is None else hi
        inside += lo <= ex <= hi
        widths.append((hi - lo) / (ex - ta))
    m["band_n"] = n
    m["band_coverage"] = inside / n if n else None
    m["band_width_median"] = quantile(widths, 0.5)
    return m


BARS = " \u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"


def sparkline(path, r, width=48):
    """One line on an alerted series: its level over time, where and why it alerted."""
    rows = [line.split(",") for line in open(path).read().splitlines()[1:] if line]
    t = [float(x[0]) for x in rows]
    v = [float(x[1]) for x in rows]
    limit = float(rows[0][2]) if len(rows[0]) > 2 and rows[0][2] else 0
    lo, hi, step = min(v), max(v), max(1, len(v) // width)
    means = [sum(v[i:i + step]) / len(v[i:i + step]) for i in range(0, len(v), step)]
    line = "".join(BARS[int((m - lo) / (hi - lo + 1e-9) * 8.99)] for m in means)
    at = min(range(len(t)), key=lambda i: abs(t[i] - r["t_alert"]))
    pct = (lambda x: "%.1f%%" % (100 * x / limit)) if limit else (lambda x: "%.0f" % x)
    return "  %-24s %-10s at %5.1fh %6s, range %s-%s, now %-8s %s" % (
        r["trace"], r.get("alert", "leak"), r["t_alert"] / 3600, pct(v[at]), pct(lo), pct(hi),
        r["class"], line)


def wild_rate(cli, wild, sensitivity, show=False):
    recs = analyze(cli, wild, sensitivity)
    alerted = [r for r in recs if r["t_alert"] is not None]
    if show:
        for r in alerted:
            print(sparkline(os.path.join(wild, r["trace"] + ".csv"), r))
    kinds = {}
    for r in alerted:
        kinds[r.get("alert", "leak")] = kinds.get(r.get("alert", "leak"), 0) + 1
    return len(alerted), len(recs), kinds


def fmt(x, pct=False):
    if x is None:
        return "n/a"
    return "%.1f%%" % (100 * x) if pct else "%.3f" % x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("bench")
    ap.add_argument("--wild")
    ap.add_argument("--densities", default="1,5,10")
    ap.add_argument("--sensitivity", default="balanced")
    ap.add_argument("--split", default="all", choices=["all", "tuning", "heldout"])
    ap.add_argument("--by-kind", action="store_true")
    ap.add_argument("--show-alerts", action="store_true", help="a sparkline per alerted wild series")
    a = ap.parse_args()
    labels = json.load(open(os.path.join(a.bench, "labels.json")))["traces"]
    names = split_names(labels, a.split)
    print("%-9s %-8s %6s %6s %6s %6s %8s %8s %9s %9s %8s" % (
        "density", "split", "F1", "prec", "recall", "FPR", "delay50", "MdAPE", "forecasts",
        "coverage", "width50"))
    with tempfile.TemporaryDirectory() as work:
        for k in [int(x) for x in a.densities.split(",")]:
            src = os.path.join(a.bench, "traces")
            if k > 1:
                src = os.path.join(work, "every%d" % k)
                thin(os.path.join(a.bench, "traces"), src, k)
            recs = analyze(a.cli, src, a.sensitivity)
            m = score(a.bench, recs, names)
            label = "all" if k == 1 else "1/%d" % k
            print("%-9s %-8s %6s %6s %6s %6s %8s %8s %5d/%-3d %9s %8s" % (
                label, a.split, fmt(m["f1"]), fmt(m["precision"]), fmt(m["recall"]),
                fmt(m["fpr_noleak"]), fmt(m["delay_frac_median"]), fmt(m["tte_mdape"], True),
                m["tte_forecasts"], m["TP"], fmt(m["band_coverage"], True),
                fmt(m["band_width_median"])))
            if a.by_kind:
                for kind, s in m["by_kind"].items():
                    print("    %-22s TP %2d FN %2d FP %2d prem %2d delay %s" % (
                        kind, s["TP"], s["FN"], s["FP_noleak"], s["FP_premature"],
                        fmt(s["delay_frac_median"])))
    if a.wild:
        n, total, kinds = wild_rate(a.cli, a.wild, a.sensitivity, a.show_alerts)
        print("wild-gcd: alerts on %d of %d series (%.1f%%) %s" % (
            n, total, 100.0 * n / total if total else 0,
            " ".join("%s %d" % kv for kv in sorted(kinds.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
