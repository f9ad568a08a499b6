"""oracle_moe.py — the whole MoE layer (mxmoe_moe_forward), composed from the other oracles.

Two pipelines over the same plan:
  `moe_forward_emulated`: the header's documented FP32 order, bit for bit:
      gather rows (weight on input: float32(x * w), then rounded to act_dtype); quantize with
      act.rule; GEMM-1 (+b13) in FP32 as oracle_gemm (b); activation from those FP32 values in
      float64, rounded once to act_dtype; quantize; GEMM-2 (+b2) in FP32; per token
      acc = float32(acc + float32(w * c)) over the kept slots in ascending j (weight on input:
      acc = float32(acc + c)) from acc = 0; one rounding to out's dtype.
  `moe_forward_fp64`: the same quantization points (MXFP4 of the inputs of both GEMMs and the
      act_dtype rounding before each), everything else in float64. Compared by normalised error.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from oracle_act import MUL_ACTIVATIONS, activation, round_act, unstable_blocks
from oracle_gemm import gemm_fp32_emulated, gemm_fp64
from oracle_mx import F32, quantize, round_to, to_f64
from oracle_route import plan


@dataclass
class MoeCase:
    x: np.ndarray              # F32/BF16/F16 [T, H]
    topk_ids: np.ndarray       # int32 [T, k]
    topk_weights: np.ndarray   # float32 [T, k]
    w13: tuple                 # (codes [E, N1, H], linear scales [E, N1, H/32]); N1 = 2I or I
    w2: tuple                  # (codes [E, H, I], linear scales [E, H, I/32])
    b13: np.ndarray = None     # F32/BF16/F16 [E, N1] or None
    b2: np.ndarray = None      # F32/BF16/F16 [E, H] or None
    num_experts: int = 1
    activation: str = "SILU_MUL"
    layout: str = "CONCAT"
    alpha: float = 1.702
    limit: float = 7.0
    act_dtype: np.dtype = np.dtype(np.float32)
    rule: str = "EVEN"
    weight_on_input: bool = False
    expert_map: np.ndarray = None
    out_dtype: np.dtype = np.dtype(np.float32)
    gemm_dtype: np.dtype = np.dtype(np.float32)  # the GEMMs' results rounded to it (F32 or BF16)


@dataclass
class MoeResult:
    out: np.ndarray          # emulated: out's dtype; FP64 pipeline: float64 [T, H]
    act_codes: np.ndarray    # the quantized activation (input of GEMM-2): codes [rows, I]
    act_scales: np.ndarray   # and its scale bytes [rows, I/32]
    ambiguous: Optional[bool] = None  # emulated only: a libm-sensitive block (see oracle_act)
    gemm2_rounded: int = 0   # emulated only: GEMM-2 outputs whose FP32 sum != the exact sum
    act: np.ndarray = None   # the activation before that quantization (act_dtype values) [rows, I]


def _gathered(case):
    """Plan, and for each kept row its token and slot."""
    counts, offsets, sorted_rows, row_of = plan(case.topk_ids, case.expert_map, case.num_experts)
    k = case.topk_ids.shape[1]
    flat = sorted_rows[: offsets[-1]].astype(np.int64)
    return offsets, row_of.reshape(-1, k), flat // k, flat % k


def _bias32(b):
    return None if b is None else np.asarray(b).astype(np.float32)


def moe_forward_emulated(case):
    """-> MoeResult; `ambiguous` says whether a libm-sensitive activation value can change a
    quantized block, in which case the tests draw another case."""
    offsets, row_of, tok, slot = _gathered(case)
    w = case.topk_weights.astype(np.float32)
    if case.weight_on_input:
        scaled = round_to(to_f64(case.x)[tok] * w[tok, slot].astype(np.float64)[:, None], F32)
        x_rows = round_to(scaled.astype(np.float64), case.act_dtype)
    else:
        x_rows = case.x[tok]
    a_codes, a_scales = quantize(x_rows, case.rule)
    h = round_to(gemm_fp32_emulated(a_codes, a_scales, *case.w13, offsets, _bias32(case.b13))
                 .astype(np.float64), case.gemm_dtype).astype(np.float32)
    act, lo, hi = activation(h.astype(np.float64), case.activation, case.layout, case.alpha,
                             case.limit, case.act_dtype)
    ambiguous = unstable_blocks(lo, hi, case.rule)
    c_codes, c_scales = quantize(act, case.rule)
    c = gemm_fp32_emulated(c_codes, c_scales, *case.w2, offsets, _bias32(case.b2))
    exact, _ = gemm_fp64(c_codes, c_scales, *case.w2, offsets, _bias32(case.b2))
    gemm2_rounded = int((c.astype(np.float64) != exact).sum())
    c = round_to(c.astype(np.float64), case.gemm_dtype).astype(np.float32)
    t_count, hidden = case.x.shape
    acc = np.zeros((t_count, hidden), dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(row_of.shape[1]):
            rows = row_of[:, j]
            has = rows >= 0
            term = c[rows[has]]
            if not case.weight_on_input:
                term = w[has, j][:, None] * term  # float32 * float32 -> float32
            acc[has] = acc[has] + term
    out = round_to(acc.astype(np.float64), case.out_dtype)
    return MoeResult(out, c_codes, c_scales, bool(ambiguous.any()), gemm2_rounded, act)


def moe_forward_fp64(case):
    """-> MoeResult with a float64 output."""
    offsets, row_of, tok, slot = _gathered(case)
    w = case.topk_weights.astype(np.float64)
    if case.weight_on_input:
        x_rows = round_act(to_f64(case.x)[tok] * w[tok, slot][:, None], case.act_dtype)
    else:
        x_rows = case.x[tok]
    a_codes, a_scales = quantize(x_rows, case.rule)
    h, _ = gemm_fp64(a_codes, a_scales, *case.w13, offsets, _bias32(case.b13))
    if np.dtype(case.gemm_dtype) != np.dtype(np.float32):  # a quantization point, as in the library
        h = round_to(h, case.gemm_dtype).astype(np.float64)
    act, _, _ = activation(h, case.activation, case.layout, case.alpha, case.limit,
                           case.act_dtype)
    c_codes, c_scales = quantize(act, case.rule)
    return MoeResult(moe_forward_fp64_from_act(case, c_codes, c_scales), c_codes, c_scales,
                     act=act)


def moe_forward_fp64_from_act(case, c_codes, c_scales):
    """The FP64 pipeline from the quantized activation (GEMM-2's input) on: GEMM-2, its
    gemm_dtype rounding and the weighted reduction, in float64 -> out [T, H]. With another
    pipeline's codes it compares that pipeline's tail without the activation's quantization."""
    offsets, row_of, _, _ = _gathered(case)
    w = case.topk_weights.astype(np.float64)
    c, _ = gemm_fp64(c_codes, c_scales, *case.w2, offsets, _bias32(case.b2))
    if np.dtype(case.gemm_dtype) != np.dtype(np.float32):
        c = round_to(c, case.gemm_dtype).astype(np.float64)
    t_count, hidden = case.x.shape
    out = np.zeros((t_count, hidden))
    for j in range(row_of.shape[1]):
        rows = row_of[:, j]
        has = rows >= 0
        term = c[rows[has]]
        out[has] += term if case.weight_on_input else w[has, j][:, None] * term
    return out


def intermediate_size(case):
    """I, from w2's K; w13 holds 2I rows for the *_MUL/SWIGLU activations and I otherwise."""
    return case.w2[0].shape[2]


def w13_rows(activation_name, intermediate):
    return 2 * intermediate if activation_name in MUL_ACTIVATIONS else intermediate
