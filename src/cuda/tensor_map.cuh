/*
 * tensor_map.cuh — 2-D TMA tensor maps for the sm_90a kernels, encoded with the driver's
 * cuTensorMapEncodeTiled as found through the runtime by the Hopper GEMM's init (no libcuda
 * link; cuda_state(ctx)->encode_tensor_map, NULL where there is no sm_90a device and binary).
 */
#ifndef MXMOE_CUDA_TENSOR_MAP_CUH
#define MXMOE_CUDA_TENSOR_MAP_CUH

#include <cuda.h> /* CUtensorMap and its enums only: the encoder comes from the runtime */

#include "cuda/cuda_common.cuh"

/* A 2-D tensor map of bytes (`words` false) or of 4-byte words: `outer` rows of `inner` entries,
 * `pitch` bytes apart; boxes of box_outer x box_inner entries, written into shared memory with
 * `swizzle`; boxes past the tensor read zeros. False where the encoder is missing or refuses. */
bool mxmoe_tensor_map_2d(mxmoe_ctx* ctx, CUtensorMap* map, const void* base, bool words,
                         uint64_t inner, uint64_t outer, uint64_t pitch, uint32_t box_inner,
                         uint32_t box_outer, CUtensorMapSwizzle swizzle);

#endif /* MXMOE_CUDA_TENSOR_MAP_CUH */
