/*
 * plan_ref.c — reference plan: group the T*k (token, slot) pairs by expert.
 *
 * Deterministic by construction (a counting sort in ascending flat index), unlike the seed's
 * atomics-ordered permutation: the same ids always give the same rows.
 */
#include "ref/ref.h"

int32_t mxmoe_local_expert_ref(const int32_t* ids, const int32_t* map, int64_t i) {
    int32_t id = ids[i];
    if (id < 0) {
        return -1;
    }
    return map != NULL ? map[id] : id;
}

mxmoe_status mxmoe_check_ids_ref(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                                 const mxmoe_tensor* expert_map, int64_t num_experts) {
    const int32_t* ids = (const int32_t*)topk_ids->data;
    const int32_t* map = expert_map != NULL ? (const int32_t*)expert_map->data : NULL;
    int64_t pairs = mxmoe_tensor_numel(topk_ids);
    int64_t id_limit = map != NULL ? expert_map->dims[0] : num_experts;
    if (map != NULL) {
        for (int64_t g = 0; g < id_limit; g++) {
            MXMOE_RETURN_IF(map[g] < -1 || map[g] >= num_experts, ctx, MXMOE_ERR_OUT_OF_RANGE,
                            "expert_map[%lld] = %d is outside [-1, %lld)", (long long)g,
                            (int)map[g], (long long)num_experts);
        }
    }
    int64_t k = topk_ids->dims[1];
    for (int64_t i = 0; i < pairs; i++) {
        MXMOE_RETURN_IF(ids[i] < -1 || ids[i] >= id_limit, ctx, MXMOE_ERR_OUT_OF_RANGE,
                        "topk_ids[%lld, %lld] = %d is outside [-1, %lld)", (long long)(i / k),
                        (long long)(i % k), (int)ids[i], (long long)id_limit);
    }
    return MXMOE_OK;
}

mxmoe_status mxmoe_plan_ref(mxmoe_ctx* ctx, const mxmoe_tensor* topk_ids,
                            const mxmoe_tensor* expert_map, int32_t num_experts,
                            mxmoe_tensor* counts_t, mxmoe_tensor* offsets_t, mxmoe_tensor* sorted_t,
                            mxmoe_tensor* row_of_t) {
    MXMOE_FORWARD(mxmoe_check_ids_ref(ctx, topk_ids, expert_map, num_experts));
    const int32_t* ids = (const int32_t*)topk_ids->data;
    const int32_t* map = expert_map != NULL ? (const int32_t*)expert_map->data : NULL;
    int64_t pairs = mxmoe_tensor_numel(topk_ids);
    int32_t* counts = (int32_t*)counts_t->data;
    int32_t* offsets = (int32_t*)offsets_t->data;
    int32_t* sorted = (int32_t*)sorted_t->data;
    int32_t* row_of = (int32_t*)row_of_t->data;
    for (int32_t e = 0; e < num_experts; e++) {
        counts[e] = 0;
    }
    for (int64_t i = 0; i < pairs; i++) {
        int32_t e = mxmoe_local_expert_ref(ids, map, i);
        if (e >= 0) {
            counts[e]++;
        }
    }
    offsets[0] = 0;
    for (int32_t e = 0; e < num_experts; e++) {
        offsets[e + 1] = offsets[e] + counts[e];
    }
    /* Second pass in ascending i: each expert's rows fill in that order. offsets[] doubles as
     * the write cursor and is rebuilt from counts afterwards. */
    for (int64_t i = 0; i < pairs; i++) {
        int32_t e = mxmoe_local_expert_ref(ids, map, i);
        if (e < 0) {
            row_of[i] = -1;
            continue;
        }
        int32_t row = offsets[e]++;
        sorted[row] = (int32_t)i;
        row_of[i] = row;
    }
    offsets[0] = 0;
    for (int32_t e = 0; e < num_experts; e++) {
        offsets[e + 1] = offsets[e] + counts[e];
    }
    for (int64_t r = offsets[num_experts]; r < pairs; r++) {
        sorted[r] = -1;
    }
    return MXMOE_OK;
}
