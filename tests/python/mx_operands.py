"""mx_operands.py — random MXFP4 operands for the GEMM and MoE tests, and their library layouts.

An operand is kept as codes + linear scale bytes (what the oracles take) and handed to the
library as (packed, scales, layout): linear scales [..., K/32], swizzled per matrix
(U8 [E * swizzled_bytes(N, K)], weights) or grouped-swizzled by expert offsets (activations).
"""
import numpy as np

import mxmoe_ctypes as mx
import oracle as orc


def random_weights(rng, experts, rows, k, scale_lo=120, scale_hi=134):
    """Random codes [E, rows, K] and scale bytes [E, rows, K/32] in [scale_lo, scale_hi].

    Keep the range wide (>= 12 binades): with a narrow one every FP32 partial sum of the GEMM is
    exact, and the bit-exact check could not tell one summation order from another."""
    codes = rng.integers(0, 16, size=(experts, rows, k), dtype=np.uint8)
    scales = rng.integers(scale_lo, scale_hi + 1, size=(experts, rows, k // 32), dtype=np.uint8)
    return codes, scales


def weights_for_library(codes, scales, layout):
    """(packed [E, N, K/2], scales, layout) with scales linear [E, N, K/32] or per-expert
    swizzled U8 [E * swizzled_bytes(N, K)]."""
    experts, rows, k = codes.shape
    packed = orc.pack(codes)
    if layout == "LINEAR":
        return packed, np.ascontiguousarray(scales), mx.ScaleLayout.LINEAR
    swz = np.concatenate([orc.swizzle(scales[e], k) for e in range(experts)])
    return packed, swz, mx.ScaleLayout.SWIZZLED


def activations_for_library(codes, scales, offsets, layout, lib):
    """(packed [R, K/2], scales, layout) with scales linear [R, K/32] or grouped-swizzled into a
    buffer of the size mxmoe_grouped_swizzled_scale_bytes bounds (span first, then zeros)."""
    rows, k = codes.shape
    packed = orc.pack(codes)
    if layout == "LINEAR":
        return packed, np.ascontiguousarray(scales), mx.ScaleLayout.LINEAR
    span = orc.grouped_swizzle(scales, offsets, k)
    capacity = lib.mxmoe_grouped_swizzled_scale_bytes(rows, len(offsets) - 1, k)
    buf = np.zeros(max(capacity, span.size), dtype=np.uint8)
    buf[: span.size] = span
    return packed, buf, mx.ScaleLayout.SWIZZLED


def random_offsets(rng, rows, experts, empty_fraction=0.3, keep_all=False):
    """Offsets [E+1] from 0 to at most `rows` (to `rows` with keep_all): some experts empty, some
    with one row."""
    weights = rng.random(experts) * (rng.random(experts) > empty_fraction)
    if weights.sum() == 0:
        weights[rng.integers(experts)] = 1.0
    kept = rows if keep_all or rng.random() < 0.6 else int(rng.integers(0, rows + 1))
    counts = rng.multinomial(kept, weights / weights.sum())
    if experts > 1 and rng.random() < 0.3:  # move rows to make a one-row expert
        donor, single = int(np.argmax(counts)), int(rng.integers(experts))
        if donor != single and counts[donor] > 1:
            counts[donor] -= 1 - counts[single]
            counts[single] = 1
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def varied_rows(rng, rows, k, binades=12):
    """Standard normal data whose 32-blocks are scaled by 2^U{-binades/2..binades/2}: blocks of
    one row get different scales, so block products span many binades (see random_weights)."""
    x = rng.standard_normal((rows, k))
    block_scale = np.exp2(rng.integers(-binades // 2, binades // 2 + 1, size=(rows, k // 32)))
    return x * block_scale.repeat(32, axis=1)
