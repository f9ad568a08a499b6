/*
 * moe_workspace.c — the moe_forward workspace layout shared by the backends.
 */
#include "core/moe_workspace.h"

#include "core/tensor.h"

static int add_region(size_t* cursor, size_t* at, int64_t count, int64_t elem_size) {
    size_t aligned = (*cursor + 255) & ~(size_t)255;
    int64_t bytes;
    if (aligned < *cursor || !mxmoe_mul_i64(count, elem_size, &bytes) ||
        (uint64_t)bytes > SIZE_MAX) {
        return 0;
    }
    *at = aligned;
    return mxmoe_add_size(aligned, (size_t)bytes, cursor);
}

int mxmoe_moe_workspace_layout(int64_t experts, int64_t pairs, int64_t hidden, int64_t n13,
                               int64_t inter, int with_x_rows, size_t scratch_bytes,
                               mxmoe_moe_workspace* L) {
    int64_t ph, pn13, pi;
    if (!mxmoe_mul_i64(pairs, hidden, &ph) || !mxmoe_mul_i64(pairs, n13, &pn13) ||
        !mxmoe_mul_i64(pairs, inter, &pi) || (uint64_t)scratch_bytes > INT64_MAX) {
        return 0;
    }
    size_t c = 0;
    int ok = add_region(&c, &L->counts, experts, 4) &&
             add_region(&c, &L->offsets, experts + 1, 4) && add_region(&c, &L->sorted, pairs, 4) &&
             add_region(&c, &L->row_of, pairs, 4) &&
             add_region(&c, &L->x_rows, with_x_rows ? ph : 0, 4) &&
             add_region(&c, &L->a1_packed, ph / 2, 1) && add_region(&c, &L->a1_scales, ph / 32, 1) &&
             add_region(&c, &L->h1, pn13, 4) && add_region(&c, &L->a2_packed, pi / 2, 1) &&
             add_region(&c, &L->a2_scales, pi / 32, 1) && add_region(&c, &L->c3, ph, 4) &&
             add_region(&c, &L->scratch, (int64_t)scratch_bytes, 1);
    L->total = c;
    return ok;
}
