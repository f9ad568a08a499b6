"""oracle.py — the independent oracle of the mxmoe contract, in one namespace.

Nothing here shares code with the C library. Pieces, one job each:
  oracle_mx     scale rules, quantize/dequantize, packing, GGUF blocks, swizzled scale offsets
  oracle_act    fused activations in float64 (+ the libm error bracket)
  oracle_route  routing and the deterministic plan
  oracle_gemm   grouped GEMM: FP64 + error bound, and the bit-exact FP32 emulation
  oracle_moe    the whole layer, emulated and in FP64
"""
from oracle_act import (ACTIVATIONS, MUL_ACTIVATIONS, activation, round_act, split_gate_up,
                        unstable_blocks, within_bracket)
from oracle_gemm import error_bound, gemm_fp32_emulated, gemm_fp64, to_out_dtype
from oracle_moe import (MoeCase, MoeResult, moe_forward_emulated, moe_forward_fp64,
                        moe_forward_fp64_from_act, w13_rows)
from oracle_mx import (BF16, BLOCK, E2M1_VALUE, F16, F32, RULES, block_exponents, ceil_div,
                       dequantize, dequantize_values, encode_elements, from_gguf,
                       group_row_bases, grouped_swizzle, grouped_unswizzle, pack, quantize,
                       round_to, scale_exponent, swizzle, swizzle_offsets, swizzled_bytes,
                       to_f64, to_gguf, unpack, unswizzle)
from oracle_route import ROUTINGS, plan, route

__all__ = [
    "ACTIVATIONS", "MUL_ACTIVATIONS", "activation", "round_act", "split_gate_up",
    "unstable_blocks", "within_bracket",
    "error_bound", "gemm_fp32_emulated", "gemm_fp64", "to_out_dtype",
    "MoeCase", "MoeResult", "moe_forward_emulated", "moe_forward_fp64",
    "moe_forward_fp64_from_act", "w13_rows",
    "BF16", "BLOCK", "E2M1_VALUE", "F16", "F32", "RULES", "block_exponents", "ceil_div",
    "dequantize", "dequantize_values", "encode_elements", "from_gguf", "group_row_bases",
    "grouped_swizzle", "grouped_unswizzle", "pack", "quantize", "round_to", "scale_exponent",
    "swizzle", "swizzle_offsets", "swizzled_bytes", "to_f64", "to_gguf", "unpack", "unswizzle",
    "ROUTINGS", "plan", "route",
]
