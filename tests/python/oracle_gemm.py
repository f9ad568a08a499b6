"""oracle_gemm.py — two oracles for the W4A4 grouped GEMM (mxmoe_grouped_gemm).

(a) `gemm_fp64`: FP64 on the dequantized operands, plus the per-element error bound that
    summing exact block products in FP32 allows (see `error_bound`).
(b) `gemm_fp32_emulated`: the documented FP32 order, bit for bit. Each 32-block product is an
    integer (doubled E2M1 values, |sum| <= 32*12*12 = 4608) times 2^(sa + sb - 254 - 2): exact
    in float64, rounded once to float32 (exact unless the scales push it out of FP32's range).
    Blocks are added `acc = float32(acc + term)` in ascending K from acc = 0, then
    `acc = float32(acc + bias)`, then acc is rounded once to the output dtype.

Operands come as codes (uint8 [rows, K]) and *linear* scale bytes (uint8 [rows, K/32]); the
tests convert swizzled scales back with oracle_mx before calling these.
"""
import numpy as np

from oracle_mx import BLOCK, E2M1_VALUE, dequantize_values, round_to

DOUBLED = 2.0 * E2M1_VALUE  # integers in {0, +-1, +-2, +-3, +-4, +-6, +-8, +-12}
U32 = 2.0 ** -24  # unit roundoff of float32


def _expert_ranges(offsets):
    for e in range(len(offsets) - 1):
        lo, hi = int(offsets[e]), int(offsets[e + 1])
        if hi > lo:
            yield e, lo, hi


def gemm_fp32_emulated(a_codes, a_scales, w_codes, w_scales, offsets, bias=None):
    """-> float32 [R, N]; rows at or beyond offsets[E] are NaN (the library leaves them alone).

    a_codes [R, K], a_scales [R, K/32]; w_codes [E, N, K], w_scales [E, N, K/32];
    bias: None or float32 values [E, N]."""
    r_count, k = a_codes.shape
    n = w_codes.shape[1]
    out = np.full((r_count, n), np.nan, dtype=np.float32)
    for e, lo, hi in _expert_ranges(offsets):
        a = DOUBLED[a_codes[lo:hi]]
        w = DOUBLED[w_codes[e]]
        sa = a_scales[lo:hi].astype(np.int64)
        sb = w_scales[e].astype(np.int64)
        acc = np.zeros((hi - lo, n), dtype=np.float32)
        for b in range(k // BLOCK):
            cols = slice(b * BLOCK, (b + 1) * BLOCK)
            isum = a[:, cols] @ w[:, cols].T  # exact: integers below 2^13
            expo = sa[:, b, None] + sb[None, :, b] - 254 - 2
            with np.errstate(over="ignore"):
                term = np.ldexp(isum, expo).astype(np.float32)
            nan_scale = (sa[:, b, None] == 0xFF) | (sb[None, :, b] == 0xFF)
            term = np.where(nan_scale, np.float32(np.nan), term)
            with np.errstate(invalid="ignore", over="ignore"):
                acc = acc + term
        if bias is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                acc = acc + bias[e].astype(np.float32)[None, :]
        out[lo:hi] = acc
    return out


def gemm_fp64(a_codes, a_scales, w_codes, w_scales, offsets, bias=None):
    """-> (ref float64 [R, N], abs_sum float64 [R, N] = sum_k |a*w| + |bias|), NaN beyond
    offsets[E]."""
    r_count, k = a_codes.shape
    n = w_codes.shape[1]
    ref = np.full((r_count, n), np.nan)
    abs_sum = np.full((r_count, n), np.nan)
    a_all = dequantize_values(a_codes, a_scales)
    for e, lo, hi in _expert_ranges(offsets):
        a = a_all[lo:hi]
        w = dequantize_values(w_codes[e], w_scales[e])
        ref[lo:hi] = a @ w.T
        abs_sum[lo:hi] = np.abs(a) @ np.abs(w).T
        if bias is not None:
            b = bias[e].astype(np.float64)[None, :]
            ref[lo:hi] += b
            abs_sum[lo:hi] += np.abs(b)
    return ref, abs_sum


def error_bound(ref, abs_sum, num_blocks, out_dtype):
    """Largest |out - ref| the contract allows.

    FP32 accumulation of nblocks exact block terms, plus the bias, rounds at most nblocks + 1
    times, each error at most 2^-24 times a partial sum bounded by abs_sum: (nblocks + 1) *
    2^-24 * abs_sum. The final rounding to out_dtype adds half an ulp of the result (relative
    u_out, or the dtype's smallest subnormal step near zero). A factor 2 covers the slack
    between these first-order terms and their products.
    """
    out_dtype = np.dtype(out_dtype)
    accumulation = (num_blocks + 1) * U32 * abs_sum
    if out_dtype == np.float32:
        u_out, tiny = 2.0 ** -24, 2.0 ** -150
    elif out_dtype == np.float16:
        u_out, tiny = 2.0 ** -11, 2.0 ** -25
    else:  # bfloat16
        u_out, tiny = 2.0 ** -8, 2.0 ** -134
    return 2.0 * (accumulation + u_out * (np.abs(ref) + accumulation) + tiny)


def to_out_dtype(acc32, out_dtype):
    """The one rounding of FP32 accumulators to the output dtype."""
    return round_to(acc32.astype(np.float64), out_dtype)
