#!/usr/bin/env python3
"""A floor for chunk value coding on leakbench, to judge the chunk formats against.

For every window of 119 value deltas (one 120-sample chunk), in 4 KiB units, the cost of coding
them with the better of a discretised Laplace or Gaussian whose parameters are fitted to that very
window and sent for free. A coder that learns as it goes cannot do much better on noise; compare
with the "values" column of tests/bench/chunk_codec.sh (which also holds the regular time stream).

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


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../shared/leakbench/traces")
    kinds = collections.defaultdict(lambda: [0, 0.0])
    for path in sorted(glob.glob(os.path.join(tdir, "*.csv"))):
        name = os.path.basename(path)[:-4]
        kind = name[8:] if name.startswith("syn-") else name.split("-")[0]
        with open(path) as f:
            next(f)
            v = [int(line.split(",")[1]) >> 12 for line in f if line.strip()]
        dv = [v[i + 1] - v[i] for i in range(len(v) - 1)]
        bits = 0.0
        for s in range(0, len(dv), 119):
            w = dv[s:s + 119]
            if any(w):
                bits += min(laplace_bits(w), gauss_bits(w))
        kinds[kind][0] += len(v)
        kinds[kind][1] += bits / 8
    total = [0, 0.0]
    for kind, (n, nbytes) in sorted(kinds.items()):
        print(f"{kind:24s} {n:7d} samples  values floor {nbytes / n:.3f} B/sample")
        total[0] += n
        total[1] += nbytes
    print(f"{'all':24s} {total[0]:7d} samples  values floor {total[1] / total[0]:.3f} B/sample")


if __name__ == "__main__":
    main()
