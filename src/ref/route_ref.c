/*
 * route_ref.c — reference router: logits -> top-k expert ids and weights, one token at a time
 * with the shared per-token code of route_token.h.
 */
#include <math.h>
#include <stdlib.h>

#include "core/tensor.h"
#include "ref/ref.h"
#include "ref/route_token.h"

mxmoe_status mxmoe_route_ref(mxmoe_ctx* ctx, const mxmoe_tensor* logits,
                             const mxmoe_route_params* p, mxmoe_tensor* topk_ids,
                             mxmoe_tensor* topk_weights) {
    int64_t T = logits->dims[0], E = logits->dims[1];
    int32_t k = p->top_k;
    for (int64_t i = 0; i < T * E; i++) {
        float v = mxmoe_load_float(logits->data, logits->dtype, i);
        MXMOE_RETURN_IF(!isfinite(v), ctx, MXMOE_ERR_OUT_OF_RANGE,
                        "logits[%lld, %lld] is %s: router logits must be finite",
                        (long long)(i / E), (long long)(i % E), isnan(v) ? "NaN" : "infinite");
    }
    int64_t G = p->method == MXMOE_ROUTE_SIGMOID_GROUPED ? p->num_groups : 1;
    size_t bytes = mxmoe_route_scratch_bytes(E, G, k);
    void* mem = malloc(bytes);
    MXMOE_RETURN_IF(mem == NULL, ctx, MXMOE_ERR_NO_MEMORY, "route: cannot allocate %zu bytes",
                    bytes);
    route_scratch s;
    mxmoe_route_scratch_carve(mem, E, G, k, &s);
    const float* bias = p->correction_bias != NULL ? (const float*)p->correction_bias->data : NULL;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t e = 0; e < E; e++) {
            s.logit[e] = mxmoe_load_float(logits->data, logits->dtype, t * E + e);
        }
        mxmoe_route_token(p, E, bias, &s, (int32_t*)topk_ids->data + t * k,
                          (float*)topk_weights->data + t * k);
    }
    free(mem);
    return MXMOE_OK;
}
