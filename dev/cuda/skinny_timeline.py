#!/usr/bin/env python3
"""Lab: summarises the few-tokens kernel's timeline (MXMOE_SKINNY_LAB bit 8; written by the lab
build to $MXMOE_SKINNY_STAMPS, see dev/cuda/skinny_timeline.sh): per CTA, when it started
(%globaltimer, from the grid's first CTA) and how long each phase took (clock64 between the
stamps, in µs at the clock the CTA's own globaltimer span implies), as quantiles over the CTAs
that ran to the end, plus how many such CTAs each SM held.

  python3 dev/cuda/skinny_timeline.py STAMPS_FILE"""
import collections
import struct
import sys

POINTS = 15  # kEntryGlobal .. kSmid, as the kernel's Stamp enum
PHASES = [("pdl wait", 1, 2), ("expert", 2, 3), ("issue copies", 3, 4), ("own pairs", 4, 5),
          ("scales", 5, 6), ("stage tokens", 6, 7), ("K loop (slowest warp)", 7, None),
          ("stores", None, 12)]


def quantiles(xs):
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))]
    return "min %7.2f  med %7.2f  p90 %7.2f  max %7.2f" % (xs[0], q(0.5), q(0.9), xs[-1])


def main():
    raw = open(sys.argv[1], "rb").read()
    vals = struct.unpack("<%dQ" % (len(raw) // 8), raw)
    ctas = [vals[i:i + POINTS] for i in range(0, len(vals), POINTS)]
    done = [c for c in ctas if c[14] != 0]
    print("CTAs that ran to the end: %d (of %d stamped)" % (len(done), sum(1 for c in ctas if c[0])))
    if not done:
        return
    t0 = min(c[0] for c in ctas if c[0])
    ghz = []
    for c in done:
        span_ns, cycles = c[13] - c[0], c[12] - c[1]
        if span_ns > 0 and cycles > 0:
            ghz.append(cycles / span_ns)
    clock = sorted(ghz)[len(ghz) // 2] if ghz else 1.755
    print("clock from the CTAs' spans: %.3f GHz (median)" % clock)
    us = lambda cyc: cyc / clock / 1000.0
    print("%-24s %s" % ("start after the first", quantiles([(c[0] - t0) / 1000.0 for c in done])))
    for name, a, b in PHASES:
        if a == 7:
            xs = [us(max(c[8:12]) - c[7]) for c in done]
        elif a is None:
            xs = [us(c[12] - max(c[8:12])) for c in done]
        else:
            xs = [us(c[b] - c[a]) for c in done]
        print("%-24s %s" % (name, quantiles(xs)))
    print("%-24s %s" % ("whole CTA", quantiles([(c[13] - c[0]) / 1000.0 for c in done])))
    print("%-24s %s" % ("end after the first start", quantiles([(c[13] - t0) / 1000.0 for c in done])))
    per_sm = collections.Counter(c[14] for c in done)
    print("CTAs per SM:", sorted(collections.Counter(per_sm.values()).items()), "SMs used:", len(per_sm))


main()
