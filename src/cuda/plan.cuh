/*
 * plan.cuh — the plan launcher, shared by mxmoe_plan and moe_forward.
 */
#ifndef MXMOE_CUDA_PLAN_CUH
#define MXMOE_CUDA_PLAN_CUH

#include "cuda/cuda_common.cuh"

struct plan_args {
    const int32_t* ids; /* [pairs] */
    int64_t pairs;
    const int32_t* map; /* optional [id_limit] */
    int64_t id_limit;   /* E_global (map size) or E */
    int32_t num_experts;
    int32_t* counts;  /* [E] */
    int32_t* offsets; /* [E+1] */
    int32_t* sorted;  /* [pairs] */
    int32_t* row_of;  /* [pairs] */
    unsigned* errors;
    /* optional: mxmoe_plan_scratch_bytes() of device memory for the many-pairs plan's per-tile
     * counts (moe_forward's workspace); NULL takes it from the context's pool */
    void* scratch;
};

/* Device scratch a plan of `pairs` pairs over `experts` experts may use (0 if none). */
size_t mxmoe_plan_scratch_bytes(int64_t pairs, int64_t experts);

mxmoe_status mxmoe_launch_plan(mxmoe_ctx* ctx, const plan_args* args);

#endif /* MXMOE_CUDA_PLAN_CUH */
