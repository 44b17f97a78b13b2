#!/usr/bin/python3
"""Writes the near-limit test traces (deterministic; run from this folder to regenerate).

near-limit-wander-*: memory wandering between 85 % and 97 % of its limit for three days with no
trend, with upward drifts of a few hours that fall back (busy machines running a changing mix).
levels-off-*: fills that decelerate and level off near the limit (a cache or pool filling up).
Neither kind should get a leak or exhaustion alert.
"""
import math
import random

GIB = 1 << 30


def write(name, rows, limit):
    with open(name + ".csv", "w") as f:
        f.write("t_seconds,rss_bytes,limit_bytes\n")
        for t, v in rows:
            f.write("%d,%d,%d\n" % (t, int(v) // 4096 * 4096, limit))


def wander(seed, dt, days, limit):
    rnd = random.Random(seed)
    level, rows = rnd.uniform(0.85, 0.89), []
    t = 0
    drift_until, drift_rate, up = -1, 0.0, False
    while t < days * 86400:
        if t >= drift_until:
            # Episodes alternate: an upward drift of 2-5 hours, then a fall back and a quiet spell.
            up = not up
            if up:
                hours = rnd.uniform(2, 5)
                drift_rate = rnd.uniform(0.03, 0.05) / (hours * 3600)
            else:
                hours = rnd.uniform(1, 4)
                drift_rate = -(level - rnd.uniform(0.85, 0.89)) / (hours * 3600)
            drift_until = t + hours * 3600
        level += drift_rate * dt
        level = min(max(level, 0.85), 0.97)
        noise = rnd.gauss(0, 0.004)
        rows.append((t, (level + noise) * limit))
        t += dt
    return rows


def levels_off(seed, dt, hours, start, end, tau_h, limit):
    rnd = random.Random(seed)
    rows, t = [], 0
    while t < hours * 3600:
        frac = end - (end - start) * math.exp(-t / (tau_h * 3600))
        rows.append((t, (frac + rnd.gauss(0, 0.003)) * limit))
        t += dt
    return rows


if __name__ == "__main__":
    write("near-limit-wander-60s", wander(1, 60, 3, 16 * GIB), 16 * GIB)
    write("near-limit-wander-5min", wander(2, 300, 4, 64 * GIB), 64 * GIB)
    write("near-limit-wander-10s", wander(3, 10, 1, 8 * GIB), 8 * GIB)
    write("levels-off-60s", levels_off(4, 60, 48, 0.40, 0.93, 3.0, 16 * GIB), 16 * GIB)
    write("levels-off-10s", levels_off(5, 10, 12, 0.30, 0.95, 1.0, 4 * GIB), 4 * GIB)
    write("levels-off-5min", levels_off(6, 300, 96, 0.50, 0.92, 8.0, 64 * GIB), 64 * GIB)
