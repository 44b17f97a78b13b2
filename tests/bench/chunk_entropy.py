#!/usr/bin/env python3
"""A floor for chunk value coding on leakbench, to judge the chunk formats against.

For every window of 119 value deltas (one 120-sample chunk), in 4 KiB units, the cost of coding
them with the better of a discretised Laplace or Gaussian whose parameters are fitted to that very
window and sent for free. A coder that learns as it goes cannot do much better on noise; compare
with the "values" column of tests/bench/chunk_codec.sh (which also holds the regular time stream).

And one for the timestamps: the jittered synthetic traces sample on a grid with a uniform offset
per sample (checked: the offsets from the grid are flat over [-W/2, W/2], the intervals
triangular over [D - W, D + W]), which costs log2(W + 1) bits a sample to any coder that knows
the grid; the regular traces cost nothing (gaps aside). Compare with the "time" column.

    tests/bench/chunk_entropy.py [TRACE_DIR]   (default ../shared/leakbench/traces)
"""
import collections
import glob
import math
import os
import sys


def laplace_bits(xs):
    m = sorted(xs)[len(xs) // 2]
    b = max(sum(abs(x - m) for x in xs) / len(xs), 1e-3)
    bits = 0.0
    for x in xs:
        a = abs(x - m)
        p = 1 - math.exp(-0.5 / b) if a == 0 else 0.5 * (math.exp(-(a - 0.5) / b) - math.exp(-(a + 0.5) / b))
        bits -= math.log2(max(p, 1e-300))
    return bits


def gauss_bits(xs):
    mu = sum(xs) / len(xs)
    s = math.sqrt(max(sum((x - mu) ** 2 for x in xs) / len(xs), 1 / 12)) * math.sqrt(2)
    return -sum(math.log2(max(0.5 * (math.erf((x - mu + 0.5) / s) - math.erf((x - mu - 0.5) / s)), 1e-300))
                for x in xs)


def time_bits(ts):
    """log2(W + 1) bits a sample for a trace with uniform jitter of width W ms, else 0."""
    d = [ts[i + 1] - ts[i] for i in range(len(ts) - 1)]
    if not d:
        return 0.0
    m = sorted(d)[len(d) // 2]
    x = [v - m for v in d if abs(v - m) < m / 2]
    if len(set(x)) <= 20:
        return 0.0
    width = (max(x) - min(x)) / 2
    return len(ts) * math.log2(width + 1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../shared/leakbench/traces")
    kinds = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for path in sorted(glob.glob(os.path.join(tdir, "*.csv"))):
        name = os.path.basename(path)[:-4]
        kind = name[8:] if name.startswith("syn-") else name.split("-")[0]
        with open(path) as f:
            next(f)
            rows = [line.split(",") for line in f if line.strip()]
        v = [int(r[1]) >> 12 for r in rows]
        ts = [round(float(r[0]) * 1000) for r in rows]
        dv = [v[i + 1] - v[i] for i in range(len(v) - 1)]
        bits = 0.0
        for s in range(0, len(dv), 119):
            w = dv[s:s + 119]
            if any(w):
                bits += min(laplace_bits(w), gauss_bits(w))
        kinds[kind][0] += len(v)
        kinds[kind][1] += bits / 8
        kinds[kind][2] += time_bits(ts) / 8
    total = [0, 0.0, 0.0]
    for kind, (n, nbytes, tbytes) in sorted(kinds.items()):
        print(f"{kind:24s} {n:7d} samples  values floor {nbytes / n:.3f}  time floor {tbytes / n:.3f} B/sample")
        total[0] += n
        total[1] += nbytes
        total[2] += tbytes
    print(f"{'all':24s} {total[0]:7d} samples  values floor {total[1] / total[0]:.3f}  "
          f"time floor {total[2] / total[0]:.3f} B/sample")


if __name__ == "__main__":
    main()
