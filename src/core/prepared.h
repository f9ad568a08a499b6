/*
 * prepared.h — the context's prepared weights (mxmoe_weights_prepare): a short list of the
 * weight tensors the caller declared static, each with what the backend derived from it.
 *
 * Internal. A tensor is identified by its packed and scale pointers, its shape and its scale
 * layout; the kernels look their weights up here on every call (a scan of a few entries), for
 * what was derived and for whether the codes were repacked in place.
 */
#ifndef MXMOE_CORE_PREPARED_H
#define MXMOE_CORE_PREPARED_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxmoe_prepared_entry {
    const void* packed;
    const void* scales;
    int64_t dims[3]; /* packed [E, N, K/2] */
    int64_t scales_numel;
    mxmoe_scale_layout layout;
    void* data;   /* the backend's (NULL: nothing derived); freed by ops->weights_release */
    int repacked; /* w's codes are in the Hopper sign packing (mxmoe_weights_prepare_repack) */
} mxmoe_prepared_entry;

/* w's entry on ctx (what the backend derived, whether the codes are repacked), or NULL when w is
 * not prepared there. */
const mxmoe_prepared_entry* mxmoe_prepared_entry_of(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);

/* Whether w is prepared on ctx with its codes repacked in place (core/sign_packing.h). */
int mxmoe_prepared_repacked(const mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);

/* Records w with `data` and its packing (replacing and releasing an earlier entry for the same
 * tensor). */
mxmoe_status mxmoe_prepared_add(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w, void* data, int repacked);

/* Forgets w and releases its data (its codes stay as they are); returns whether it was there. */
int mxmoe_prepared_remove(mxmoe_ctx* ctx, const mxmoe_mx_tensor* w);

/* Releases every entry (mxmoe_ctx_free, before the backend goes). */
void mxmoe_prepared_clear(mxmoe_ctx* ctx);

#ifdef __cplusplus
}
#endif

#endif /* MXMOE_CORE_PREPARED_H */
