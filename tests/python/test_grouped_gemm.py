"""test_grouped_gemm.py — mxmoe_grouped_gemm against both GEMM oracles.

Random shapes: K = 32, K not a multiple of 128 (96, 160, 2880), N not a multiple of 128,
experts with zero rows and with one row, rows past offsets[E] (left untouched); linear and
swizzled weight scales, linear and grouped-swizzled activation scales; bias none/F32/BF16/F16;
out F32/BF16/F16. Each case must equal the FP32-order emulation bit for bit (oracle (b)) and
stay within the derived per-element bound of the FP64 result (oracle (a)), with a small
normalised error. Also: extreme scale bytes (0x00, 0xFE, 0xFF) and the error statuses.
"""
import numpy as np
import pytest

import mx_operands as mo
import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_same_floats, assert_untouched, normalised_error, poisoned_like, assert_untouched_after_data_error

OUT_DTYPES = {"F32": orc.F32, "BF16": orc.BF16, "F16": orc.F16}
K_CHOICES = [32, 64, 96, 128, 160, 256, 288, 2880]
# normalised-error ceilings: a few output roundings plus the FP32 accumulation
NORM_TOL = {"F32": 1e-5, "F16": 2e-3, "BF16": 1.6e-2}


def build_case(rng, lib, out_dtype, k=None, many_outputs=False):
    """many_outputs: at least 64 rows, all below offsets[E], and 128 columns, so that the share
    of outputs the FP32 accumulation rounds averages over many independent rows and columns."""
    experts = int(rng.integers(1, 7))
    k = k or int(rng.choice(K_CHOICES))
    n = int(rng.choice([128, 130, 257] if many_outputs else [1, 7, 64, 100, 128, 130, 257]))
    rows = int(rng.integers(64 if many_outputs else 0, 200 if k < 1024 else 40))
    offsets = mo.random_offsets(rng, rows, experts, keep_all=many_outputs)
    # activations: the oracle's quantization of data whose blocks span 12 binades
    x = mo.varied_rows(rng, rows, k)
    a_codes, a_scales = orc.quantize(x.astype(np.float32), str(rng.choice(orc.RULES)))
    # 14 binades of weight scales; F16 output must stay finite, so lower there
    hi = 122 if out_dtype == "F16" else 128
    w_codes, w_scales = mo.random_weights(rng, experts, n, k, hi - 14, hi)
    bias_kind = str(rng.choice(["none", "F32", "BF16", "F16"]))
    bias = None
    if bias_kind != "none":
        bias = (rng.standard_normal((experts, n)) * 4).astype(np.float32).astype(
            OUT_DTYPES[bias_kind])
    return dict(experts=experts, k=k, n=n, rows=rows, offsets=offsets, a=(a_codes, a_scales),
                w=(w_codes, w_scales), bias=bias, bias_kind=bias_kind)


def run_library(ctx, lib, case, out_dtype, a_layout, w_layout):
    a = mo.activations_for_library(*case["a"], case["offsets"], a_layout, lib)
    w = mo.weights_for_library(*case["w"], w_layout)
    out = poisoned_like((case["rows"], case["n"]), OUT_DTYPES[out_dtype])
    ctx.grouped_gemm(a, w, case["offsets"], case["bias"], out)
    return out


def check_against_oracles(case, out, out_dtype, what):
    """Returns how many outputs the FP32 accumulation rounded (FP32 result != FP64 result)."""
    kept = int(case["offsets"][-1])
    dt = OUT_DTYPES[out_dtype]
    bias32 = None if case["bias"] is None else case["bias"].astype(np.float32)
    acc = orc.gemm_fp32_emulated(*case["a"], *case["w"], case["offsets"], bias32)
    assert_same_floats(out[:kept], orc.to_out_dtype(acc[:kept], dt), f"{what}: vs FP32 emulation")
    assert_untouched(out[kept:], f"{what}: rows past offsets[E]")
    ref, abs_sum = orc.gemm_fp64(*case["a"], *case["w"], case["offsets"], bias32)
    ref, abs_sum = ref[:kept], abs_sum[:kept]
    got = out[:kept].astype(np.float64)
    bound = orc.error_bound(ref, abs_sum, case["k"] // 32, dt)
    bad = ~(np.abs(got - ref) <= bound)
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements beyond the FP64 bound; first "
                           f"got {got[bad][:3]} ref {ref[bad][:3]} bound {bound[bad][:3]}")
    err = normalised_error(got, ref)
    assert err <= NORM_TOL[out_dtype], f"{what}: normalised error {err:.3g}"
    return int((acc[:kept].astype(np.float64) != ref).sum())


