"""test_grouped_projection.py — mxmoe_grouped_projection (ggml's MUL_MAT_ID in one call) against
the Python oracles, with no plan of the library's: each token quantized by the oracle's
quantizer, each (token, slot) pair's row by the FP32-order GEMM emulation on its expert (bit for
bit) and within the FP64 bound. Dropped pairs (id -1, or mapped to -1) leave their rows
untouched; ids and map entries out of range are errors that write nothing (on the CPU: the CUDA
backend finds them on the device, drops those pairs and reports them at synchronize). On an
H100 run it with MXMOE_CUDA_GEMM=skinny or generic: the Hopper path is not bit for bit.
"""
import numpy as np
import pytest

import mx_operands as mo
import mxmoe_ctypes as mx
import oracle as orc
from checks import (assert_same_floats, assert_untouched, assert_untouched_after_data_error,
                    poisoned_like)

OUT_DTYPES = {"F32": orc.F32, "BF16": orc.BF16, "F16": orc.F16}
X_DTYPES = {"F32": np.float32, "BF16": orc.BF16}


def local_experts(ids, expert_map):
    """Each pair's local expert, -1 where dropped."""
    flat = ids.reshape(-1).astype(np.int64)
    if expert_map is None:
        return flat
    return np.where(flat < 0, -1, expert_map[np.maximum(flat, 0)])


def oracle_rows(x32, ids, expert_map, w, bias, rule, out_dtype):
    """(want [P, N] in out dtype, NaN rows for dropped pairs; FP64 ref; abs sums; kept mask)."""
    codes, scales = orc.quantize(x32, rule)
    k = ids.shape[1]
    experts = local_experts(ids, expert_map)
    kept = np.flatnonzero(experts >= 0)
    order = kept[np.argsort(experts[kept], kind="stable")]  # grouped by expert
    counts = np.bincount(experts[order], minlength=w[0].shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    a = (codes[order // k], scales[order // k])
    bias32 = None if bias is None else bias.astype(np.float32)
    acc = orc.gemm_fp32_emulated(*a, *w, offsets, bias32)
    ref, abs_sum = orc.gemm_fp64(*a, *w, offsets, bias32)
    n, pairs = w[0].shape[1], ids.size
    want = np.full((pairs, n), np.nan, dtype=np.float32)
    ref_p, abs_p = np.full((pairs, n), np.nan), np.full((pairs, n), np.nan)
    want[order], ref_p[order], abs_p[order] = acc[: len(order)], ref[: len(order)], abs_sum[: len(order)]
    return orc.to_out_dtype(want, OUT_DTYPES[out_dtype]), ref_p, abs_p, experts >= 0


def build(rng, tokens, top_k, experts, n, k, with_map, x_dtype, with_bias, out_dtype):
    x = mo.varied_rows(rng, tokens, k).astype(X_DTYPES[x_dtype])
    e_global = experts + 3 if with_map else experts
    ids = rng.integers(0, e_global, size=(tokens, top_k)).astype(np.int32)
    ids[rng.random(ids.shape) < 0.15] = -1
    expert_map = None
    if with_map:  # reversed, the last three global ids on another device
        expert_map = np.concatenate([np.arange(experts - 1, -1, -1), [-1, -1, -1]]).astype(np.int32)
    hi = 122 if out_dtype == "F16" else 128
    w = mo.random_weights(rng, experts, n, k, hi - 14, hi)
    bias = (rng.standard_normal((experts, n)) * 4).astype(np.float32) if with_bias else None
    return x, ids, expert_map, w, bias


@pytest.mark.parametrize("out_dtype", list(OUT_DTYPES))
@pytest.mark.parametrize("x_dtype", list(X_DTYPES))
@pytest.mark.parametrize("with_map", [False, True])
def test_grouped_projection_random(ctx, rng, out_dtype, x_dtype, with_map):
    for tokens, top_k, experts, n, k in [(1, 4, 8, 40, 2880), (7, 2, 5, 33, 96),
                                         (30, 8, 16, 64, 256), (3, 6, 6, 130, 32)]:
        rule = str(rng.choice(orc.RULES))
        with_bias = bool(rng.integers(0, 2))
        x, ids, expert_map, w, bias = build(rng, tokens, top_k, experts, n, k, with_map, x_dtype,
                                            with_bias, out_dtype)
        out = poisoned_like((ids.size, n), OUT_DTYPES[out_dtype])
        ctx.grouped_projection(x, ids, expert_map, mo.weights_for_library(*w, "LINEAR"), bias,
                               mx.Rule[rule], out)
        want, ref, abs_sum, kept = oracle_rows(x.astype(np.float32), ids, expert_map, w, bias,
                                               rule, out_dtype)
        what = (f"T={tokens} k={top_k} E={experts} N={n} K={k} x={x_dtype} out={out_dtype} "
                f"map={with_map} bias={with_bias} rule={rule}")
        assert_same_floats(out[kept], want[kept], f"{what}: vs FP32 emulation")
        assert_untouched(out[~kept], f"{what}: dropped pairs' rows")
        bound = orc.error_bound(ref[kept], abs_sum[kept], k // 32, OUT_DTYPES[out_dtype])
        err = np.abs(out[kept].astype(np.float64) - ref[kept])
        assert (err <= bound).all(), f"{what}: beyond the FP64 bound"


def test_swizzled_weights_give_the_linear_result(ctx, rng):
    x, ids, expert_map, w, bias = build(rng, 5, 4, 6, 72, 160, True, "BF16", True, "F32")
    outs = []
    for layout in ["LINEAR", "SWIZZLED"]:
        out = poisoned_like((ids.size, 72), orc.F32)
        ctx.grouped_projection(x, ids, expert_map, mo.weights_for_library(*w, layout), bias,
                               mx.Rule.EVEN, out)
        outs.append(out)
    assert_same_floats(outs[1], outs[0], "swizzled weights against linear")


def test_errors_write_nothing(ctx, rng):
    x, ids, expert_map, w, bias = build(rng, 4, 2, 3, 16, 64, True, "F32", False, "F32")
    wl = mo.weights_for_library(*w, "LINEAR")
    out = poisoned_like((ids.size, 16), orc.F32)
    bad = ids.copy()
    bad[1, 1] = 6  # E_global = 6: ids must lie in [-1, 6)
    status = ctx.grouped_projection(x, bad, expert_map, wl, None, mx.Rule.EVEN, out, check=False)
    assert status == mx.Status.OUT_OF_RANGE
    bad_map = expert_map.copy()
    bad_map[0] = 3  # local experts must lie in [-1, 3); a pair uses it (the GPU checks those)
    uses = ids.copy()
    uses[0, 0] = 0
    status = ctx.grouped_projection(x, uses, bad_map, wl, None, mx.Rule.EVEN, out, check=False)
    assert status == mx.Status.OUT_OF_RANGE
    assert_untouched_after_data_error(ctx, out)
    short = poisoned_like((ids.size - 1, 16), orc.F32)
    status = ctx.grouped_projection(x, ids, expert_map, wl, None, mx.Rule.EVEN, short, check=False)
    assert status == mx.Status.SHAPE
    assert_untouched(short, "output after a shape error")
