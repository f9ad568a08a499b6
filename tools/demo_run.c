/*
 * demo_run.c — the forward pass of `mxmoe demo` on whatever backend the context has: the layer
 * and batch placed in the backend's memory, one checked pass, and the timing.
 *
 * On the CPU the backend twins of the host arrays are the arrays themselves, so nothing is
 * copied; on a GPU the weights (423 MB for gpt-oss-20b) are uploaded once and only the output
 * comes back. GPU passes are timed with the library's stream-ordered stopwatch (CUDA events), so
 * the numbers are kernel time plus launch gaps, not host overhead.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

enum { CPU_MAX_RUNS = 9, GPU_WARMUP_RUNS = 3, GPU_MIN_RUNS = 20, GPU_MAX_RUNS = 200 };

mxmoe_moe_params demo_layer_params(const demo_layer* L) {
    mxmoe_moe_params p = mxmoe_moe_params_default();
    p.num_experts = L->experts;
    p.act = mxmoe_act_params_default();
    p.act.activation = MXMOE_ACT_SWIGLU_OAI;
    p.act.layout = MXMOE_GATE_UP_INTERLEAVED;
    p.act.swiglu_alpha = 1.702f;
    p.act.swiglu_limit = 7.0f;
    p.act.act_dtype = MXMOE_BF16;
    p.act.rule = MXMOE_RULE_EVEN;
    p.router_weight_on_input = 0;
    return p;
}

/* The layer's two weight tensors, in the backend's memory. */
static mxmoe_moe_weights weight_tensors(const mxmoe_ctx* ctx, const demo_layer* L,
                                        const demo_backend_data* d) {
    int64_t E = L->experts, H = L->hidden, I = L->intermediate;
    int64_t w13_p[3] = {E, 2 * I, H / 2}, w13_s[3] = {E, 2 * I, H / MXMOE_BLOCK};
    int64_t w2_p[3] = {E, H, I / 2}, w2_s[3] = {E, H, I / MXMOE_BLOCK};
    mxmoe_moe_weights wts;
    wts.w13.packed = cli_tensor(ctx, d->w13_packed.backend, MXMOE_U8, 3, w13_p);
    wts.w13.scales = cli_tensor(ctx, d->w13_scales.backend, MXMOE_U8, 3, w13_s);
    wts.w13.scale_layout = MXMOE_SCALES_LINEAR;
    wts.w2.packed = cli_tensor(ctx, d->w2_packed.backend, MXMOE_U8, 3, w2_p);
    wts.w2.scales = cli_tensor(ctx, d->w2_scales.backend, MXMOE_U8, 3, w2_s);
    wts.w2.scale_layout = MXMOE_SCALES_LINEAR;
    wts.b13 = NULL;
    wts.b2 = NULL;
    return wts;
}

void demo_backend_free(mxmoe_ctx* ctx, demo_backend_data* d) {
    if (d->prepared) { /* before the memory goes: a later buffer there would look prepared */
        mxmoe_moe_weights wts = weight_tensors(ctx, d->layer, d);
        mxmoe_weights_unprepare(ctx, &wts.w13);
        mxmoe_weights_unprepare(ctx, &wts.w2);
        d->prepared = 0;
    }
    cli_buffer* all[] = {&d->w13_packed, &d->w13_scales, &d->w2_packed, &d->w2_scales,
                         &d->b13,        &d->b2,         &d->x,         &d->ids,
                         &d->weights,    &d->out,        &d->workspace};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        cli_buffer_free(ctx, all[i]);
    }
}