@pytest.mark.parametrize("a_layout", ["LINEAR", "SWIZZLED"])
@pytest.mark.parametrize("w_layout", ["LINEAR", "SWIZZLED"])
@pytest.mark.parametrize("out_dtype", list(OUT_DTYPES))
def test_grouped_gemm_random(ctx, lib, rng, out_dtype, w_layout, a_layout):
    for i in range(9):
        # the first case witnesses the data: K = 256 over many rows and columns, where the FP32
        # accumulation rounds about 30% of outputs (20% the fewest in 600 draws)
        case = build_case(rng, lib, out_dtype, k=256, many_outputs=True) if i == 0 else \
            build_case(rng, lib, out_dtype)
        out = run_library(ctx, lib, case, out_dtype, a_layout, w_layout)
        what = (f"E={case['experts']} N={case['n']} K={case['k']} R={case['rows']} "
                f"offsets={case['offsets'].tolist()} bias={case['bias_kind']} out={out_dtype} "
                f"w={w_layout} a={a_layout}")
        rounded = check_against_oracles(case, out, out_dtype, what)
        outputs = int(case["offsets"][-1]) * case["n"]
        # the bit-exact comparison only tells summation orders apart where FP32 rounds; a
        # few outputs of one weight row can all be exact, many rows and columns cannot
        assert i > 0 or rounded > 0.1 * outputs, (
            f"{what}: only {rounded} of {outputs} outputs rounded in FP32: the data no longer "
            "exercise the documented summation order")


@pytest.mark.parametrize("k", [32, 96, 160, 2880])
def test_k_not_multiple_of_128_swizzled(ctx, lib, rng, k):
    """The case vLLM mis-addresses: swizzled scales with a partial 4-column atom."""
    case = build_case(rng, lib, "F32", k=k)
    out = run_library(ctx, lib, case, "F32", "SWIZZLED", "SWIZZLED")
    check_against_oracles(case, out, "F32", f"K={k} swizzled")


@pytest.mark.parametrize("out_dtype", list(OUT_DTYPES))
def test_empty_and_single_row_experts(ctx, lib, rng, out_dtype):
    """Experts with 0, 1, 0, 1 and 37 rows, then 3 rows past offsets[E]; K = 2880 (gpt-oss)."""
    k, n = 2880, 130
    offsets = np.array([0, 0, 1, 1, 2, 39], dtype=np.int32)
    rows = 42
    x = mo.varied_rows(rng, rows, k)
    a_codes, a_scales = orc.quantize(x.astype(np.float32), "EVEN")
    hi = 122 if out_dtype == "F16" else 128
    case = dict(experts=5, k=k, n=n, rows=rows, offsets=offsets, a=(a_codes, a_scales),
                w=mo.random_weights(rng, 5, n, k, hi - 14, hi),
                bias=rng.standard_normal((5, n)).astype(np.float32))
    for a_layout, w_layout in [("LINEAR", "LINEAR"), ("SWIZZLED", "SWIZZLED")]:
        out = run_library(ctx, lib, case, out_dtype, a_layout, w_layout)
        check_against_oracles(case, out, out_dtype, f"0/1-row experts {a_layout}/{w_layout}")


def test_extreme_scales(ctx, lib, rng):
    """Scale bytes 0x00 (2^-127, FP32 subnormal), 0xFE (2^127) and 0xFF (NaN) mixed with ordinary
    ones: block terms underflow, overflow to +-Inf, or are NaN; out F32 must follow the
    documented order exactly (the term is the exact block product rounded once to FP32)."""
    experts, n, k, rows = 2, 16, 128, 24
    offsets = np.array([0, 10, rows], dtype=np.int32)
    a_codes = rng.integers(0, 16, size=(rows, k), dtype=np.uint8)
    w_codes = rng.integers(0, 16, size=(experts, n, k), dtype=np.uint8)
    pool = np.array([0x00, 0x01, 0x7F, 0xFE, 0xFF, 0x40, 0xC0], dtype=np.uint8)
    a_scales = rng.choice(pool, size=(rows, k // 32))
    w_scales = rng.choice(pool, size=(experts, n, k // 32))
    case = dict(experts=experts, k=k, n=n, rows=rows, offsets=offsets, a=(a_codes, a_scales),
                w=(w_codes, w_scales), bias=None)
    out = run_library(ctx, lib, case, "F32", "LINEAR", "LINEAR")
    acc = orc.gemm_fp32_emulated(a_codes, a_scales, w_codes, w_scales, offsets)
    assert_same_floats(out, acc, "extreme scales vs FP32 emulation")


def test_errors(ctx, lib, rng):
    experts, n, k, rows = 2, 8, 64, 6
    a = mo.activations_for_library(*orc.quantize(np.ones((rows, k), np.float32), "EVEN"),
                                   None, "LINEAR", lib)
    w = mo.weights_for_library(*mo.random_weights(rng, experts, n, k), "LINEAR")
    for offsets, why in [([0, 4, 3], "decreasing"), ([1, 2, 6], "offsets[0] != 0"),
                         ([0, 3, 7], "offsets[E] > R"), ([0, 6], "E+1 != experts+1")]:
        out = poisoned_like((rows, n), np.float32)
        status = ctx.grouped_gemm(a, w, np.array(offsets, np.int32), None, out, check=False)
        assert status != mx.Status.OK, why
        if why.startswith("E+1"):  # a shape error: found on the host by every backend
            assert_untouched(out, why)
        else:
            assert_untouched_after_data_error(ctx, out)
    w_short = mo.weights_for_library(*mo.random_weights(rng, experts, n, k + 32), "LINEAR")
    out = poisoned_like((rows, n), np.float32)
    status = ctx.grouped_gemm(a, w_short, np.array([0, 3, 6], np.int32), None, out, check=False)
    assert status == mx.Status.SHAPE, "K of a and w differ"
    assert_untouched(out)
