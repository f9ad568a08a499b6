"""test_oracle_selfcheck.py — the oracle against things that do not depend on it or on the
library: formats.md §2.8's worked examples, an exact rational (fractions) model of SPEC §2, the
SPEC's own FP32 bit-trick definitions of the scale rules, numpy/ml_dtypes casts, and plans small
enough to check by hand. Needs no libmxmoe."""
import math
from fractions import Fraction

import numpy as np
import pytest

import gen_values as gv
import oracle as orc
from checks import assert_bytes_equal

GRID = [Fraction(v) for v in (0, 0.5, 1, 1.5, 2, 3, 4, 6)]


def exact_block(values, rule):
    """SPEC §2 for one block, in exact rationals (slow, obviously right)."""
    if not all(math.isfinite(v) for v in values):
        return 0xFF, [0] * len(values)
    amax = max(abs(Fraction(v)) for v in values)
    if amax == 0:
        s = -127
    else:
        f = 0  # floor(log2 amax) by stepping
        while Fraction(2) ** f > amax:
            f -= 1
        while Fraction(2) ** (f + 1) <= amax:
            f += 1
        if rule == "FLOOR":
            s = f - 2
        elif rule == "CEIL":
            s = (f if Fraction(2) ** f == amax else f + 1) - 2
        elif rule == "EVEN":
            s = f + (amax / Fraction(2) ** f >= Fraction(7, 4)) - 2
        else:  # RCEIL
            s = f - 4
            while 6 * Fraction(2) ** s < amax:
                s += 1
        s = max(-127, min(127, s))
    codes = []
    for v in values:
        y = abs(Fraction(v)) / Fraction(2) ** s
        if y >= 6:
            idx = 7
        else:
            dist = [abs(y - g) for g in GRID]
            best = min(dist)
            ties = [i for i, d in enumerate(dist) if d == best]
            idx = ties[0] if len(ties) == 1 else [i for i in ties if i % 2 == 0][0]
        codes.append(idx | (8 if math.copysign(1.0, v) < 0 else 0))
    return s + 127, codes


@pytest.mark.parametrize("rule", orc.RULES)
def test_worked_examples(rule):
    blocks, want_scales, want_codes = gv.worked_example_blocks(rule)
    codes, scales = orc.quantize(blocks, rule)
    assert_bytes_equal(scales.reshape(-1), want_scales, f"{rule} scales")
    assert_bytes_equal(codes, want_codes, f"{rule} codes")


@pytest.mark.parametrize("rule", orc.RULES)
@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_quantize_matches_exact_rationals(rng, rule, dtype):
    dt = gv.INPUT_DTYPES[dtype]
    sets = [gv.random_blocks(rng, 200, dt), gv.tie_blocks(rng, dt, rule),
            gv.threshold_blocks(rng, dt), gv.saturation_blocks(rng, dt),
            gv.extreme_blocks(rng, dt), gv.zero_blocks(rng, dt), gv.nonfinite_blocks(rng, dt, 32)]
    blocks64 = np.concatenate(sets)
    sample = blocks64[rng.choice(len(blocks64), size=min(600, len(blocks64)), replace=False)]
    codes, scales = orc.quantize(gv.as_dtype(sample, dt), rule)
    for i, row in enumerate(sample):
        byte, want = exact_block([float(v) for v in row], rule)
        assert scales[i, 0] == byte, f"block {row.tolist()}: scale {scales[i, 0]:#x} != {byte:#x}"
        assert codes[i].tolist() == want, f"block {row.tolist()}: {codes[i].tolist()} != {want}"


def spec_bit_trick_exponent(amax32, rule):
    """SPEC §2's FP32 bit definitions (the C side's method), for cross-checking only."""
    b = amax32.view(np.uint32).astype(np.int64)
    e = ((b >> 23) & 0xFF) - 127
    mant = b & 0x7FFFFF
    if rule == "FLOOR":
        return e - 2
    if rule == "CEIL":
        return e + (mant != 0) - 2
    if rule == "EVEN":
        return (((b + (1 << 21)) >> 23) & 0x1FF) - 127 - 2
    q = (amax32.astype(np.float64) / 6.0)  # RCEIL: ceil(log2(amax / 6)), exact in float64
    m, ex = np.frexp(q)
    return np.where(m == 0.5, ex - 1, ex)


@pytest.mark.parametrize("rule", orc.RULES)
def test_scale_exponent_matches_spec_bit_tricks(rng, rule):
    exps = rng.integers(-126, 128, size=200000)
    mant = rng.integers(0, 1 << 23, size=200000)
    mant[:1000] = 0
    mant[1000:2000] = (1 << 23) - 1
    mant[2000:3000] = 0x600000 - rng.integers(0, 2, size=1000)  # EVEN's 1.75 threshold
    mant[3000:4000] = 0x400000 + rng.integers(-1, 2, size=1000)  # RCEIL's 1.5 threshold (6=1.5*4)
    amax = ((exps + 127) << 23 | mant).astype(np.uint32).view(np.float32)
    got = orc.scale_exponent(amax.astype(np.float64), rule)
    want = spec_bit_trick_exponent(amax, rule)
    bad = got != want
    assert not bad.any(), f"{rule}: amax {amax[bad][:5]} got {got[bad][:5]} want {want[bad][:5]}"


