/*
 * gemm_avx512bw.c — the AVX-512 tier for CPUs without VNNI (Skylake-SP/X): the AVX-512 tile of
 * gemm_avx512_impl.h with vpmaddubsw + vpmaddwd (this file is compiled without -mavx512vnni).
 */
#include "cpu/gemm_avx512_impl.h"

#if defined(MXMOE_CPU_X86)
void mxmoe_gemm_tile_avx512bw(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride,
                              int m, int32_t sa_lo, int32_t sa_hi, float* res) {
    tile_any_rows(w, act, act_stride, m, sa_lo, sa_hi, res);
}

const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx512bw = {
    .name = "avx512bw",
    .tile_n = TILE_N,
    .max_rows = MAX_ROWS,
    .gemm_tile = mxmoe_gemm_tile_avx512bw,
    .transpose_scales = transpose_scales,
    .act_row = mxmoe_act_row_avx512,
    .act8_row = act8_row,
    .quantize_row = mxmoe_quantize_row_avx512,
};
#endif
