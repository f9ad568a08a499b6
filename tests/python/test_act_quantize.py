"""test_act_quantize.py — mxmoe_act_and_quantize byte for byte against the FP64 oracle.

Every activation; gate‖up concatenated and interleaved; act dtypes BF16/F16/F32; h in
F32/BF16/F16; no offsets, offsets with linear scales (rows past offsets[E] untouched) and
swizzled scales (grouped atoms). Inputs mix ordinary values, large and small magnitudes, signed
zeros and the SwiGLU clamp boundaries.

A block may differ from the oracle's nominal bytes only if it is what some choice of activation
values inside the libm error bracket gives (oracle_act.within_bracket: an FP64 value so close to
an FP32 rounding midpoint that a few-ulp libm difference decides the side); such blocks are
counted and must stay vanishingly rare. Any other difference fails.
"""
import numpy as np
import pytest

import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like
from test_experts_quantize import random_offsets

ACT_DTYPES = {"BF16": orc.BF16, "F16": orc.F16, "F32": orc.F32}
CASES = [(a, lay) for a in orc.MUL_ACTIVATIONS for lay in ("CONCAT", "INTERLEAVED")] + [
    (a, "CONCAT") for a in orc.ACTIVATIONS if a not in orc.MUL_ACTIVATIONS]
MAX_EXPLAINED_FRACTION = 1e-4  # libm-midpoint blocks allowed, as a fraction of all blocks


def act_params(lib, activation, layout, act_dtype, rule, alpha=None, limit=None):
    p = lib.mxmoe_act_params_default()
    p.activation = mx.Activation[activation]
    p.layout = mx.GateUpLayout[layout]
    p.act_dtype = mx.DType[act_dtype]
    p.rule = mx.Rule[rule]
    if alpha is not None:
        p.swiglu_alpha, p.swiglu_limit = alpha, limit
    return p


def random_h(rng, rows, width, dtype, limit=7.0):
    """Ordinary values (normal * 3), whole blocks 100x larger or 1000x smaller, signed zeros, and
    the SwiGLU clamp points (+-limit and one float32 ulp either side)."""
    h = rng.standard_normal((rows, width)) * 3.0
    blocks = h.reshape(rows, -1, 32)
    pick = rng.random(blocks.shape[:2])
    blocks[pick < 0.1] *= 100.0
    blocks[(pick >= 0.1) & (pick < 0.2)] *= 1e-3
    specials = np.array([0.0, -0.0, limit, -limit, np.nextafter(np.float32(limit), np.float32(9)),
                         np.nextafter(np.float32(limit), np.float32(0)), -1.0, 1.0])
    where = rng.random(h.shape) < 0.03
    h[where] = rng.choice(specials, size=int(where.sum()))
    if dtype == orc.F16:
        h = np.clip(h, -6e4, 6e4)
    return h.astype(np.float32).astype(dtype)


def explain_or_fail(value, lo, hi, rule, got_codes, got_scales, what, inputs):
    """Compares per block; returns (blocks explained by the libm bracket, blocks). `inputs` maps
    a name to an array [rows, I] of activation inputs, shown when a block fails."""
    want_codes, want_scales = orc.quantize(value, rule)
    shape = want_scales.shape
    differs = (got_scales != want_scales) | (
        got_codes.reshape(shape + (32,)) != want_codes.reshape(shape + (32,))).any(axis=-1)
    if not differs.any():
        return 0, differs.size
    ok = orc.within_bracket(lo, hi, rule, got_codes, got_scales).reshape(shape)
    unexplained = differs & ~ok
    if unexplained.any():
        r, b = (int(i) for i in np.argwhere(unexplained)[0])
        cols = slice(b * 32, (b + 1) * 32)
        raise AssertionError(
            f"{what}: {int(unexplained.sum())} blocks differ beyond the libm bracket; first "
            f"(row {r}, block {b}):\n"
            + "".join(f"  {name} {arr[r, cols].tolist()}\n" for name, arr in inputs.items())
            + f"  act values (oracle) {value[r, cols].astype(np.float64).tolist()}\n"
            f"  scale got {got_scales[r, b]:#04x} want {want_scales[r, b]:#04x}\n"
            f"  codes got {got_codes[r, cols].tolist()}\n"
            f"  codes want {want_codes[r, cols].tolist()}")
    return int(differs.sum()), differs.size


