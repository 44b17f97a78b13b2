#!/bin/sh
# Scores apm-cli analyze on leakbench at every operating point next to the
# Prometheus predict_linear baseline, on all traces and on the tuning and
# held-out splits (tuning = even-numbered syn-* plus every other real-* in
# name order; held-out = the rest); then, balanced, at full density and
# thinned to every 5th and every 10th sample, with the forecast band's
# coverage and width, and the share of the wild-gcd series alerted on.
# LOKO=1 adds the leave-one-kind-out table (about four minutes).
#
# usage: tests/bench/leakbench.sh [BUILD_DIR] [LEAKBENCH_DIR] [WILD_GCD_DIR]
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build}
bench=${2:-$here/tests/data/leakbench}
wild=${3:-}
if [ -z "$wild" ]; then
    for d in "$here/../shared" "$here/../../shared"; do
        [ -d "$d/leakbench/wild-gcd/traces" ] && wild=$d/leakbench/wild-gcd/traces && break
    done
fi
cli=$build/cli/apm-cli
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! $py -c 'import numpy' 2>/dev/null; then
    echo "installing python3-numpy for the baseline" >&2
    apt-get install -y python3-numpy >/dev/null
fi

# Split corpora: score.py reads labels.json from --corpus.
$py - "$bench" "$work" <<'PY'
import json, os, re, sys
bench, work = sys.argv[1], sys.argv[2]
labels = json.load(open(os.path.join(bench, "labels.json")))
real = sorted(k for k in labels["traces"] if k.startswith("real-"))
tune = set(real[0::2])
for k in labels["traces"]:
    m = re.match(r"syn-(\d+)", k)
    if m and int(m.group(1)) % 2 == 0:
        tune.add(k)
for split in ("all", "tuning", "heldout"):
    d = os.path.join(work, split)
    os.makedirs(d)
    t = {k: v for k, v in labels["traces"].items()
         if split == "all" or (k in tune) == (split == "tuning")}
    json.dump({"schema": labels["schema"], "traces": t}, open(os.path.join(d, "labels.json"), "w"))
PY

for s in early balanced quiet; do
    "$cli" analyze --json --sensitivity "$s" "$bench/traces" >"$work/$s.jsonl"
done
$py "$bench/baselines/predict_linear_rule.py" --corpus "$bench" --out "$work/predict_linear.jsonl"

printf '%-16s %-8s %6s %6s %6s %6s %8s %8s %8s\n' detector split F1 prec recall FPR delay50 MdAPE forecasts
for d in early balanced quiet predict_linear; do
    for split in tuning heldout all; do
        $py "$bench/score.py" "$work/$d.jsonl" --corpus "$work/$split" --json | $py -c '
import json, sys
m = json.load(sys.stdin)
f = lambda x, p=False: "n/a" if x is None else ("%.1f%%" % (100 * x) if p else "%.3f" % x)
print("%-16s %-8s %6s %6s %6s %6s %8s %8s %8d" % (sys.argv[1], sys.argv[2], f(m["f1"]), f(m["precision"]),
      f(m["recall"]), f(m["fpr_noleak"]), f(m["delay_frac_median"]), f(m["tte_mdape"], True), m["tte_forecasts"]))
' "$d" "$split"
    done
done
echo
echo "balanced vs predict_linear by kind (all traces):"
$py "$bench/score.py" "$work/balanced.jsonl" --by-kind | sed -n '/^kind/,$p'
$py "$bench/score.py" "$work/predict_linear.jsonl" --by-kind | sed -n '/^kind/,$p'
echo
echo "balanced by sampling density (public split; coverage: true exhaustion inside the stated 80 % band"
echo "on true positives; width50: median band width over the time left at the alert):"
wild_arg=
[ -d "$wild" ] && wild_arg="--wild $wild"
for split in all tuning heldout; do
    $py "$here/tests/bench/leakbench_eval.py" "$cli" "$bench" --split "$split" $wild_arg | \
        { [ "$split" = all ] && cat || grep -v '^wild-gcd\|^density'; }
    wild_arg=
done
echo
echo "near-limit test traces (tests/data/analysis; none should alert):"
"$cli" analyze --json "$here/tests/data/analysis" | $py -c '
import json, sys
for r in map(json.loads, sys.stdin):
    print("  %-26s %-8s %s" % (r["trace"], r["class"], r.get("alert", "no alert")))
'
if [ "${LOKO:-0}" = 1 ]; then
    echo
    $py "$here/tests/bench/leave_one_kind_out.py" "$cli" "$bench"
fi
