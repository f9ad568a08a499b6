/*
 * hd.h — MXMOE_HD marks small inline functions that both the C host code and CUDA device code
 * compile (`__host__ __device__` under nvcc, nothing in C). The numerics headers use it so the
 * GPU kernels run the very code the reference runs: one source of truth for every bit.
 */
#ifndef MXMOE_CORE_HD_H
#define MXMOE_CORE_HD_H

#if defined(__CUDACC__)
#define MXMOE_HD __host__ __device__
/* Fixed-trip loops over a block must unroll on the GPU, or their arrays land in local memory. */
#define MXMOE_UNROLL _Pragma("unroll")
#else
#define MXMOE_HD
#define MXMOE_UNROLL
#endif

#endif /* MXMOE_CORE_HD_H */
