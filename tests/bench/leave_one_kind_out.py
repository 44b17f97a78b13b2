#!/usr/bin/python3
"""Chooses the balanced thresholds on a small grid, and says how well the choice generalises.

For every point of the grid below, apm-cli analyze --tuning=... replays leakbench at full density
and at every 10th sample. The objective is the mean F1 of the two densities (score.py's rules).

- in-sample: the grid point chosen on the tuning split, scored on the tuning and held-out splits;
- leave one kind out: for each kind, the grid point chosen on the tuning split without that kind,
  scored on every public trace of that kind (leak kinds: TP, FN, premature alerts and the median
  delay; no-leak kinds: the traces alerted on).

usage: leave_one_kind_out.py CLI LEAKBENCH_DIR
"""
import itertools
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from leakbench_eval import split_names, thin  # noqa: E402

GRID = {
    "startup_s": [14400, 21600, 28800],
    "creep_age": [0.1, 0.15],
    "creep_t": [25, 35],
    "clear_snr": [0, 20, 50],
}


def run(cli, path, spec):
    out = subprocess.run([cli, "analyze", "--json", "--tuning=" + spec, path],
                         capture_output=True, text=True, check=True)
    return {r["trace"]: r for r in (json.loads(x) for x in out.stdout.splitlines() if x.strip())}


def outcome(lab, r):
    """score.py's per-trace outcome."""
    t = r["t_alert"] if r else None
    if lab["class"] != "leak":
        return "FP" if t is not None else "TN"
    if t is None:
        return "FN"
    if t < lab["leak_start_s"]:
        return "premature"
    if t >= lab["exhaustion_t"] or (not lab.get("exhaustion_in_trace", True) and t > lab["t_last"]):
        return "late"
    return "TP"


def f1(labels, recs, names):
    tp = fp = n_leak = 0
    for k in names:
        lab = labels[k]
        o = outcome(lab, recs.get(k))
        n_leak += lab["class"] == "leak"
        tp += o == "TP"
        fp += o in ("FP", "premature")
    if tp == 0:
        return 0.0
    p, r = tp / (tp + fp), tp / n_leak
    return 2 * p * r / (p + r)


def main():
    cli, bench = sys.argv[1], sys.argv[2]
    labels = json.load(open(os.path.join(bench, "labels.json")))["traces"]
    tuning = split_names(labels, "tuning")
    heldout = split_names(labels, "heldout")
    kinds = sorted({v["kind"] for v in labels.values()})
    points = [dict(zip(GRID, vals)) for vals in itertools.product(*GRID.values())]
    with tempfile.TemporaryDirectory() as work:
        thin10 = os.path.join(work, "every10")
        thin(os.path.join(bench, "traces"), thin10, 10)
        results = []
        for p in points:
            spec = ",".join("%s=%g" % kv for kv in p.items())
            results.append((spec, run(cli, os.path.join(bench, "traces"), spec), run(cli, thin10, spec)))

    def best(names):
        return max(results, key=lambda x: (f1(labels, x[1], names) + f1(labels, x[2], names)) / 2)

    spec, full, ten = best(tuning)
    print("in-sample choice: %s" % spec)
    for split, names in (("tuning", tuning), ("held-out", heldout)):
        print("  %-9s F1 full %.3f, every 10th %.3f" % (split, f1(labels, full, names),
                                                        f1(labels, ten, names)))
    print("leave one kind out (chosen without the kind on the tuning split, scored on the kind):")
    print("  %-22s %-9s %-34s %s" % ("kind", "density", "in-sample choice", "left out"))
    for kind in kinds:
        names = {k for k in labels if labels[k]["kind"] == kind}
        loko = best({k for k in tuning if labels[k]["kind"] != kind})
        for d, idx in (("full", 1), ("1/10", 2)):
            def summary(recs):
                outs = [outcome(labels[k], recs.get(k)) for k in sorted(names)]
                if labels[next(iter(names))]["class"] == "leak":
                    delays = sorted((recs[k]["t_alert"] - labels[k]["leak_start_s"]) /
                                    (labels[k]["exhaustion_t"] - labels[k]["leak_start_s"])
                                    for k, o in zip(sorted(names), outs) if o == "TP")
                    med = "%.2f" % delays[len(delays) // 2] if delays else "n/a"
                    return "TP %2d/%-2d premature %d delay %s" % (
                        outs.count("TP"), len(outs), outs.count("premature"), med)
                return "alerts %d/%d" % (outs.count("FP"), len(outs))
            print("  %-22s %-9s %-34s %s%s" % (kind, d, summary((full, ten)[idx - 1]),
                                              summary(loko[idx]),
                                              "" if loko[0] == spec else "  (" + loko[0] + ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