def run_case(ctx, lib, rng, activation, layout, act_dtype, offsets_mode):
    rule = str(rng.choice(orc.RULES))
    h_dtype = [orc.F32, orc.BF16, orc.F16][int(rng.integers(3))]
    alpha, limit = (1.702, 7.0) if rng.random() < 0.7 else (float(rng.uniform(0.5, 3)),
                                                            float(rng.uniform(1, 12)))
    rows = int(rng.integers(1, 300))
    inter = 32 * int(rng.choice([1, 2, 3, 5, 8, 12]))
    width = 2 * inter if activation in orc.MUL_ACTIVATIONS else inter
    h = random_h(rng, rows, width, h_dtype, limit)
    params = act_params(lib, activation, layout, act_dtype, rule, alpha, limit)
    value, lo, hi = orc.activation(
        orc.to_f64(h), activation, layout, np.float32(alpha), np.float32(limit),
        ACT_DTYPES[act_dtype])
    offsets = None
    kept = rows
    if offsets_mode != "none":
        offsets = random_offsets(rng, rows, int(rng.integers(1, 6)), use_all=rng.random() < 0.5)
        kept = int(offsets[-1])
    packed = poisoned_like((rows, inter // 2), np.uint8)
    if offsets_mode == "swizzled":
        capacity = lib.mxmoe_grouped_swizzled_scale_bytes(rows, len(offsets) - 1, inter)
        scales = poisoned_like(capacity, np.uint8)
        layout_enum = mx.ScaleLayout.SWIZZLED
    else:
        scales = poisoned_like((rows, inter // 32), np.uint8)
        layout_enum = mx.ScaleLayout.LINEAR
    ctx.act_and_quantize(h, offsets, params, packed, scales, layout_enum)

    what = (f"{activation} {layout} act_dtype={act_dtype} h={h_dtype} rule={rule} "
            f"alpha={alpha} limit={limit} offsets={offsets_mode} rows={rows} I={inter}")
    if offsets_mode == "swizzled":
        span = orc.group_row_bases(offsets)[-1] * 4 * orc.ceil_div(inter // 32, 4)
        got_scales = orc.grouped_unswizzle(scales, offsets, inter, rows)[:kept]
        # padding bytes must be zero: the oracle's own swizzle of the library's scales
        assert_bytes_equal(scales[:span], orc.grouped_swizzle(got_scales, offsets, inter),
                           f"{what}: swizzled span")
        assert_untouched(scales[span:], f"{what}: bytes past the span")
    else:
        got_scales = scales[:kept]
        assert_untouched(scales[kept:], f"{what}: scale rows past offsets[E]")
    assert_untouched(packed[kept:], f"{what}: packed rows past offsets[E]")
    h64 = orc.to_f64(h[:kept])
    if activation in orc.MUL_ACTIVATIONS:
        inputs = dict(zip(("gate", "up"), orc.split_gate_up(h64, layout)))
    else:
        inputs = {"x": h64}
    return explain_or_fail(value[:kept], lo[:kept], hi[:kept], rule,
                           orc.unpack(packed[:kept]), got_scales, what, inputs)


@pytest.mark.parametrize("act_dtype", list(ACT_DTYPES))
@pytest.mark.parametrize("activation,layout", CASES)
def test_act_and_quantize(ctx, lib, rng, activation, layout, act_dtype):
    explained = blocks = 0
    for offsets_mode in ("none", "linear", "swizzled") * 4:
        e, n = run_case(ctx, lib, rng, activation, layout, act_dtype, offsets_mode)
        explained, blocks = explained + e, blocks + n
    if explained:
        print(f"{explained} of {blocks} blocks differ only by libm midpoint rounding")
    assert explained <= MAX_EXPLAINED_FRACTION * blocks + 1, (
        f"{explained} of {blocks} blocks explained by libm midpoints: too many to be chance")


def test_defaults(lib):
    p = lib.mxmoe_act_params_default()
    assert p.activation == mx.Activation.SILU_MUL and p.layout == mx.GateUpLayout.CONCAT
    assert np.float32(p.swiglu_alpha) == np.float32(1.702)
    assert p.swiglu_limit == 7.0
    assert p.act_dtype == mx.DType.BF16 and p.rule == mx.Rule.EVEN


@pytest.mark.parametrize("activation", orc.ACTIVATIONS)
def test_nan_input_poisons_its_block(ctx, lib, activation):
    """SPEC §2: bad input shows up (scale 0xFF) instead of turning into numbers. A NaN in the
    gate or the up half reaches the activation's value; the other blocks are unaffected."""
    inter = 64
    width = 2 * inter if activation in orc.MUL_ACTIVATIONS else inter
    h = np.ones((2, width), dtype=np.float32)
    h[0, 3] = np.nan                       # gate element 3 (or the only half)
    h[1, width - 1] = np.nan               # last element: up half for *_MUL
    packed = poisoned_like((2, inter // 2), np.uint8)
    scales = poisoned_like((2, inter // 32), np.uint8)
    params = act_params(lib, activation, "CONCAT", "BF16", "EVEN")
    ctx.act_and_quantize(h, None, params, packed, scales, mx.ScaleLayout.LINEAR)
    value, _, _ = orc.activation(orc.to_f64(h), activation, "CONCAT", act_dtype=orc.BF16)
    codes, want = orc.quantize(value, "EVEN")
    assert_bytes_equal(scales, want, f"{activation}: scales with NaN inputs")
    assert_bytes_equal(packed, orc.pack(codes), f"{activation}: codes with NaN inputs")


def test_errors(ctx, lib):
    params = act_params(lib, "SILU_MUL", "CONCAT", "BF16", "EVEN")
    h = np.ones((4, 2 * 48), dtype=np.float32)  # I = 48: not a multiple of 32
    packed, scales = poisoned_like((4, 24), np.uint8), poisoned_like((4, 2), np.uint8)
    assert ctx.act_and_quantize(h, None, params, packed, scales, mx.ScaleLayout.LINEAR,
                                check=False) == mx.Status.SHAPE
    assert_untouched(packed), assert_untouched(scales)
    h = np.ones((4, 2 * 64), dtype=np.float32)
    # without offsets, swizzled scales are one matrix of R rows: 512 bytes for 4 rows, K = 64
    packed, scales = poisoned_like((4, 32), np.uint8), poisoned_like(511, np.uint8)
    status = ctx.act_and_quantize(h, None, params, packed, scales, mx.ScaleLayout.SWIZZLED,
                                  check=False)
    assert status == mx.Status.SHAPE, "a swizzled buffer one byte short was accepted"
    assert_untouched(packed), assert_untouched(scales)
    params.activation = 99
    packed, scales = poisoned_like((4, 32), np.uint8), poisoned_like((4, 2), np.uint8)
    assert ctx.act_and_quantize(h, None, params, packed, scales, mx.ScaleLayout.LINEAR,
                                check=False) == mx.Status.INVALID_ARGUMENT
    assert_untouched(packed), assert_untouched(scales)
