"""test_quantize.py — mxmoe_quantize byte for byte against the oracle (SPEC §2).

Covers, for every rule and F32/BF16/F16 inputs: 2^20 random values over the input type's whole
exponent range; the edge sets of gen_values (E2M1 midpoint ties at every scale, each rule's
exponent thresholds +-1 ulp, +-6 saturation, near-FLT_MAX and subnormal magnitudes with the
2^-127 scale clamp, signed zeros and -0 -> 0x8, NaN/+-Inf blocks -> 0xFF and codes 0, all-zero
blocks -> 0x00); formats.md §2.8's worked examples; leading dims; and the error statuses.
"""
import numpy as np
import pytest

import gen_values as gv
import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like

RULES = orc.RULES
DTYPES = list(gv.INPUT_DTYPES)
RANDOM_VALUES = 1 << 20


def quantize_with_library(ctx, x, rule):
    packed = poisoned_like(x.shape[:-1] + (x.shape[-1] // 2,), np.uint8)
    scales = poisoned_like(x.shape[:-1] + (x.shape[-1] // 32,), np.uint8)
    ctx.quantize(x, mx.Rule[rule], packed, scales)
    return packed, scales


def assert_quantized_like_oracle(ctx, x, rule):
    packed, scales = quantize_with_library(ctx, x, rule)
    codes, want_scales = orc.quantize(x, rule)
    want_packed = orc.pack(codes)
    bad_blocks = (scales != want_scales) | (
        orc.unpack(packed).reshape(scales.shape + (32,)) != codes.reshape(scales.shape + (32,))
    ).any(axis=-1)
    if bad_blocks.any():
        first = tuple(int(i) for i in np.argwhere(bad_blocks)[0])
        blk = x.reshape(scales.shape + (32,))[first].astype(np.float64)
        got_codes = orc.unpack(packed).reshape(scales.shape + (32,))[first]
        want_codes = codes.reshape(scales.shape + (32,))[first]
        raise AssertionError(
            f"{rule} {x.dtype}: {int(bad_blocks.sum())} of {bad_blocks.size} blocks differ; "
            f"first block {first}:\n  input {blk.tolist()}\n"
            f"  scale got {scales[first]:#04x} want {want_scales[first]:#04x}\n"
            f"  codes got {got_codes.tolist()}\n  codes want {want_codes.tolist()}")
    assert_bytes_equal(packed, want_packed, "packed")  # nibble order, once blocks agree


def rows_of(blocks, rng, max_blocks_per_row=96):
    """Lays blocks [n, 32] out as rows of K = 32 * kb for a random kb (K not always % 128)."""
    kb = int(rng.integers(1, max_blocks_per_row + 1))
    n = len(blocks) - len(blocks) % kb
    if n == 0:
        kb, n = 1, len(blocks)
    return blocks[:n].reshape(n // kb, kb * 32)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_wide_range(ctx, rng, rule, dtype):
    dt = gv.INPUT_DTYPES[dtype]
    blocks = gv.random_blocks(rng, RANDOM_VALUES // 32, dt)
    x = gv.as_dtype(rows_of(blocks, rng), dt)
    assert_quantized_like_oracle(ctx, x, rule)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_sets(ctx, rng, rule, dtype):
    dt = gv.INPUT_DTYPES[dtype]
    sets = {
        "ties": gv.tie_blocks(rng, dt, rule),
        "thresholds": gv.threshold_blocks(rng, dt),
        "saturation": gv.saturation_blocks(rng, dt),
        "extremes": gv.extreme_blocks(rng, dt),
        "zeros": gv.zero_blocks(rng, dt),
        "nonfinite": gv.nonfinite_blocks(rng, dt),
    }
    for name, blocks in sets.items():
        assert len(blocks), name
        x = gv.as_dtype(rng.permutation(blocks).reshape(-1, 32), dt)
        try:
            assert_quantized_like_oracle(ctx, x, rule)
        except AssertionError as err:
            raise AssertionError(f"edge set '{name}': {err}") from None


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_formats_worked_examples(ctx, rule, dtype):
    blocks, want_scales, want_codes = gv.worked_example_blocks(rule)
    dt = gv.INPUT_DTYPES[dtype]
    # the decimals of §2.8 are not all representable in BF16/F16: quantize the rounded inputs,
    # which the table still describes (every rounded value stays within its E2M1 interval)
    x = blocks.astype(dt)
    packed, scales = quantize_with_library(ctx, x, rule)
    assert_bytes_equal(scales.reshape(-1), want_scales, f"{rule} scale bytes")
    assert_bytes_equal(orc.unpack(packed), want_codes, f"{rule} codes")


def test_signed_zero_codes(ctx):
    x = np.zeros((2, 32), dtype=np.float32)
    x[0, 1::2] = -0.0
    x[1, 0] = -1e-30  # rounds to zero under the scale of 1.0, keeps its sign
    x[1, 1] = 1.0
    packed, scales = quantize_with_library(ctx, x, "EVEN")
    codes = orc.unpack(packed)
    assert scales[0, 0] == 0x00, "all-zero block"
    assert codes[0, 0::2].tolist() == [0] * 16 and codes[0, 1::2].tolist() == [8] * 16
    assert codes[1, 0] == 0x8


def test_leading_dims(ctx, rng):
    x = gv.as_dtype(gv.random_blocks(rng, 2 * 3 * 4, orc.BF16).reshape(2, 3, 128), orc.BF16)
    assert_quantized_like_oracle(ctx, x, "EVEN")


def test_errors_leave_outputs_untouched(ctx):
    x = np.ones((4, 48), dtype=np.float32)  # K % 32 != 0
    packed, scales = poisoned_like((4, 24), np.uint8), poisoned_like((4, 1), np.uint8)
    assert ctx.quantize(x, mx.Rule.EVEN, packed, scales, check=False) == mx.Status.SHAPE
    assert_untouched(packed), assert_untouched(scales)
    x = np.ones((4, 64), dtype=np.float32)
    packed, scales = poisoned_like((3, 32), np.uint8), poisoned_like((3, 2), np.uint8)
    assert ctx.quantize(x, mx.Rule.EVEN, packed, scales, check=False) == mx.Status.SHAPE
    assert_untouched(packed), assert_untouched(scales)
    packed, scales = poisoned_like((4, 32), np.uint8), poisoned_like((4, 2), np.uint8)
    xi = np.ones((4, 64), dtype=np.int32)
    assert ctx.quantize(xi, mx.Rule.EVEN, packed, scales, check=False) == mx.Status.DTYPE
    assert ctx.quantize(x, 99, packed, scales, check=False) == mx.Status.INVALID_ARGUMENT
    assert_untouched(packed), assert_untouched(scales)
    assert ctx.last_error() != ""
