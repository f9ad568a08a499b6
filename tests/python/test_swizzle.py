"""test_swizzle.py — swizzled scale layout (SPEC §3): the size queries, mxmoe_swizzle_scales
against the offset formula with zero padding (rows not a multiple of 128, K not a multiple of
128), mxmoe_unswizzle_scales ignoring whatever the padding holds, and size errors."""
import numpy as np
import pytest

import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like

SHAPES = [(1, 32), (5, 64), (127, 96), (128, 128), (129, 160), (200, 2880), (256, 4096),
          (300, 32 * 7), (1000, 2048)]


def test_size_queries(lib):
    for rows, k in SHAPES:
        assert lib.mxmoe_swizzled_scale_bytes(rows, k) == orc.swizzled_bytes(rows, k)
    for rows, experts, k in [(0, 4, 64), (1, 1, 32), (300, 8, 2880), (4096, 128, 2048)]:
        want = orc.ceil_div(rows + 127 * experts, 128) * 128 * 4 * orc.ceil_div(k, 128)
        assert lib.mxmoe_grouped_swizzled_scale_bytes(rows, experts, k) == want
    assert lib.mxmoe_swizzled_scale_bytes(1, 33) == 0  # K not a multiple of 32
    assert lib.mxmoe_swizzled_scale_bytes(-1, 32) == 0
    assert lib.mxmoe_swizzled_scale_bytes(1 << 62, 1 << 40) == 0  # overflow


@pytest.mark.parametrize("rows,k", SHAPES)
def test_swizzle_matches_formula(ctx, rng, rows, k):
    linear = rng.integers(0, 256, size=(rows, k // 32), dtype=np.uint8)
    out = poisoned_like(orc.swizzled_bytes(rows, k), np.uint8)
    ctx.swizzle_scales(linear, k, out)
    assert_bytes_equal(out, orc.swizzle(linear, k), f"swizzled {rows}x{k}")


@pytest.mark.parametrize("rows,k", SHAPES)
def test_unswizzle_reads_only_real_scales(ctx, rng, rows, k):
    linear = rng.integers(0, 256, size=(rows, k // 32), dtype=np.uint8)
    swizzled = orc.swizzle(linear, k)
    padding = np.ones(swizzled.size, dtype=bool)
    padding[orc.swizzle_offsets(rows, k).reshape(-1)] = False
    swizzled[padding] = rng.integers(0, 256, size=int(padding.sum()), dtype=np.uint8)
    out = poisoned_like((rows, k // 32), np.uint8)
    ctx.unswizzle_scales(swizzled, k, out)
    assert_bytes_equal(out, linear, f"unswizzled {rows}x{k}")


def test_wrong_sizes_are_errors(ctx):
    linear = np.zeros((130, 3), dtype=np.uint8)
    short = poisoned_like(orc.swizzled_bytes(130, 96) - 1, np.uint8)
    assert ctx.swizzle_scales(linear, 96, short, check=False) != mx.Status.OK
    assert_untouched(short)
    out = poisoned_like(orc.swizzled_bytes(130, 96), np.uint8)
    assert ctx.swizzle_scales(linear, 128, out, check=False) != mx.Status.OK  # k != 32 * cols
    assert ctx.swizzle_scales(linear, 100, out, check=False) != mx.Status.OK  # k % 32 != 0
    assert_untouched(out)
