#!/usr/bin/env python3
"""Lab: summarises the sm_90a GEMM's consumer timeline (MXMOE_SM90_LAB bit 1024; written by the
kernel's lab build to $MXMOE_SM90_STAMPS, see dev/cuda/timeline.sh): per chunk, the cycles a
consumer warpgroup spends waiting for its stage, converting the weights, on its MMAs (issue to
completion) and promoting; and per CTA the share of the time some warpgroup has MMAs in flight
(an upper bound on the tensor cores' busy time).

  python3 dev/cuda/timeline.py STAMPS_FILE [--mma-cycles N]

--mma-cycles: a warpgroup's chunk of MMAs at the full rate (64 x BN x 128 FP8 MACs over 4096 a
cycle: 256 at BN = 128, 384 at 192), to show how far the MMA intervals are from it."""
import argparse
import statistics
import struct

CTAS, WGS, CHUNKS, POINTS = 8, 2, 512, 5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stamps")
    ap.add_argument("--mma-cycles", type=float, default=0)
    args = ap.parse_args()
    raw = open(args.stamps, "rb").read()
    vals = struct.unpack("<%dQ" % (len(raw) // 8), raw)
    at = lambda c, w, g, p: vals[((c * WGS + w) * CHUNKS + g) * POINTS + p]
    phases = {"wait": [], "convert": [], "mma": [], "promote": [], "chunk": []}
    busy = []
    for c in range(CTAS):
        intervals = []
        for w in range(WGS):
            chunks = [g for g in range(CHUNKS) if at(c, w, g, 4) != 0]
            for g in chunks:
                t = [at(c, w, g, p) for p in range(POINTS)]
                phases["wait"].append(t[1] - t[0])
                phases["convert"].append(t[2] - t[1])
                phases["mma"].append(t[3] - t[2])
                phases["promote"].append(t[4] - t[3])
                if g + 1 in chunks:
                    phases["chunk"].append(at(c, w, g + 1, 0) - t[0])
                intervals.append((t[2], t[3]))
        if not intervals:
            continue
        intervals.sort()
        covered, end = 0, intervals[0][0]
        for a, b in intervals:  # union of the two warpgroups' MMA intervals
            if b > end:
                covered += b - max(a, end)
                end = b
        span = max(b for _, b in intervals) - intervals[0][0]
        busy.append(covered / span if span else 0)
    if not phases["chunk"]:
        print("no stamps (was the lab build run eagerly with MXMOE_SM90_STAMPS set?)")
        return
    print("cycles per chunk and warpgroup (median / 90th percentile, %d chunks):" % len(phases["mma"]))
    for name, v in phases.items():
        v = sorted(v)
        print("  %-8s %8.0f / %8.0f" % (name, statistics.median(v), v[int(0.9 * (len(v) - 1))]))
    if args.mma_cycles:
        print("  MMA intervals: %.2fx the full-rate %d cycles (median)"
              % (statistics.median(phases["mma"]) / args.mma_cycles, args.mma_cycles))
    print("some warpgroup's MMAs in flight: %.0f %% of the time (median over %d CTAs)"
          % (100 * statistics.median(busy), len(busy)))


if __name__ == "__main__":
    main()
