"""test_dequantize_gguf.py — mxmoe_dequantize and the GGUF block_mxfp4 conversions.

dequantize: every code with every scale byte (0x00 = 2^-127, an FP32 subnormal; 0xFF -> NaN;
0xFE overflowing to +-Inf for |code| >= 2), plus random data, to F32/BF16/F16, bit for bit.
GGUF: canonical -> GGUF and GGUF -> canonical against the oracle's block layout, and round trips.
"""
import numpy as np
import pytest

import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_same_floats, assert_untouched, poisoned_like

OUT_DTYPES = {"F32": orc.F32, "BF16": orc.BF16, "F16": orc.F16}


def every_code_with_every_scale():
    """256 rows (one per scale byte) of K = 32: codes 0..15 twice."""
    codes = np.tile(np.arange(16, dtype=np.uint8), 2)[None, :].repeat(256, axis=0)
    return orc.pack(codes), np.arange(256, dtype=np.uint8)[:, None].copy()


@pytest.mark.parametrize("out_dtype", OUT_DTYPES)
def test_dequantize_every_code_and_scale(ctx, out_dtype):
    packed, scales = every_code_with_every_scale()
    dt = OUT_DTYPES[out_dtype]
    out = poisoned_like((256, 32), dt)
    ctx.dequantize(packed, scales, out)
    want = orc.dequantize(orc.unpack(packed), scales, dt)
    assert_same_floats(out, want, f"dequantize to {out_dtype}")
    assert np.isnan(out[255].astype(np.float32)).all(), "scale 0xFF must decode to NaN"


@pytest.mark.parametrize("out_dtype", OUT_DTYPES)
def test_dequantize_random(ctx, rng, out_dtype):
    rows, k = int(rng.integers(1, 300)), 32 * int(rng.integers(1, 100))
    packed = rng.integers(0, 256, size=(rows, k // 2), dtype=np.uint8)
    scales = rng.integers(0, 256, size=(rows, k // 32), dtype=np.uint8)
    dt = OUT_DTYPES[out_dtype]
    out = poisoned_like((rows, k), dt)
    ctx.dequantize(packed, scales, out)
    assert_same_floats(out, orc.dequantize(orc.unpack(packed), scales, dt))


@pytest.mark.parametrize("rule", orc.RULES)
def test_requantize_dequantized(ctx, rng, rule):
    """quantize -> dequantize -> quantize through the library, the last step against the oracle:
    catches a dequantize whose error a symmetric quantize bug would hide."""
    x = (rng.standard_normal((64, 256)) * 10).astype(np.float32)
    packed = poisoned_like((64, 128), np.uint8)
    scales = poisoned_like((64, 8), np.uint8)
    ctx.quantize(x, mx.Rule[rule], packed, scales)
    deq = poisoned_like((64, 256), np.float32)
    ctx.dequantize(packed, scales, deq)
    codes, s = orc.quantize(deq, rule)
    packed2 = poisoned_like((64, 128), np.uint8)
    scales2 = poisoned_like((64, 8), np.uint8)
    ctx.quantize(deq, mx.Rule[rule], packed2, scales2)
    assert_bytes_equal(packed2, orc.pack(codes))
    assert_bytes_equal(scales2, s)


def test_dequantize_shape_error(ctx):
    packed = np.zeros((2, 16), dtype=np.uint8)
    scales = np.zeros((2, 1), dtype=np.uint8)
    out = poisoned_like((2, 64), np.float32)
    assert ctx.dequantize(packed, scales, out, check=False) == mx.Status.SHAPE
    assert_untouched(out)


def test_gguf_from_mx(ctx, rng):
    rows, k = int(rng.integers(1, 200)), 32 * int(rng.integers(1, 100))
    packed = rng.integers(0, 256, size=(rows, k // 2), dtype=np.uint8)
    scales = rng.integers(0, 256, size=(rows, k // 32), dtype=np.uint8)
    gguf = poisoned_like((rows, k // 32 * 17), np.uint8)
    ctx.gguf_from_mx(packed, scales, gguf)
    assert_bytes_equal(gguf, orc.to_gguf(orc.unpack(packed), scales), "gguf blocks")


def test_mx_from_gguf_and_round_trip(ctx, rng):
    lead, k = (3, int(rng.integers(1, 40))), 32 * int(rng.integers(1, 60))
    gguf = rng.integers(0, 256, size=lead + (k // 32 * 17,), dtype=np.uint8)
    packed = poisoned_like(lead + (k // 2,), np.uint8)
    scales = poisoned_like(lead + (k // 32,), np.uint8)
    ctx.mx_from_gguf(gguf, packed, scales)
    codes, want_scales = orc.from_gguf(gguf)
    assert_bytes_equal(packed, orc.pack(codes), "packed from gguf")
    assert_bytes_equal(scales, want_scales, "scales from gguf")
    back = poisoned_like(gguf.shape, np.uint8)
    ctx.gguf_from_mx(packed, scales, back)
    assert_bytes_equal(back, gguf, "gguf round trip")


def test_gguf_shape_error(ctx):
    packed = np.zeros((2, 32), dtype=np.uint8)
    scales = np.zeros((2, 2), dtype=np.uint8)
    gguf = poisoned_like((2, 33), np.uint8)  # should be 34
    assert ctx.gguf_from_mx(packed, scales, gguf, check=False) == mx.Status.SHAPE
    assert_untouched(gguf)
