#!/usr/bin/env python3
"""Lab: summarises the sm_90a GEMM's consumer timeline (MXMOE_SM90_LAB bit 1024; written by the
kernel's lab build to $MXMOE_SM90_STAMPS, see dev/cuda/timeline.sh): per chunk, the cycles a
consumer warpgroup spends waiting for its stage, converting the weights, on its MMAs (issue to
completion) and promoting; and per CTA the share of the time some warpgroup has MMAs in flight
(an upper bound on the tensor cores' busy time). Two-warpgroup tiles stamp points 0-4 (wait,
waited, converted, MMAs done, promoted); three-warpgroup tiles (BN = 128) points 0-6 (wait,
waited, converted, half 0's MMAs done, promoted, half 1's MMAs done, chunk done).

  python3 dev/cuda/timeline.py STAMPS_FILE [--mma-cycles N] [--epilogue EPI_STAMPS_FILE]

--mma-cycles: a warpgroup's chunk of MMAs at the full rate (64 x BN x 128 FP8 MACs over 4096 a
cycle: 256 at BN = 128, 384 at 192), to show how far the MMA intervals are from it."""
import argparse
import statistics
import struct

CTAS, WGS, CHUNKS, POINTS = 8, 3, 512, 7


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stamps")
    ap.add_argument("--mma-cycles", type=float, default=0)
    ap.add_argument("--epilogue", help="$MXMOE_SM90_EPI_STAMPS's file: each unit's epilogue")
    args = ap.parse_args()
    if args.epilogue:
        epilogue(open(args.epilogue, "rb").read())
    raw = open(args.stamps, "rb").read()
    vals = struct.unpack("<%dQ" % (len(raw) // 8), raw)
    at = lambda c, w, g, p: vals[((c * WGS + w) * CHUNKS + g) * POINTS + p]
    halves = any(at(c, w, g, 6) for c in range(CTAS) for w in range(WGS) for g in range(4))
    last = 6 if halves else 4
    if halves:
        names = ["wait", "convert", "mma 0", "promote 0", "mma 1", "promote 1"]
        mma_spans = [(2, 3), (4, 5)]
    else:
        names = ["wait", "convert", "mma", "promote"]
        mma_spans = [(2, 3)]
    phases = {name: [] for name in names + ["mma", "chunk"]} if halves else \
        {name: [] for name in names + ["chunk"]}
    busy = []
    for c in range(CTAS):
        intervals = []
        for w in range(WGS):
            chunks = [g for g in range(CHUNKS) if at(c, w, g, last) != 0]
            for g in chunks:
                t = [at(c, w, g, p) for p in range(last + 1)]
                for i, name in enumerate(names):
                    phases[name].append(t[i + 1] - t[i])
                if halves:
                    phases["mma"].append(sum(t[b] - t[a] for a, b in mma_spans))
                if g + 1 in chunks:
                    phases["chunk"].append(at(c, w, g + 1, 0) - t[0])
                intervals += [(t[a], t[b]) for a, b in mma_spans if t[b] > t[a]]
        if not intervals:
            continue
        intervals.sort()
        covered, end = 0, intervals[0][0]
        for a, b in intervals:  # union of the warpgroups' MMA intervals
            if b > end:
                covered += b - max(a, end)
                end = b
        span = max(b for _, b in intervals) - intervals[0][0]
        busy.append(covered / span if span else 0)
    if not phases["chunk"]:
        print("no stamps (was the lab build run eagerly with MXMOE_SM90_STAMPS set?)")
        return
    print_spreads("cycles per chunk and warpgroup (median / 90th percentile, %d chunks):"
                  % len(phases["wait"]), phases)
    # Chunk periods far above the median: tile changes (the epilogue, the next tile's vote) or
    # stalls; their share of all the chunks' time says what the per-tile costs add up to.
    v = sorted(phases["chunk"])
    med = statistics.median(v)
    long = [x for x in v if x > 2 * med]
    print("  periods over 2x the median: %d of %d, %.0f cycles a median one, %.0f %% of the time"
          % (len(long), len(v), statistics.median(long) if long else 0,
             100 * sum(long) / sum(v)))
    if args.mma_cycles:
        print("  MMA intervals: %.2fx the full-rate %d cycles (median)"
              % (statistics.median(phases["mma"]) / args.mma_cycles, args.mma_cycles))
    print("some warpgroup's MMAs in flight: %.0f %% of the time (median over %d CTAs)"
          % (100 * statistics.median(busy), len(busy)))


EPI_POINTS = 5


def print_spreads(title, phases):
    """The title, then each phase's median and 90th percentile."""
    print(title)
    width = max(len(name) for name in phases)
    for name, v in phases.items():
        v = sorted(v)
        print("  %-*s %8.0f / %8.0f" % (width, name, statistics.median(v),
                                        v[int(0.9 * (len(v) - 1))]))


def epilogue(raw):
    """Cycles of each unit's epilogue, per phase (16-bit outputs: FP32 ones skip point 3)."""
    vals = struct.unpack("<%dQ" % (len(raw) // 8), raw)
    names = ["units + release", "slab acquired", "slab written", "handed over or stored", "whole"]
    spans = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]
    got = {name: [] for name in names}
    for i in range(len(vals) // EPI_POINTS):
        t = vals[i * EPI_POINTS:(i + 1) * EPI_POINTS]
        if all(t):
            for name, (a, b) in zip(names, spans):
                got[name].append(t[b] - t[a])
    if not got["whole"]:
        print("no epilogue stamps")
        return
    print_spreads("cycles per unit's epilogue and warpgroup (median / 90th percentile, %d units):"
                  % len(got["whole"]), got)


if __name__ == "__main__":
    main()
