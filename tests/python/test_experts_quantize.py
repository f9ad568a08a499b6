"""test_experts_quantize.py — mxmoe_experts_quantize: rows grouped by expert offsets, linear and
swizzled scales (each expert a fresh 128-row atom, padding 0x00, every byte of the span
written and nothing past it), experts with zero rows, rows past offsets[E] left untouched,
every rule and input dtype."""
import numpy as np
import pytest

import gen_values as gv
import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like, assert_untouched_after_data_error


def random_offsets(rng, rows, experts, zero_fraction=0.3, use_all=True):
    """Nondecreasing offsets [E+1] from 0 to `rows` (or fewer), with some empty experts."""
    weights = rng.random(experts) * (rng.random(experts) > zero_fraction)
    if weights.sum() == 0:
        weights[rng.integers(experts)] = 1.0
    kept = rows if use_all else int(rng.integers(0, rows + 1))
    counts = rng.multinomial(kept, weights / weights.sum())
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def make_case(rng, dtype):
    experts = int(rng.integers(1, 9))
    rows = int(rng.integers(0, 400))
    k = 32 * int(rng.choice([1, 3, 4, 5, 8, 90]))
    x = gv.as_dtype(gv.random_blocks(rng, rows * k // 32, dtype).reshape(rows, k), dtype)
    return x, random_offsets(rng, rows, experts, use_all=bool(rng.random() < 0.5)), k


@pytest.mark.parametrize("rule", orc.RULES)
@pytest.mark.parametrize("dtype", list(gv.INPUT_DTYPES))
def test_linear(ctx, rng, rule, dtype):
    for _ in range(4):
        x, offsets, k = make_case(rng, gv.INPUT_DTYPES[dtype])
        rows, kept = x.shape[0], int(offsets[-1])
        packed = poisoned_like((rows, k // 2), np.uint8)
        scales = poisoned_like((rows, k // 32), np.uint8)
        ctx.experts_quantize(x, offsets, mx.Rule[rule], packed, scales, mx.ScaleLayout.LINEAR)
        codes, want_scales = orc.quantize(x[:kept], rule)
        assert_bytes_equal(packed[:kept], orc.pack(codes), "packed rows")
        assert_bytes_equal(scales[:kept], want_scales, "scales")
        assert_untouched(packed[kept:], "packed rows past offsets[E]")
        assert_untouched(scales[kept:], "scale rows past offsets[E]")


@pytest.mark.parametrize("rule", orc.RULES)
@pytest.mark.parametrize("dtype", list(gv.INPUT_DTYPES))
def test_swizzled(ctx, lib, rng, rule, dtype):
    for _ in range(4):
        x, offsets, k = make_case(rng, gv.INPUT_DTYPES[dtype])
        rows, experts, kept = x.shape[0], len(offsets) - 1, int(offsets[-1])
        capacity = lib.mxmoe_grouped_swizzled_scale_bytes(rows, experts, k)
        packed = poisoned_like((rows, k // 2), np.uint8)
        scales = poisoned_like(capacity, np.uint8)
        ctx.experts_quantize(x, offsets, mx.Rule[rule], packed, scales, mx.ScaleLayout.SWIZZLED)
        codes, linear = orc.quantize(x[:kept], rule)
        want = orc.grouped_swizzle(linear, offsets, k)
        assert want.size <= capacity, "the size query must bound the span"
        assert_bytes_equal(packed[:kept], orc.pack(codes), "packed rows")
        assert_bytes_equal(scales[: want.size], want, "swizzled span (padding 0x00)")
        assert_untouched(scales[want.size:], "bytes past the span")
        assert_untouched(packed[kept:], "packed rows past offsets[E]")


def test_too_small_swizzled_buffer_is_an_error(ctx, rng):
    x = np.ones((130, 64), dtype=np.float32)
    offsets = np.array([0, 1, 130], dtype=np.int32)  # two experts: 128 + 256 atom rows
    need = orc.grouped_swizzle(np.zeros((130, 2), np.uint8), offsets, 64).size
    packed = poisoned_like((130, 32), np.uint8)
    scales = poisoned_like(need - 1, np.uint8)
    status = ctx.experts_quantize(x, offsets, mx.Rule.EVEN, packed, scales,
                                  mx.ScaleLayout.SWIZZLED, check=False)
    assert status != mx.Status.OK
    assert_untouched_after_data_error(ctx, packed, scales)


@pytest.mark.parametrize("offsets", [[0, 5, 3], [0, 2, 9], [0, -1, 4]])
def test_bad_offsets_are_errors(ctx, offsets):
    x = np.ones((8, 32), dtype=np.float32)
    packed = poisoned_like((8, 16), np.uint8)
    scales = poisoned_like((8, 1), np.uint8)
    status = ctx.experts_quantize(x, np.array(offsets, dtype=np.int32), mx.Rule.EVEN, packed,
                                  scales, mx.ScaleLayout.LINEAR, check=False)
    assert status != mx.Status.OK, f"offsets {offsets} accepted"
    assert_untouched_after_data_error(ctx, packed, scales)