int demo_backend_init(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, const demo_batch* b,
                      float* out, demo_backend_data* d) {
    memset(d, 0, sizeof *d);
    int64_t T = b->tokens, H = L->hidden, E = L->experts, I = L->intermediate, k = L->top_k;
    size_t w13 = (size_t)(E * 2 * I * H), w2 = (size_t)(E * H * I);
    mxmoe_moe_params params = demo_layer_params(L);
    size_t ws_bytes = 0;
    mxmoe_status st = mxmoe_moe_workspace_size(ctx, &params, T, L->top_k, H, I, &ws_bytes);
    if (st != MXMOE_OK) {
        cli_error(cmd, "mxmoe_moe_workspace_size: %s (%s)", mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        return -1;
    }
    struct {
        cli_buffer* buf;
        void* host;
        size_t bytes;
        const char* what;
    } items[] = {
        {&d->w13_packed, L->w13_packed, w13 / 2, "w13 codes"},
        {&d->w13_scales, L->w13_scales, w13 / MXMOE_BLOCK, "w13 scales"},
        {&d->w2_packed, L->w2_packed, w2 / 2, "w2 codes"},
        {&d->w2_scales, L->w2_scales, w2 / MXMOE_BLOCK, "w2 scales"},
        {&d->b13, L->b13, (size_t)(E * 2 * I) * sizeof(uint16_t), "b13"},
        {&d->b2, L->b2, (size_t)(E * H) * sizeof(uint16_t), "b2"},
        {&d->x, b->x, (size_t)(T * H) * sizeof(uint16_t), "the tokens"},
        {&d->ids, b->ids, (size_t)(T * k) * sizeof(int32_t), "the expert ids"},
        {&d->weights, b->weights, (size_t)(T * k) * sizeof(float), "the router weights"},
        {&d->out, out, (size_t)(T * H) * sizeof(float), "the output"},
        {&d->workspace, NULL, ws_bytes, "the workspace"},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        if (cli_buffer_init(cmd, ctx, items[i].buf, items[i].host, items[i].bytes, items[i].what) !=
                0 ||
            (items[i].buf != &d->out &&
             cli_buffer_upload(cmd, ctx, items[i].buf, items[i].bytes) != 0)) {
            demo_backend_free(ctx, d);
            return -1;
        }
    }
    d->layer = L;
    mxmoe_moe_weights wts = weight_tensors(ctx, L, d);
    st = mxmoe_weights_prepare(ctx, &wts.w13);
    if (st == MXMOE_OK) {
        st = mxmoe_weights_prepare(ctx, &wts.w2);
        if (st != MXMOE_OK) {
            mxmoe_weights_unprepare(ctx, &wts.w13);
        }
    }
    if (st != MXMOE_OK) {
        cli_error(cmd, "mxmoe_weights_prepare: %s (%s)", mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        demo_backend_free(ctx, d);
        return -1;
    }
    d->prepared = 1;
    return 0;
}

int demo_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, int64_t T,
                 demo_backend_data* d, int checked) {
    int64_t H = L->hidden, E = L->experts, I = L->intermediate, k = L->top_k;
    if (checked) {
        float* out = d->out.host;
        for (int64_t i = 0; i < T * H; i++) {
            out[i] = NAN;
        }
        if (cli_buffer_upload(cmd, ctx, &d->out, d->out.bytes) != 0) {
            return -1;
        }
    }
    int64_t x_dims[2] = {T, H}, k_dims[2] = {T, k};
    int64_t b13_dims[2] = {E, 2 * I}, b2_dims[2] = {E, H};
    mxmoe_tensor x = cli_tensor(ctx, d->x.backend, MXMOE_BF16, 2, x_dims);
    mxmoe_tensor ids = cli_tensor(ctx, d->ids.backend, MXMOE_I32, 2, k_dims);
    mxmoe_tensor w = cli_tensor(ctx, d->weights.backend, MXMOE_F32, 2, k_dims);
    mxmoe_tensor y = cli_tensor(ctx, d->out.backend, MXMOE_F32, 2, x_dims);
    mxmoe_tensor b13 = cli_tensor(ctx, d->b13.backend, MXMOE_BF16, 2, b13_dims);
    mxmoe_tensor b2 = cli_tensor(ctx, d->b2.backend, MXMOE_BF16, 2, b2_dims);
    mxmoe_moe_weights wts = weight_tensors(ctx, L, d);
    wts.b13 = &b13;
    wts.b2 = &b2;
    mxmoe_moe_params params = demo_layer_params(L);
    mxmoe_status st = mxmoe_moe_forward(ctx, &x, &ids, &w, &wts, &params, d->workspace.backend,
                                        d->workspace.bytes, &y);
    if (st == MXMOE_OK && checked) {
        st = mxmoe_ctx_synchronize(ctx);
    }
    if (st != MXMOE_OK) {
        cli_error(cmd, "mxmoe_moe_forward on %s: %s (%s)", mxmoe_ctx_backend_detail(ctx),
                  mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
        return -1;
    }
    return checked ? cli_buffer_download(cmd, ctx, &d->out, d->out.bytes) : 0;
}

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static void print_timing(const demo_layer* L, int64_t T, const double* sorted_s, int runs,
                         const char* clock, size_t workspace_bytes) {
    double median = sorted_s[runs / 2];
    double flops = 2.0 * (double)T * L->top_k *
                   (double)(2 * L->intermediate * L->hidden + L->hidden * L->intermediate);
    printf("      %d run%s (%s): median %.3f ms (min %.3f ms) = %.1f tokens/s, %.2f GFLOP/s "
           "(workspace %.1f MB)\n",
           runs, runs == 1 ? "" : "s", clock, median * 1e3, sorted_s[0] * 1e3, (double)T / median,
           flops / median / 1e9, (double)workspace_bytes / 1e6);
}

/* CPU: a few wall-clock runs (more when they are quick), each poisoned and checked. */
static int time_cpu(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, int64_t T,
                    demo_backend_data* d) {
    double times[CPU_MAX_RUNS], total = 0;
    int runs = 0;
    while (runs < CPU_MAX_RUNS && (runs < 3 || total < 2.0) && !(runs >= 1 && total > 20.0)) {
        double t0 = cli_seconds();
        if (demo_forward(cmd, ctx, L, T, d, 1) != 0) {
            return -1;
        }
        times[runs] = cli_seconds() - t0;
        total += times[runs++];
    }
    qsort(times, (size_t)runs, sizeof times[0], compare_doubles);
    print_timing(L, T, times, runs, "wall clock", d->workspace.bytes);
    return 0;
}

/* GPU: warm-up, then at least GPU_MIN_RUNS passes (more while under a second), each between
 * two marks of the stream. */
static int time_gpu(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, int64_t T,
                    demo_backend_data* d) {
    double times[GPU_MAX_RUNS], total = 0;
    int runs = 0;
    for (int i = 0; i < GPU_WARMUP_RUNS; i++) {
        if (demo_forward(cmd, ctx, L, T, d, 0) != 0) {
            return -1;
        }
    }
    while (runs < GPU_MAX_RUNS && (runs < GPU_MIN_RUNS || total < 1.0)) {
        double us = 0;
        mxmoe_status st = mxmoe_timer_start(ctx);
        if (st == MXMOE_OK && demo_forward(cmd, ctx, L, T, d, 0) != 0) {
            return -1;
        }
        if (st == MXMOE_OK) {
            st = mxmoe_timer_stop(ctx, &us);
        }
        if (st != MXMOE_OK) {
            cli_error(cmd, "timer: %s (%s)", mxmoe_ctx_last_error(ctx), mxmoe_status_string(st));
            return -1;
        }
        times[runs] = us * 1e-6;
        total += times[runs++];
    }
    /* Timed passes do not wait for errors the device may report: collect them now. */
    mxmoe_status st = mxmoe_ctx_synchronize(ctx);
    if (st != MXMOE_OK) {
        cli_error(cmd, "after the timed runs: %s (%s)", mxmoe_ctx_last_error(ctx),
                  mxmoe_status_string(st));
        return -1;
    }
    qsort(times, (size_t)runs, sizeof times[0], compare_doubles);
    print_timing(L, T, times, runs, "stream timer, after 3 warm-up runs", d->workspace.bytes);
    return 0;
}

int demo_time_forward(const char* cmd, mxmoe_ctx* ctx, const demo_layer* L, int64_t T,
                      demo_backend_data* d) {
    return cli_ctx_device(ctx) == MXMOE_DEVICE_HOST ? time_cpu(cmd, ctx, L, T, d)
                                                    : time_gpu(cmd, ctx, L, T, d);
}
