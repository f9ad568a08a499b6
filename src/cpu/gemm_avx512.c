/*
 * gemm_avx512.c — the AVX-512 VNNI tier: the AVX-512 tile of gemm_avx512_impl.h with vpdpbusd
 * (this file is compiled with -mavx512vnni).
 */
#include "cpu/gemm_avx512_impl.h"

#if defined(MXMOE_CPU_X86)
void mxmoe_gemm_tile_avx512(const mxmoe_cpu_wtile* w, const uint8_t* act, size_t act_stride, int m,
                            int32_t sa_lo, int32_t sa_hi, float* res) {
    tile_any_rows(w, act, act_stride, m, sa_lo, sa_hi, res);
}

const mxmoe_cpu_kernels mxmoe_cpu_kernels_avx512 = {
    .name = "avx512-vnni",
    .tile_n = TILE_N,
    .max_rows = MAX_ROWS,
    .gemm_tile = mxmoe_gemm_tile_avx512,
    .transpose_scales = transpose_scales,
    .act_row = mxmoe_act_row_avx512,
    .act8_row = act8_row,
    .quantize_row = mxmoe_quantize_row_avx512,
};
#endif