def test_round_to_matches_single_rounding_casts(rng):
    x = np.ldexp(rng.random(200000) * 2 - 1, rng.integers(-160, 130, size=200000))
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235677973366e38, 6.5520e4, 65519.99]
    with np.errstate(over="ignore"):
        assert np.array_equal(orc.round_to(x, orc.F32).view(np.uint32),
                              x.astype(np.float32).view(np.uint32))
        assert np.array_equal(orc.round_to(x, orc.F16).view(np.uint16),
                              x.astype(np.float16).view(np.uint16))
        # from float32 inputs ml_dtypes' bfloat16 cast is a single rounding
        x32 = x.astype(np.float32)
        assert np.array_equal(orc.round_to(x32.astype(np.float64), orc.BF16).view(np.uint16),
                              x32.astype(orc.BF16).view(np.uint16))
    # and from float64 the oracle avoids the double rounding that a float32 step would add:
    # 1 + 2^-8 + 2^-30 is above the bfloat16 midpoint 1 + 2^-8, float32 would drop the 2^-30
    v = 1.0 + 2.0 ** -8 + 2.0 ** -30
    assert float(orc.round_to(np.array([v]), orc.BF16)[0]) == 1.0 + 2.0 ** -7


def test_dequantize_all_codes_and_scales():
    codes = np.tile(np.arange(16, dtype=np.uint8), 2)[None, :].repeat(256, axis=0)
    scales = np.arange(256, dtype=np.uint8)[:, None]
    got = orc.dequantize(codes, scales, orc.F32).astype(np.float64)
    for b in (0, 1, 126, 127, 200, 254):
        for c in range(16):
            mag = [0, 0.5, 1, 1.5, 2, 3, 4, 6][c & 7] * (-1.0 if c & 8 else 1.0)
            with np.errstate(over="ignore"):
                want = np.float32(mag * 2.0 ** (b - 127))  # +-Inf past FLT_MAX at b = 254
            assert got[b, c] == want
    assert np.isnan(got[255]).all()
    assert np.signbit(got[127, 8]) and got[127, 8] == 0.0  # code 0x8 is -0


def test_swizzle_offsets_are_a_bijection_into_the_buffer(rng):
    for rows, k in [(1, 32), (127, 96), (128, 128), (129, 160), (300, 2880)]:
        off = orc.swizzle_offsets(rows, k).reshape(-1)
        assert len(np.unique(off)) == off.size
        assert off.max() < orc.swizzled_bytes(rows, k)
        lin = rng.integers(1, 256, size=(rows, k // 32), dtype=np.uint8)
        sw = orc.swizzle(lin, k)
        assert (np.count_nonzero(sw) == lin.size)  # padding is zero
        assert_bytes_equal(orc.unswizzle(sw, rows, k), lin)
    # hand-checked offsets from the formula: row 33 col 5, K = 256 (Kb = 8, 2 column atoms)
    assert orc.swizzle_offsets(34, 256)[33, 5] == 512 + 1 * 16 + 1 * 4 + 1
    assert orc.swizzle_offsets(200, 256)[130, 0] == (1 * 2 + 0) * 512 + 2 * 16 + 0 + 0


def test_gguf_roundtrip_and_layout(rng):
    codes = rng.integers(0, 16, size=(3, 64), dtype=np.uint8)
    scales = rng.integers(0, 256, size=(3, 2), dtype=np.uint8)
    g = orc.to_gguf(codes, scales)
    assert g.shape == (3, 34)
    assert g[1, 17] == scales[1, 1]
    assert g[2, 1 + 17 + 3] == codes[2, 32 + 3] | (codes[2, 32 + 19] << 4)
    c2, s2 = orc.from_gguf(g)
    assert_bytes_equal(c2, codes)
    assert_bytes_equal(s2, scales)


def test_plan_by_hand():
    ids = np.array([[2, 0], [-1, 2], [0, 0], [1, -1]], dtype=np.int32)
    counts, offsets, sorted_rows, row_of = orc.plan(ids, None, 4)
    assert counts.tolist() == [3, 1, 2, 0]
    assert offsets.tolist() == [0, 3, 4, 6, 6]
    assert sorted_rows.tolist() == [1, 4, 5, 6, 0, 3, -1, -1]
    assert row_of.tolist() == [4, 0, -1, 5, 1, 2, 3, -1]
    emap = np.array([-1, 0, 1], dtype=np.int32)  # global 0 not here, 1 -> 0, 2 -> 1
    ids3 = np.array([[2, 0], [1, 2]], dtype=np.int32)
    counts, offsets, sorted_rows, row_of = orc.plan(ids3, emap, 2)
    assert counts.tolist() == [1, 2]
    assert sorted_rows.tolist() == [2, 0, 3, -1]


def test_route_ties_and_order():
    logits = np.array([[1.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    ids, w, near = orc.route(logits, "TOPK_SOFTMAX", 3)
    assert ids.tolist() == [[1, 2, 0], [0, 1, 2]]
    assert np.allclose(w[1], 1 / 3) and not near.any()
    ids, w, _ = orc.route(logits, "SOFTMAX_TOPK", 4)
    assert ids.tolist() == [[1, 2, 0, 3], [0, 1, 2, 3]]
    assert np.allclose(w.sum(axis=1), 1.0)


def test_gemm_emulation_equals_fp64_when_exact(rng):
    """With one block per row product (K = 32) the FP32 emulation has nothing to round."""
    a = rng.integers(0, 16, size=(5, 32), dtype=np.uint8)
    w = rng.integers(0, 16, size=(2, 3, 32), dtype=np.uint8)
    sa = rng.integers(110, 140, size=(5, 1), dtype=np.uint8)
    sw = rng.integers(110, 140, size=(2, 3, 1), dtype=np.uint8)
    offsets = np.array([0, 2, 5])
    em = orc.gemm_fp32_emulated(a, sa, w, sw, offsets)
    ref, _ = orc.gemm_fp64(a, sa, w, sw, offsets)
    assert np.array_equal(em.astype(np.float64), ref)
