/*
 * tensor_map.cu — the 2-D TMA tensor maps of tensor_map.cuh.
 */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled */

#include "cuda/tensor_map.cuh"

bool mxmoe_tensor_map_2d(mxmoe_ctx* ctx, CUtensorMap* map, const void* base, bool words,
                         uint64_t inner, uint64_t outer, uint64_t pitch, uint32_t box_inner,
                         uint32_t box_outer, CUtensorMapSwizzle swizzle) {
    auto encode =
        reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(cuda_state(ctx)->encode_tensor_map);
    if (encode == nullptr) {
        return false;
    }
    const cuuint64_t dims[2] = {inner, outer}, strides[1] = {pitch};
    const cuuint32_t box[2] = {box_inner, box_outer}, element_strides[2] = {1, 1};
    return encode(map, words ? CU_TENSOR_MAP_DATA_TYPE_UINT32 : CU_TENSOR_MAP_DATA_TYPE_UINT8, 2,
                  const_cast<void*>(base), dims, strides, box, element_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}
