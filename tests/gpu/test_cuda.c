/*
 * test_cuda.c — the GPU test suite: every operation on the CUDA backend against the CPU
 * reference (itself checked against ml_dtypes and NumPy FP64 by the CI suite), on fresh random
 * inputs over a sweep of shapes and edge cases. Run by tests/gpu/run.sh on a GPU machine.
 *
 * The exact CUDA kernels run the reference's own numerics, so outputs must match bit for bit:
 * quantization, plan, GEMM and the whole layer alike. The only allowed difference is an
 * activation value whose FP64 evaluation lands within the last FP64 ulp of an FP32 rounding
 * boundary (CUDA's and glibc's exp/tanh may differ by one ulp); such mismatches are counted and
 * printed, and must be vanishingly rare. The GEMM and layer tests run once per exact GEMM kernel
 * (MXMOE_CUDA_GEMM=generic, then =skinny).
 *
 * On a compute capability 9.0 GPU the grouped GEMM runs on the Hopper FP8 path when experts get
 * many tokens (forced here with MXMOE_CUDA_GEMM=sm90); it is not exact, so it is checked element by
 * element against an FP64 product of the dequantized operands with the bound documented in
 * include/mxmoe.h (scale-spread cases included), and the layer on it against the CPU layer by
 * normalised error.
 *
 *   test_cuda [--small] [--seed S]     (--small: the sizes compute-sanitizer runs)
 *   test_cuda --bound-stress N [--seed S]
 *       only the Hopper cases whose promotions span 256 K (the bound's tightest), N rounds of
 *       fresh inputs: the tail of |error| / bound over many draws, not one suite's.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mxmoe.h"

/* ------------------------------------------------------------------------------------------ */
/* harness */

static int g_passed, g_failed, g_small;
static const char* g_gemm_kernel = "default"; /* MXMOE_CUDA_GEMM of the tests running */
static uint64_t g_rng;

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

#define MX_OK(ctx, call)                                                                           \
    do {                                                                                           \
        mxmoe_status s_ = (call);                                                                  \
        if (s_ != MXMOE_OK) {                                                                      \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                    \
                    mxmoe_status_string(s_), mxmoe_ctx_last_error(ctx));                           \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static void check(int ok, const char* what) {
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        printf("FAIL %s\n", what);
    }
}

static uint64_t next_u64(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static double uniform(void) {
    return (double)(next_u64() >> 11) * 0x1p-53;
}

static int64_t rand_int(int64_t n) {
    return (int64_t)(next_u64() % (uint64_t)n);
}

/* Values over many binades with the special values the numerics must handle. */
static float wild_float(int specials) {
    if (specials && rand_int(64) == 0) {
        static const float special[] = {0.0f, -0.0f, 6.0f, -6.0f, 1e-40f, -3e-39f, 3.4e38f};
        return special[rand_int(7)];
    }
    if (specials && rand_int(4096) == 0) {
        return rand_int(2) ? NAN : (rand_int(2) ? INFINITY : -INFINITY);
    }
    double v = (uniform() * 2.0 - 1.0) * ldexp(1.0, (int)rand_int(24) - 12);
    return (float)v;
}

static void fill_float(void* data, mxmoe_dtype dtype, int64_t n, int specials, double scale) {
    for (int64_t i = 0; i < n; i++) {
        float v = specials ? wild_float(1) : (float)((uniform() * 2.0 - 1.0) * scale);
        if (dtype == MXMOE_F32) {
            ((float*)data)[i] = v;
        } else {
            uint32_t u;
            memcpy(&u, &v, 4);
            uint16_t h = dtype == MXMOE_BF16 ? (uint16_t)(u >> 16) : 0;
            if (dtype == MXMOE_F16) { /* a random finite half of any binade up to 2^14 */
                h = (uint16_t)(rand_int(2) << 15 | (rand_int(30) << 10) | rand_int(1024));
            }
            ((uint16_t*)data)[i] = h;
        }
    }
}

static void fill_bytes(uint8_t* p, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        p[i] = (uint8_t)next_u64();
    }
}

/* ------------------------------------------------------------------------------------------ */
/* host and device tensors */

typedef struct pair {
    mxmoe_tensor host, dev;
    size_t bytes;
} pair;

static pair make_pair(mxmoe_dtype dtype, int32_t ndim, const int64_t* dims) {
    pair p;
    p.host = mxmoe_tensor_make(NULL, dtype, ndim, dims);
    p.bytes = (size_t)mxmoe_tensor_numel(&p.host) * mxmoe_dtype_size(dtype);
    p.host.data = malloc(p.bytes ? p.bytes : 1);
    p.dev = p.host;
    p.dev.device = MXMOE_DEVICE_CUDA;
    CUDA_OK(cudaMalloc(&p.dev.data, p.bytes ? p.bytes : 1));
    memset(p.host.data, 0xA5, p.bytes); /* poison: untouched regions must match too */
    CUDA_OK(cudaMemset(p.dev.data, 0xA5, p.bytes));
    return p;
}

static pair pair2(mxmoe_dtype dtype, int64_t d0, int64_t d1) {
    int64_t dims[2] = {d0, d1};
    return make_pair(dtype, 2, dims);
}

static pair pair1(mxmoe_dtype dtype, int64_t d0) {
    return make_pair(dtype, 1, &d0);
}

static pair pair3(mxmoe_dtype dtype, int64_t d0, int64_t d1, int64_t d2) {
    int64_t dims[3] = {d0, d1, d2};
    return make_pair(dtype, 3, dims);
}

static void upload(pair* p) {
    CUDA_OK(cudaMemcpy(p->dev.data, p->host.data, p->bytes, cudaMemcpyHostToDevice));
}

/* Compares the device copy with the host (reference) result byte for byte; returns the number
 * of differing bytes. */
static int64_t diff_bytes(const pair* p) {
    uint8_t* got = malloc(p->bytes ? p->bytes : 1);
    CUDA_OK(cudaMemcpy(got, p->dev.data, p->bytes, cudaMemcpyDeviceToHost));
    int64_t n = 0;
    for (size_t i = 0; i < p->bytes; i++) {
        n += got[i] != ((uint8_t*)p->host.data)[i];
    }
    free(got);
    return n;
}

static void free_pair(pair* p) {
    free(p->host.data);
    cudaFree(p->dev.data);
}

static mxmoe_ctx *g_cpu, *g_gpu;

static void expect_same(const pair* p, const char* what) {
    int64_t n = diff_bytes(p);
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %lld of %zu bytes differ from the reference", what, (long long)n,
             p->bytes);
    check(n == 0, msg);
}

static void gpu_sync_ok(const char* what) {
    mxmoe_status s = mxmoe_ctx_synchronize(g_gpu);
    char msg[512];
    snprintf(msg, sizeof msg, "%s: synchronize -> %s %s", what, mxmoe_status_string(s),
             mxmoe_ctx_last_error(g_gpu));
    check(s == MXMOE_OK, msg);
}

/* Expert offsets for `rows` rows over E experts, some experts empty. */
static void random_offsets(int32_t* off, int64_t E, int64_t rows, int empty_experts) {
    off[0] = 0;
    int64_t left = rows;
    for (int64_t e = 0; e < E; e++) {
        int64_t m =
            e == E - 1 ? left : (empty_experts && rand_int(3) == 0 ? 0 : rand_int(left + 1));
        m = m > left ? left : m;
        off[e + 1] = (int32_t)(off[e] + m);
        left -= m;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* operations */

static void test_quantize(int64_t rows, int64_t k, mxmoe_dtype dtype) {
    for (int rule = 0; rule < MXMOE_RULE_COUNT; rule++) {
        pair x = pair2(dtype, rows, k), packed = pair2(MXMOE_U8, rows, k / 2),
             scales = pair2(MXMOE_U8, rows, k / 32), back = pair2(MXMOE_F32, rows, k);
        fill_float(x.host.data, dtype, rows * k, 1, 1.0);
        upload(&x);
        mxmoe_mx_tensor qh = {packed.host, scales.host, MXMOE_SCALES_LINEAR};
        mxmoe_mx_tensor qd = {packed.dev, scales.dev, MXMOE_SCALES_LINEAR};
        MX_OK(g_cpu, mxmoe_quantize(g_cpu, &x.host, (mxmoe_scale_rule)rule, &qh));
        MX_OK(g_gpu, mxmoe_quantize(g_gpu, &x.dev, (mxmoe_scale_rule)rule, &qd));
        MX_OK(g_cpu, mxmoe_dequantize(g_cpu, &qh, &back.host));
        MX_OK(g_gpu, mxmoe_dequantize(g_gpu, &qd, &back.dev));
        gpu_sync_ok("quantize");
        char what[128];
        snprintf(what, sizeof what, "quantize %lldx%lld %s %s packed", (long long)rows,
                 (long long)k, mxmoe_dtype_name(dtype), mxmoe_scale_rule_name(rule));
        expect_same(&packed, what);
        snprintf(what, sizeof what, "quantize %lldx%lld %s %s scales", (long long)rows,
                 (long long)k, mxmoe_dtype_name(dtype), mxmoe_scale_rule_name(rule));
        expect_same(&scales, what);
        expect_same(&back, "dequantize");

        pair gguf = pair2(MXMOE_U8, rows, k / 32 * 17);
        pair packed2 = pair2(MXMOE_U8, rows, k / 2), scales2 = pair2(MXMOE_U8, rows, k / 32);
        mxmoe_mx_tensor q2h = {packed2.host, scales2.host, MXMOE_SCALES_LINEAR};
        mxmoe_mx_tensor q2d = {packed2.dev, scales2.dev, MXMOE_SCALES_LINEAR};
        MX_OK(g_cpu, mxmoe_gguf_from_mx(g_cpu, &qh, &gguf.host));
        MX_OK(g_gpu, mxmoe_gguf_from_mx(g_gpu, &qd, &gguf.dev));
        MX_OK(g_cpu, mxmoe_mx_from_gguf(g_cpu, &gguf.host, &q2h));
        MX_OK(g_gpu, mxmoe_mx_from_gguf(g_gpu, &gguf.dev, &q2d));
        gpu_sync_ok("gguf");
        expect_same(&gguf, "gguf_from_mx");
        expect_same(&packed2, "mx_from_gguf packed");
        check(memcmp(packed2.host.data, packed.host.data, packed.bytes) == 0,
              "gguf round trip restores the packed bytes");

        pair swz = pair1(MXMOE_U8, (int64_t)mxmoe_swizzled_scale_bytes(rows, k));
        pair lin = pair2(MXMOE_U8, rows, k / 32);
        MX_OK(g_cpu, mxmoe_swizzle_scales(g_cpu, &scales.host, k, &swz.host));
        MX_OK(g_gpu, mxmoe_swizzle_scales(g_gpu, &scales.dev, k, &swz.dev));
        MX_OK(g_cpu, mxmoe_unswizzle_scales(g_cpu, &swz.host, k, &lin.host));
        MX_OK(g_gpu, mxmoe_unswizzle_scales(g_gpu, &swz.dev, k, &lin.dev));
        gpu_sync_ok("swizzle");
        expect_same(&swz, "swizzle_scales");
        expect_same(&lin, "unswizzle_scales");
        pair* all[] = {&x, &packed, &scales, &back, &gguf, &packed2, &scales2, &swz, &lin};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            free_pair(all[i]);
        }
    }
}

static void test_experts_quantize(int64_t rows, int64_t E, int64_t k, int swizzled) {
    pair x = pair2(MXMOE_BF16, rows, k), off = pair1(MXMOE_I32, E + 1);
    fill_float(x.host.data, MXMOE_BF16, rows * k, 1, 1.0);
    random_offsets(off.host.data, E, rows - rand_int(3 < rows ? 3 : 1), 1);
    upload(&x);
    upload(&off);
    pair packed = pair2(MXMOE_U8, rows, k / 2);
    pair scales = swizzled
                      ? pair1(MXMOE_U8, (int64_t)mxmoe_grouped_swizzled_scale_bytes(rows, E, k))
                      : pair2(MXMOE_U8, rows, k / 32);
    mxmoe_scale_layout layout = swizzled ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_mx_tensor qh = {packed.host, scales.host, layout}, qd = {packed.dev, scales.dev, layout};
    MX_OK(g_cpu, mxmoe_experts_quantize(g_cpu, &x.host, &off.host, MXMOE_RULE_EVEN, &qh));
    MX_OK(g_gpu, mxmoe_experts_quantize(g_gpu, &x.dev, &off.dev, MXMOE_RULE_EVEN, &qd));
    gpu_sync_ok("experts_quantize");
    expect_same(&packed, swizzled ? "experts_quantize swizzled packed" : "experts_quantize packed");
    expect_same(&scales, swizzled ? "experts_quantize swizzled scales" : "experts_quantize scales");
    free_pair(&x), free_pair(&off), free_pair(&packed), free_pair(&scales);
}

static void test_permute_quantize(int64_t T, int64_t k, int64_t E, int64_t K, int swizzled) {
    pair x = pair2(MXMOE_BF16, T, K), ids = pair2(MXMOE_I32, T, k);
    fill_float(x.host.data, MXMOE_BF16, T * K, 1, 1.0);
    for (int64_t i = 0; i < T * k; i++) {
        ((int32_t*)ids.host.data)[i] = rand_int(9) == 0 ? -1 : (int32_t)rand_int(E);
    }
    pair counts = pair1(MXMOE_I32, E), off = pair1(MXMOE_I32, E + 1);
    pair sorted = pair1(MXMOE_I32, T * k), row_of = pair1(MXMOE_I32, T * k);
    MX_OK(g_cpu, mxmoe_plan(g_cpu, &ids.host, NULL, (int32_t)E, &counts.host, &off.host,
                            &sorted.host, &row_of.host));
    upload(&x);
    upload(&off);
    upload(&sorted);
    pair packed = pair2(MXMOE_U8, T * k, K / 2);
    pair scales = swizzled
                      ? pair1(MXMOE_U8, (int64_t)mxmoe_grouped_swizzled_scale_bytes(T * k, E, K))
                      : pair2(MXMOE_U8, T * k, K / 32);
    mxmoe_scale_layout sl = swizzled ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_mx_tensor qh = {packed.host, scales.host, sl}, qd = {packed.dev, scales.dev, sl};
    MX_OK(g_cpu, mxmoe_permute_quantize(g_cpu, &x.host, &sorted.host, &off.host, (int32_t)k,
                                        MXMOE_RULE_RCEIL, &qh));
    MX_OK(g_gpu, mxmoe_permute_quantize(g_gpu, &x.dev, &sorted.dev, &off.dev, (int32_t)k,
                                        MXMOE_RULE_RCEIL, &qd));
    gpu_sync_ok("permute_quantize");
    expect_same(&packed, swizzled ? "permute_quantize swizzled packed" : "permute_quantize packed");
    expect_same(&scales, swizzled ? "permute_quantize swizzled scales" : "permute_quantize scales");
    free_pair(&x), free_pair(&ids), free_pair(&counts), free_pair(&off), free_pair(&sorted),
        free_pair(&row_of), free_pair(&packed), free_pair(&scales);
}

/* h of h_dtype (FP32: the layer's GEMM-1 output), uniform in [-8, 8] or, with specials, over 24
 * binades with zeros, subnormals, NaN and Inf. Past 32 blocks an SM (rows * inter / 32 > 4224
 * on 132 SMs) the kernels take eight elements a lane (FP32 and BF16 input: the vector kernel),
 * and past 1024 blocks an SM a lane takes several blocks (its index advanced, not divided). */
static void test_act(int64_t rows, int64_t inter, mxmoe_activation act, mxmoe_gate_up_layout layout,
                     mxmoe_dtype act_dtype, int with_offsets, int swizzled, mxmoe_dtype h_dtype,
                     int specials) {
    int gated =
        act == MXMOE_ACT_SILU_MUL || act == MXMOE_ACT_GELU_TANH_MUL || act == MXMOE_ACT_SWIGLU_OAI;
    int64_t width = gated ? 2 * inter : inter;
    int64_t E = 5;
    pair h = pair2(h_dtype, rows, width), off = pair1(MXMOE_I32, E + 1);
    fill_float(h.host.data, h_dtype, rows * width, specials, 8.0);
    random_offsets(off.host.data, E, rows, 1);
    upload(&h);
    upload(&off);
    pair packed = pair2(MXMOE_U8, rows, inter / 2);
    int64_t swz_bytes = with_offsets ? (int64_t)mxmoe_grouped_swizzled_scale_bytes(rows, E, inter)
                                     : (int64_t)mxmoe_swizzled_scale_bytes(rows, inter);
    pair scales = swizzled ? pair1(MXMOE_U8, swz_bytes) : pair2(MXMOE_U8, rows, inter / 32);
    mxmoe_act_params p = mxmoe_act_params_default();
    p.activation = act;
    p.layout = layout;
    p.act_dtype = act_dtype;
    mxmoe_scale_layout sl = swizzled ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_mx_tensor qh = {packed.host, scales.host, sl}, qd = {packed.dev, scales.dev, sl};
    MX_OK(g_cpu, mxmoe_act_and_quantize(g_cpu, &h.host, with_offsets ? &off.host : NULL, &p, &qh));
    MX_OK(g_gpu, mxmoe_act_and_quantize(g_gpu, &h.dev, with_offsets ? &off.dev : NULL, &p, &qd));
    gpu_sync_ok("act_and_quantize");
    char what[128];
    snprintf(what, sizeof what,
             "act_and_quantize %lldx%lld act=%d layout=%d %s offsets=%d swizzled=%d h=%s%s",
             (long long)rows, (long long)inter, (int)act, (int)layout, mxmoe_dtype_name(act_dtype),
             with_offsets, swizzled, mxmoe_dtype_name(h_dtype), specials ? " specials" : "");
    expect_same(&packed, what);
    expect_same(&scales, what);
    free_pair(&h), free_pair(&off), free_pair(&packed), free_pair(&scales);
}

static void test_route(int64_t T, int64_t E, mxmoe_routing method, int32_t k, int32_t groups,
                       int32_t topk_groups, int ties) {
    pair logits = pair2(MXMOE_F32, T, E), bias = pair1(MXMOE_F32, E);
    fill_float(logits.host.data, MXMOE_F32, T * E, 0, 4.0);
    if (ties) { /* quantised logits: many exact ties, broken by the lower id */
        for (int64_t i = 0; i < T * E; i++) {
            ((float*)logits.host.data)[i] = (float)rand_int(4);
        }
    }
    fill_float(bias.host.data, MXMOE_F32, E, 0, 0.1);
    upload(&logits);
    upload(&bias);
    pair ids = pair2(MXMOE_I32, T, k), w = pair2(MXMOE_F32, T, k);
    mxmoe_route_params p = mxmoe_route_params_default();
    p.method = method;
    p.top_k = k;
    p.renormalize = 1;
    p.num_groups = groups;
    p.topk_groups = topk_groups;
    p.scaling_factor = 2.5f;
    p.correction_bias = method == MXMOE_ROUTE_SIGMOID_GROUPED ? &bias.host : NULL;
    MX_OK(g_cpu, mxmoe_route(g_cpu, &logits.host, &p, &ids.host, &w.host));
    p.correction_bias = method == MXMOE_ROUTE_SIGMOID_GROUPED ? &bias.dev : NULL;
    MX_OK(g_gpu, mxmoe_route(g_gpu, &logits.dev, &p, &ids.dev, &w.dev));
    gpu_sync_ok("route");
    char what[128];
    snprintf(what, sizeof what, "route method=%d E=%lld k=%d ties=%d", (int)method, (long long)E,
             (int)k, ties);
    expect_same(&ids, what);
    expect_same(&w, what);
    free_pair(&logits), free_pair(&bias), free_pair(&ids), free_pair(&w);
}

static void test_plan(int64_t T, int32_t k, int32_t E, int with_map) {
    int64_t E_global = with_map ? 2 * E : E;
    pair ids = pair2(MXMOE_I32, T, k), map = pair1(MXMOE_I32, E_global);
    for (int64_t i = 0; i < T * k; i++) {
        ((int32_t*)ids.host.data)[i] = rand_int(10) == 0 ? -1 : (int32_t)rand_int(E_global);
    }
    for (int64_t g = 0; g < E_global; g++) {
        ((int32_t*)map.host.data)[g] = rand_int(3) == 0 ? -1 : (int32_t)rand_int(E);
    }
    upload(&ids);
    upload(&map);
    pair counts = pair1(MXMOE_I32, E), offsets = pair1(MXMOE_I32, E + 1);
    pair sorted = pair1(MXMOE_I32, T * k), row_of = pair1(MXMOE_I32, T * k);
    MX_OK(g_cpu, mxmoe_plan(g_cpu, &ids.host, with_map ? &map.host : NULL, E, &counts.host,
                            &offsets.host, &sorted.host, &row_of.host));
    MX_OK(g_gpu, mxmoe_plan(g_gpu, &ids.dev, with_map ? &map.dev : NULL, E, &counts.dev,
                            &offsets.dev, &sorted.dev, &row_of.dev));
    gpu_sync_ok("plan");
    expect_same(&counts, "plan counts");
    expect_same(&offsets, "plan offsets");
    expect_same(&sorted, "plan sorted");
    expect_same(&row_of, "plan row_of");
    free_pair(&ids), free_pair(&map), free_pair(&counts), free_pair(&offsets), free_pair(&sorted),
        free_pair(&row_of);
}

/* Random MXFP4 operand bytes (scales in a sane range so sums stay finite). */
/* Random operands; scales near 2^0, or (wide) anywhere in 2^-127..2^127: products that
 * underflow, overflow and land on the exact kernels' fast-path boundaries. */
static void random_mx(pair* packed, pair* scales, int wide) {
    fill_bytes(packed->host.data, (int64_t)packed->bytes);
    for (size_t i = 0; i < scales->bytes; i++) {
        ((uint8_t*)scales->host.data)[i] = (uint8_t)(wide ? rand_int(255) : 120 + rand_int(14));
    }
    upload(packed);
    upload(scales);
}

static double value_at(const void* data, mxmoe_dtype dtype, int64_t i);

/* Elements of a float result whose bits differ from the reference's, NaN matching any NaN (an
 * overflowing sum of +inf and -inf has no defined payload). */
static int64_t diff_values(const pair* p) {
    void* got = malloc(p->bytes ? p->bytes : 1);
    CUDA_OK(cudaMemcpy(got, p->dev.data, p->bytes, cudaMemcpyDeviceToHost));
    int64_t n = 0, size = (int64_t)mxmoe_dtype_size(p->host.dtype);
    for (int64_t i = 0; i < mxmoe_tensor_numel(&p->host); i++) {
        double r = value_at(p->host.data, p->host.dtype, i), g = value_at(got, p->host.dtype, i);
        n += memcmp((char*)got + i * size, (char*)p->host.data + i * size, (size_t)size) != 0 &&
             !(isnan(r) && isnan(g));
    }
    free(got);
    return n;
}

static void test_gemm(int64_t rows, int64_t E, int64_t N, int64_t K, int swz_a, int swz_w,
                      int with_bias, mxmoe_dtype out_dtype, int wide) {
    pair off = pair1(MXMOE_I32, E + 1);
    random_offsets(off.host.data, E, rows - (rows > 1 ? rand_int(2) : 0), 1);
    upload(&off);
    pair ap = pair2(MXMOE_U8, rows, K / 2);
    pair as = swz_a ? pair1(MXMOE_U8, (int64_t)mxmoe_grouped_swizzled_scale_bytes(rows, E, K))
                    : pair2(MXMOE_U8, rows, K / 32);
    pair wp = pair3(MXMOE_U8, E, N, K / 2);
    pair ws = swz_w ? pair1(MXMOE_U8, E * (int64_t)mxmoe_swizzled_scale_bytes(N, K))
                    : pair3(MXMOE_U8, E, N, K / 32);
    random_mx(&ap, &as, wide);
    random_mx(&wp, &ws, wide);
    pair bias = pair2(MXMOE_BF16, E, N), out = pair2(out_dtype, rows, N);
    fill_float(bias.host.data, MXMOE_BF16, E * N, 0, 1.0);
    upload(&bias);
    mxmoe_scale_layout la = swz_a ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_scale_layout lw = swz_w ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR;
    mxmoe_mx_tensor a_h = {ap.host, as.host, la}, a_d = {ap.dev, as.dev, la};
    mxmoe_mx_tensor w_h = {wp.host, ws.host, lw}, w_d = {wp.dev, ws.dev, lw};
    MX_OK(g_cpu, mxmoe_grouped_gemm(g_cpu, &a_h, &w_h, &off.host, with_bias ? &bias.host : NULL,
                                    &out.host));
    MX_OK(g_gpu,
          mxmoe_grouped_gemm(g_gpu, &a_d, &w_d, &off.dev, with_bias ? &bias.dev : NULL, &out.dev));
    gpu_sync_ok("grouped_gemm");
    char what[160];
    snprintf(what, sizeof what,
             "grouped_gemm %s R=%lld E=%lld N=%lld K=%lld swz=%d/%d bias=%d %s%s", g_gemm_kernel,
             (long long)rows, (long long)E, (long long)N, (long long)K, swz_a, swz_w, with_bias,
             mxmoe_dtype_name(out_dtype), wide ? " wide scales" : "");
    int64_t n = diff_values(&out);
    snprintf(what + strlen(what), sizeof what - strlen(what), ": %lld of %lld differ", (long long)n,
             (long long)mxmoe_tensor_numel(&out.host));
    check(n == 0, what);
    free_pair(&off), free_pair(&ap), free_pair(&as), free_pair(&wp), free_pair(&ws),
        free_pair(&bias), free_pair(&out);
}

/* ------------------------------------------------------------------------------------------ */
/* the Hopper (sm_90a) path: checked against FP64 with its documented bound */

static double value_at(const void* data, mxmoe_dtype dtype, int64_t i) {
    if (dtype == MXMOE_F32) {
        return ((const float*)data)[i];
    }
    uint16_t h = ((const uint16_t*)data)[i];
    if (dtype == MXMOE_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : (e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25));
    return h >> 15 ? -v : v;
}

/* sqrt(sum (got - ref)^2 / sum ref^2) of a device result against its host reference. */
static double normalised_error(const pair* p) {
    void* got = malloc(p->bytes);
    CUDA_OK(cudaMemcpy(got, p->dev.data, p->bytes, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int64_t i = 0; i < mxmoe_tensor_numel(&p->host); i++) {
        double r = value_at(p->host.data, p->host.dtype, i), g = value_at(got, p->host.dtype, i);
        num += (g - r) * (g - r);
        den += r * r;
    }
    free(got);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int g_sm90;          /* the device is compute capability 9.0 */
static double g_sm90_worst; /* largest sums error / (2^-13 sum|a w|), reported at the end */

/* Forces the grouped GEMM kernel (NULL: the library's choice). */
static void force_gemm(const char* kernel) {
    if (kernel != NULL) {
        setenv("MXMOE_CUDA_GEMM", kernel, 1);
    } else {
        unsetenv("MXMOE_CUDA_GEMM");
    }
    g_gemm_kernel = kernel != NULL ? kernel : "default";
}

/* Prepares w with leave to repack its codes in place (mxmoe_weights_prepare_repack): on the Hopper
 * device it must (every weight tensor of these tests is one the Hopper path takes), elsewhere it
 * must not; preparing them again is refused and changes nothing. */
static void repack_weights(const mxmoe_mx_tensor* w, const char* what) {
    MX_OK(g_gpu, mxmoe_weights_prepare_repack(g_gpu, w));
    const int repacked = mxmoe_weights_repacked(g_gpu, w);
    char msg[200];
    snprintf(msg, sizeof msg, "%s: codes repacked in place exactly where the Hopper path runs",
             what);
    check(repacked == (g_sm90 ? 1 : 0), msg);
    if (repacked) {
        snprintf(msg, sizeof msg, "%s: repacked weights are not prepared again", what);
        check(mxmoe_weights_prepare(g_gpu, w) == MXMOE_ERR_INVALID_ARGUMENT &&
                  mxmoe_weights_prepare_repack(g_gpu, w) == MXMOE_ERR_INVALID_ARGUMENT &&
                  mxmoe_weights_repacked(g_gpu, w) == 1,
              msg);
    }
}

/* Unprepares w, whose packed codes must then be the caller's bytes again (packed: their pair). */
static void unpack_weights(const mxmoe_mx_tensor* w, const pair* packed, const char* what) {
    MX_OK(g_gpu, mxmoe_weights_unprepare(g_gpu, w));
    uint8_t* back = malloc(packed->bytes);
    CUDA_OK(cudaMemcpy(back, packed->dev.data, packed->bytes, cudaMemcpyDeviceToHost));
    char msg[200];
    snprintf(msg, sizeof msg, "%s: unprepare restores the caller's codes", what);
    check(memcmp(back, packed->host.data, packed->bytes) == 0 &&
              mxmoe_weights_repacked(g_gpu, w) == 0,
          msg);
    free(back);
}

/* Scale bytes near 2^0 (spread 0: 120..133), or spread over `spread` binades below 2^3. */
static void fill_scales(uint8_t* p, int64_t n, int spread) {
    for (int64_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(spread ? 130 - rand_int(spread + 1) : 120 + rand_int(14));
    }
}

/* Whether block j (of 32) of a row with `kb` scale bytes lies more than 14 binades below the
 * largest block of its `span` blocks: the contract lets the Hopper path round such blocks of a
 * 128-K chunk (span 4) in E4M3, for the activations and the weights alike. */
static int block_rounded(const uint8_t* row_scales, int64_t kb, int64_t j, int64_t span) {
    int64_t c0 = j / span * span;
    int smax = 0;
    for (int64_t b = c0; b < c0 + span && b < kb; b++) {
        smax = row_scales[b] > smax ? row_scales[b] : smax;
    }
    return row_scales[j] < smax - 14;
}

/* The bound (include/mxmoe.h): per output, 2^-10 sum|a w| for the FP8 MMA's accumulation, one
 * FP32 rounding per promotion (at most one per 128 K), |a w| for each product with one rounded
 * block and 3 |a w| with two, then the bias add and the output rounding. */
static void test_gemm_sm90_counts(int64_t rows, int64_t E, int64_t N, int64_t K, int swz_w,
                                  int with_bias, mxmoe_dtype out_dtype, int spread, int low_chunks,
                                  const int32_t* counts) {
    const int64_t kb = K / 32, nc = (K + 127) / 128;
    pair off = pair1(MXMOE_I32, E + 1);
    if (counts != NULL) { /* each expert's rows as given (they sum to at most rows) */
        int32_t* o = off.host.data;
        o[0] = 0;
        for (int64_t e = 0; e < E; e++) {
            o[e + 1] = o[e] + counts[e];
        }
    } else {
        random_offsets(off.host.data, E, rows - (rows > 1 ? rand_int(2) : 0), 1);
    }
    upload(&off);
    pair ap = pair2(MXMOE_U8, rows, K / 2), as = pair2(MXMOE_U8, rows, kb);
    pair wp = pair3(MXMOE_U8, E, N, K / 2), ws = pair3(MXMOE_U8, E, N, kb);
    pair wsw = pair1(MXMOE_U8, E * (int64_t)mxmoe_swizzled_scale_bytes(N, K));
    fill_bytes(ap.host.data, (int64_t)ap.bytes);
    fill_bytes(wp.host.data, (int64_t)wp.bytes);
    fill_scales(as.host.data, (int64_t)as.bytes, spread);
    fill_scales(ws.host.data, (int64_t)ws.bytes, spread);
    /* low chunks: a weight chunk's scales 100-110, 10-33 binades below its span's other
     * chunk's (120-133): one row in low_chunks, a random chunk with a partner; or (-1) every
     * row's first chunk, with the tokens' values there and 60-70 binades smaller elsewhere, so
     * that each output is that chunk's sum (a span's reference would round it to ~nothing) */
    for (int64_t row = 0; row < E * N && low_chunks != 0 && nc > 1; row++) {
        if (low_chunks < 0 || rand_int(low_chunks) == 0) {
            const int64_t c = low_chunks < 0 ? 0 : rand_int((int)(nc & ~1));
            for (int64_t b = 4 * c; b < 4 * c + 4 && b < kb; b++) {
                ((uint8_t*)ws.host.data)[row * kb + b] = (uint8_t)(100 + rand_int(11));
            }
        }
    }
    for (int64_t row = 0; row < rows && low_chunks < 0; row++) {
        for (int64_t b = 4; b < kb; b++) {
            ((uint8_t*)as.host.data)[row * kb + b] = (uint8_t)(60 + rand_int(11));
        }
    }
    for (int64_t e = 0; e < E && swz_w; e++) {
        int64_t lin_dims[2] = {N, kb}, swz_dims[1] = {(int64_t)mxmoe_swizzled_scale_bytes(N, K)};
        mxmoe_tensor lin =
            mxmoe_tensor_make((uint8_t*)ws.host.data + e * N * kb, MXMOE_U8, 2, lin_dims);
        mxmoe_tensor swz =
            mxmoe_tensor_make((uint8_t*)wsw.host.data + e * swz_dims[0], MXMOE_U8, 1, swz_dims);
        MX_OK(g_cpu, mxmoe_swizzle_scales(g_cpu, &lin, K, &swz));
    }
    pair* inputs[] = {&off, &ap, &as, &wp, &ws, &wsw};
    for (size_t i = 1; i < sizeof inputs / sizeof inputs[0]; i++) {
        upload(inputs[i]);
    }
    pair bias = pair2(MXMOE_BF16, E, N), out = pair2(out_dtype, rows, N);
    fill_float(bias.host.data, MXMOE_BF16, E * N, 0, 1.0);
    upload(&bias);
    mxmoe_mx_tensor a_d = {ap.dev, as.dev, MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w_d = {wp.dev, swz_w ? wsw.dev : ws.dev,
                           swz_w ? MXMOE_SCALES_SWIZZLED : MXMOE_SCALES_LINEAR};
    MX_OK(g_gpu,
          mxmoe_grouped_gemm(g_gpu, &a_d, &w_d, &off.dev, with_bias ? &bias.dev : NULL, &out.dev));
    gpu_sync_ok("grouped_gemm [sm90]");

    /* FP64 reference on the dequantized operands (dequantization is exact) */
    float* a = malloc((size_t)(rows * K) * sizeof(float));
    float* w = malloc((size_t)(E * N * K) * sizeof(float));
    int64_t a_dims[2] = {rows, K}, w_dims[3] = {E, N, K};
    mxmoe_tensor a_f = mxmoe_tensor_make(a, MXMOE_F32, 2, a_dims);
    mxmoe_tensor w_f = mxmoe_tensor_make(w, MXMOE_F32, 3, w_dims);
    mxmoe_mx_tensor a_h = {ap.host, as.host, MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w_h = {wp.host, ws.host, MXMOE_SCALES_LINEAR};
    MX_OK(g_cpu, mxmoe_dequantize(g_cpu, &a_h, &a_f));
    MX_OK(g_cpu, mxmoe_dequantize(g_cpu, &w_h, &w_f));
    void* got = malloc(out.bytes);
    CUDA_OK(cudaMemcpy(got, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    const double u_out =
        out_dtype == MXMOE_F32 ? 0x1p-24 : (out_dtype == MXMOE_BF16 ? 0x1p-8 : 0x1p-11);
    const int32_t* o = off.host.data;
    int64_t bad = 0, untouched_bad = 0;
    double worst_bound_ratio = 0;
    const uint8_t* sa = as.host.data;
    const uint8_t* sw = ws.host.data;
    for (int64_t e = 0; e < E; e++) {
        for (int64_t r = o[e]; r < o[e + 1]; r++) {
            for (int64_t n = 0; n < N; n++) {
                const float* ar = a + r * K;
                const float* wr = w + (e * N + n) * K;
                double exact = 0, sum_abs = 0, rounded = 0;
                for (int64_t j = 0; j < kb; j++) {
                    int ra = block_rounded(sa + r * kb, kb, j, 4);
                    int rw = block_rounded(sw + (e * N + n) * kb, kb, j, 4);
                    double blk = 0;
                    for (int64_t i = j * 32; i < j * 32 + 32; i++) {
                        double p = (double)ar[i] * wr[i];
                        exact += p;
                        blk += fabs(p);
                    }
                    sum_abs += blk;
                    rounded += (ra && rw ? 3.0 : (ra || rw ? 1.0 : 0.0)) * blk;
                }
                double ref =
                    exact + (with_bias ? value_at(bias.host.data, MXMOE_BF16, e * N + n) : 0);
                double bound = 0x1p-10 * sum_abs + (double)nc * 0x1p-24 * sum_abs + rounded +
                               0x1p-24 * fabs(ref) + 0x1p-140;
                bound += u_out * (fabs(ref) + bound);
                double g = value_at(got, out_dtype, r * N + n), err = fabs(g - ref);
                if (isinf(g) && out_dtype == MXMOE_F16 && signbit(g) == signbit(ref) &&
                    fabs(ref) + bound >= 65520.0) {
                    err = 0; /* beyond F16's range: rounds to infinity */
                }
                if (!(err <= bound)) {
                    if (bad++ < 3) {
                        printf("    [sm90] e=%lld r=%lld n=%lld got %.9g ref %.9g err %.3g bound "
                               "%.3g\n",
                               (long long)e, (long long)r, (long long)n, g, ref, err, bound);
                    }
                }
                worst_bound_ratio = fmax(worst_bound_ratio, err / bound);
                if (rounded == 0 && out_dtype == MXMOE_F32 && sum_abs > 0) {
                    /* the sums' error, net of the output's own rounding (with a bias far above
                     * sum|a w|, as in the low-chunk witness, that rounding alone is thousands of
                     * 2^-13 sum|a w|) */
                    const double sums = fmax(err - 0x1p-24 * fabs(ref) - 0x1p-140, 0.0);
                    g_sm90_worst = fmax(g_sm90_worst, sums / (0x1p-13 * sum_abs));
                }
            }
        }
    }
    for (int64_t r = o[E]; r < rows; r++) { /* rows past the experts stay untouched */
        for (int64_t i = r * N * (int64_t)mxmoe_dtype_size(out_dtype);
             i < (r + 1) * N * (int64_t)mxmoe_dtype_size(out_dtype); i++) {
            untouched_bad += ((uint8_t*)got)[i] != 0xA5;
        }
    }
    char what[220];
    snprintf(
        what, sizeof what,
        "grouped_gemm [sm90] R=%lld E=%lld N=%lld K=%lld swz_w=%d bias=%d %s spread=%d low=%d: "
        "%lld outside the bound (worst err/bound %.3f), %lld untouched bytes changed",
        (long long)rows, (long long)E, (long long)N, (long long)K, swz_w, with_bias,
        mxmoe_dtype_name(out_dtype), spread, low_chunks, (long long)bad, worst_bound_ratio,
        (long long)untouched_bad);
    printf("  %s\n", what);
    check(bad == 0 && untouched_bad == 0, what);

    /* prepared weights (the weight-scale words made once): the same bits, untouched rows too */
    MX_OK(g_gpu, mxmoe_weights_prepare(g_gpu, &w_d));
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu,
          mxmoe_grouped_gemm(g_gpu, &a_d, &w_d, &off.dev, with_bias ? &bias.dev : NULL, &out.dev));
    gpu_sync_ok("grouped_gemm [sm90, prepared]");
    void* prepared = malloc(out.bytes);
    CUDA_OK(cudaMemcpy(prepared, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    check(memcmp(prepared, got, out.bytes) == 0,
          "grouped_gemm [sm90] with prepared weights: bitwise the unprepared result");
    MX_OK(g_gpu, mxmoe_weights_unprepare(g_gpu, &w_d));
    /* the codes repacked in place (the packed instance of the same width): the same bits */
    repack_weights(&w_d, "grouped_gemm [sm90]");
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu,
          mxmoe_grouped_gemm(g_gpu, &a_d, &w_d, &off.dev, with_bias ? &bias.dev : NULL, &out.dev));
    gpu_sync_ok("grouped_gemm [sm90, repacked]");
    CUDA_OK(cudaMemcpy(prepared, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    check(memcmp(prepared, got, out.bytes) == 0,
          "grouped_gemm [sm90] with repacked weights: bitwise the canonical result");
    unpack_weights(&w_d, &wp, "grouped_gemm [sm90]");
    free(prepared);
    free(a), free(w), free(got);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        free_pair(inputs[i]);
    }
    free_pair(&bias), free_pair(&out);
}

static void test_gemm_sm90(int64_t rows, int64_t E, int64_t N, int64_t K, int swz_w, int with_bias,
                           mxmoe_dtype out_dtype, int spread) {
    test_gemm_sm90_counts(rows, E, N, K, swz_w, with_bias, out_dtype, spread, 0, NULL);
}

/* Tokens and weights near 2^0 (the tokens on their references: the tiles that may sum spans
 * do), but one weight row in `low_chunks` with a chunk 10-33 binades below the other of its
 * span, so that its row keeps its chunks' references (its span's would round it): in some
 * warpgroups every row shares its spans' references and the spans are summed whole, in others
 * one row does not and each chunk is promoted alone. low_chunks = -1: every row's first chunk,
 * the outputs that chunk's sums (the contract's witness: exact to the bound only on the
 * chunk's own reference). */
static void test_gemm_sm90_low_chunks(int64_t rows, int64_t E, int64_t N, int64_t K, int low_chunks,
                                      int swz_w) {
    test_gemm_sm90_counts(rows, E, N, K, swz_w, 1, MXMOE_F32, 0, low_chunks, NULL);
}

/* One MoE layer on both backends; returns the device output pair for further checks. */
typedef struct moe_case {
    int64_t T, E, k, H, I;
    mxmoe_activation act;
    mxmoe_gate_up_layout layout;
    int biases, weight_on_input, with_map, drop_ids;
    mxmoe_dtype x_dtype, out_dtype;
    mxmoe_dtype gemm_dtype; /* moe_params.gemm_dtype (0: F32) */
} moe_case;

static void test_moe(const moe_case* c, int graph, int exact) {
    int gated = c->act == MXMOE_ACT_SILU_MUL || c->act == MXMOE_ACT_GELU_TANH_MUL ||
                c->act == MXMOE_ACT_SWIGLU_OAI;
    int64_t n13 = gated ? 2 * c->I : c->I;
    int64_t E_global = c->with_map ? c->E + 3 : c->E;
    pair x = pair2(c->x_dtype, c->T, c->H), ids = pair2(MXMOE_I32, c->T, c->k);
    pair tw = pair2(MXMOE_F32, c->T, c->k), map = pair1(MXMOE_I32, E_global);
    pair w13p = pair3(MXMOE_U8, c->E, n13, c->H / 2), w13s = pair3(MXMOE_U8, c->E, n13, c->H / 32);
    pair w2p = pair3(MXMOE_U8, c->E, c->H, c->I / 2), w2s = pair3(MXMOE_U8, c->E, c->H, c->I / 32);
    pair b13 = pair2(MXMOE_F32, c->E, n13), b2 = pair2(MXMOE_BF16, c->E, c->H);
    pair out = pair2(c->out_dtype, c->T, c->H);
    fill_float(x.host.data, c->x_dtype, c->T * c->H, 0, 2.0);
    if (c->x_dtype == MXMOE_F16) {
        /* halves below 2 (subnormals included): fill_float's go up to 2^15, which GEMM-1 and
         * relu^2 take past F16's range once the activation is F16 too, and a layer of NaN rows
         * compares only NaN signs, which IEEE leaves to each backend */
        for (int64_t i = 0; i < c->T * c->H; i++) {
            ((uint16_t*)x.host.data)[i] =
                (uint16_t)(rand_int(2) << 15 | (rand_int(16) << 10) | rand_int(1024));
        }
    }
    for (int64_t t = 0; t < c->T; t++) {
        for (int64_t j = 0; j < c->k; j++) { /* distinct experts per token, some dropped */
            int32_t id = (int32_t)((t + j * 7 + rand_int(2)) % E_global);
            if (c->k == E_global) {
                id = (int32_t)j;
            }
            ((int32_t*)ids.host.data)[t * c->k + j] = c->drop_ids && rand_int(8) == 0 ? -1 : id;
            ((float*)tw.host.data)[t * c->k + j] = (float)uniform();
        }
    }
    for (int64_t g = 0; g < E_global; g++) {
        ((int32_t*)map.host.data)[g] = g < c->E ? (int32_t)(c->E - 1 - g) : -1;
    }
    /* weights: random codes, scales near 2^-4 so activations stay O(1) */
    fill_bytes(w13p.host.data, (int64_t)w13p.bytes);
    fill_bytes(w2p.host.data, (int64_t)w2p.bytes);
    for (size_t i = 0; i < w13s.bytes; i++) {
        ((uint8_t*)w13s.host.data)[i] = (uint8_t)(120 + rand_int(4));
    }
    for (size_t i = 0; i < w2s.bytes; i++) {
        ((uint8_t*)w2s.host.data)[i] = (uint8_t)(120 + rand_int(4));
    }
    fill_float(b13.host.data, MXMOE_F32, c->E * n13, 0, 0.5);
    fill_float(b2.host.data, MXMOE_BF16, c->E * c->H, 0, 0.5);
    pair* inputs[] = {&x, &ids, &tw, &map, &w13p, &w13s, &w2p, &w2s, &b13, &b2};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        upload(inputs[i]);
    }
    mxmoe_moe_params p = mxmoe_moe_params_default();
    p.num_experts = (int32_t)c->E;
    p.act.activation = c->act;
    p.act.layout = c->layout;
    p.router_weight_on_input = c->weight_on_input;
    p.gemm_dtype = c->gemm_dtype;
    /* the activation's dtype follows the tokens' (F16 and F32 cases besides the default BF16:
     * the activation kernels' rounding, the decode form's rows as the projection's tokens) */
    p.act.act_dtype = c->x_dtype;
    mxmoe_moe_weights wh = {{w13p.host, w13s.host, MXMOE_SCALES_LINEAR},
                            {w2p.host, w2s.host, MXMOE_SCALES_LINEAR},
                            c->biases ? &b13.host : NULL,
                            c->biases ? &b2.host : NULL};
    mxmoe_moe_weights wd = {{w13p.dev, w13s.dev, MXMOE_SCALES_LINEAR},
                            {w2p.dev, w2s.dev, MXMOE_SCALES_LINEAR},
                            c->biases ? &b13.dev : NULL,
                            c->biases ? &b2.dev : NULL};
    size_t ws_cpu = 0, ws_gpu = 0;
    p.expert_map = c->with_map ? &map.host : NULL;
    MX_OK(g_cpu, mxmoe_moe_workspace_size(g_cpu, &p, c->T, (int32_t)c->k, c->H, c->I, &ws_cpu));
    void* work_cpu = malloc(ws_cpu);
    MX_OK(g_cpu, mxmoe_moe_forward(g_cpu, &x.host, &ids.host, &tw.host, &wh, &p, work_cpu, ws_cpu,
                                   &out.host));
    p.expert_map = c->with_map ? &map.dev : NULL;
    MX_OK(g_gpu, mxmoe_moe_workspace_size(g_gpu, &p, c->T, (int32_t)c->k, c->H, c->I, &ws_gpu));
    void* work_gpu;
    CUDA_OK(cudaMalloc(&work_gpu, ws_gpu));
    MX_OK(g_gpu,
          mxmoe_moe_forward(g_gpu, &x.dev, &ids.dev, &tw.dev, &wd, &p, work_gpu, ws_gpu, &out.dev));
    gpu_sync_ok("moe_forward");
    char what[200];
    snprintf(what, sizeof what,
             "moe_forward T=%lld E=%lld k=%lld H=%lld I=%lld act=%d layout=%d bias=%d "
             "w_in=%d map=%d drop=%d gemm_dtype=%d",
             (long long)c->T, (long long)c->E, (long long)c->k, (long long)c->H, (long long)c->I,
             (int)c->act, (int)c->layout, c->biases, c->weight_on_input, c->with_map, c->drop_ids,
             (int)c->gemm_dtype);
    if (exact) {
        expect_same(&out, what);
    } else { /* Hopper GEMMs: close to the exact layer, far inside the W4A4 error (~0.26) */
        double err = normalised_error(&out);
        char msg[300];
        snprintf(msg, sizeof msg, "%s [sm90]: normalised error vs CPU %.3e (limit 1e-2)", what,
                 err);
        printf("  %s\n", msg);
        check(err <= 1e-2, msg);
    }

    /* bitwise reproducible run to run */
    uint8_t* first = malloc(out.bytes);
    CUDA_OK(cudaMemcpy(first, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu,
          mxmoe_moe_forward(g_gpu, &x.dev, &ids.dev, &tw.dev, &wd, &p, work_gpu, ws_gpu, &out.dev));
    gpu_sync_ok("moe_forward again");
    uint8_t* second = malloc(out.bytes);
    CUDA_OK(cudaMemcpy(second, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    check(memcmp(first, second, out.bytes) == 0, "moe_forward is bitwise reproducible");

    /* prepared weights: the same bits (and kept prepared through the graph below) */
    MX_OK(g_gpu, mxmoe_weights_prepare(g_gpu, &wd.w13));
    MX_OK(g_gpu, mxmoe_weights_prepare(g_gpu, &wd.w2));
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu,
          mxmoe_moe_forward(g_gpu, &x.dev, &ids.dev, &tw.dev, &wd, &p, work_gpu, ws_gpu, &out.dev));
    gpu_sync_ok("moe_forward prepared");
    CUDA_OK(cudaMemcpy(second, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    check(memcmp(first, second, out.bytes) == 0,
          "moe_forward with prepared weights: bitwise the unprepared result");

    if (graph) { /* recorded (mxmoe_graph_*) and replayed: no allocation, no synchronisation */
        mxmoe_graph* g = NULL;
        MX_OK(g_gpu, mxmoe_graph_begin(g_gpu));
        mxmoe_status s = mxmoe_moe_forward(g_gpu, &x.dev, &ids.dev, &tw.dev, &wd, &p, work_gpu,
                                           ws_gpu, &out.dev);
        check(s == MXMOE_OK, "moe_forward records into a graph");
        MX_OK(g_gpu, mxmoe_graph_end(g_gpu, &g));
        for (int replay = 0; replay < 3; replay++) {
            CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
            MX_OK(g_gpu, mxmoe_graph_replay(g_gpu, g));
        }
        gpu_sync_ok("graph replay");
        uint8_t* replayed = malloc(out.bytes);
        CUDA_OK(cudaMemcpy(replayed, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
        check(memcmp(first, replayed, out.bytes) == 0, "graph replay matches the direct run");
        free(replayed);
        mxmoe_graph_free(g_gpu, g);
    }
    MX_OK(g_gpu, mxmoe_weights_unprepare(g_gpu, &wd.w13));
    MX_OK(g_gpu, mxmoe_weights_unprepare(g_gpu, &wd.w2));

    /* the codes repacked in place: the same bits on every kernel (the forced one reads them) */
    repack_weights(&wd.w13, "moe_forward w13");
    repack_weights(&wd.w2, "moe_forward w2");
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu,
          mxmoe_moe_forward(g_gpu, &x.dev, &ids.dev, &tw.dev, &wd, &p, work_gpu, ws_gpu, &out.dev));
    gpu_sync_ok("moe_forward repacked");
    CUDA_OK(cudaMemcpy(second, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    char repacked_msg[160];
    snprintf(repacked_msg, sizeof repacked_msg,
             "moe_forward [%s] with repacked weights: bitwise the canonical result", g_gemm_kernel);
    check(memcmp(first, second, out.bytes) == 0, repacked_msg);
    unpack_weights(&wd.w13, &w13p, "moe_forward w13");
    unpack_weights(&wd.w2, &w2p, "moe_forward w2");
    free(first);
    free(second);
    free(work_cpu);
    cudaFree(work_gpu);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        free_pair(inputs[i]);
    }
    free_pair(&out);
}

/* The grouped projection as the benchmark runs it (plan, permute + quantize, grouped GEMM with
 * no workspace: the Hopper path's scratch comes from the stream-ordered pool), recorded once
 * and replayed: bit for bit the direct run, on the data its buffers hold at each replay. Then
 * what may not be recorded: it fails, and so does the recording, leaving the context usable. */
static void test_graph_grouped(int64_t T, int64_t k, int64_t E, int64_t N, int64_t K) {
    pair x = pair2(MXMOE_BF16, T, K), ids = pair2(MXMOE_I32, T, k);
    for (int64_t i = 0; i < T * k; i++) {
        ((int32_t*)ids.host.data)[i] = rand_int(9) == 0 ? -1 : (int32_t)rand_int(E);
    }
    upload(&ids);
    pair counts = pair1(MXMOE_I32, E), off = pair1(MXMOE_I32, E + 1);
    pair sorted = pair1(MXMOE_I32, T * k), row_of = pair1(MXMOE_I32, T * k);
    pair ap = pair2(MXMOE_U8, T * k, K / 2), as = pair2(MXMOE_U8, T * k, K / 32);
    pair wp = pair3(MXMOE_U8, E, N, K / 2), ws = pair3(MXMOE_U8, E, N, K / 32);
    pair out = pair2(MXMOE_BF16, T * k, N);
    random_mx(&wp, &ws, 0);
    mxmoe_mx_tensor a = {ap.dev, as.dev, MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w = {wp.dev, ws.dev, MXMOE_SCALES_LINEAR};
    uint8_t *direct = malloc(out.bytes), *replayed = malloc(out.bytes);
    char what[160];
    mxmoe_graph* g = NULL;
#define GROUPED_OP(st)                                                                             \
    do {                                                                                           \
        st = mxmoe_plan(g_gpu, &ids.dev, NULL, (int32_t)E, &counts.dev, &off.dev, &sorted.dev,     \
                        &row_of.dev);                                                              \
        if (st == MXMOE_OK) {                                                                      \
            st = mxmoe_permute_quantize(g_gpu, &x.dev, &sorted.dev, &off.dev, (int32_t)k,          \
                                        MXMOE_RULE_EVEN, &a);                                      \
        }                                                                                          \
        if (st == MXMOE_OK) {                                                                      \
            st = mxmoe_grouped_gemm(g_gpu, &a, &w, &off.dev, NULL, &out.dev);                      \
        }                                                                                          \
    } while (0)
    mxmoe_status st;
    MX_OK(g_gpu, mxmoe_graph_begin(g_gpu));
    GROUPED_OP(st);
    check(st == MXMOE_OK, "the grouped projection records into a graph");
    MX_OK(g_gpu, mxmoe_graph_end(g_gpu, &g));
    for (int round = 0; round < 2; round++) { /* fresh activations: a replay reads them */
        fill_float(x.host.data, MXMOE_BF16, T * K, 0, 1.0);
        upload(&x);
        CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
        GROUPED_OP(st);
        check(st == MXMOE_OK, "the grouped projection runs directly");
        gpu_sync_ok("grouped projection");
        CUDA_OK(cudaMemcpy(direct, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
        CUDA_OK(cudaMemset(ap.dev.data, 0xA5, ap.bytes));
        MX_OK(g_gpu, mxmoe_graph_replay(g_gpu, g));
        gpu_sync_ok("grouped projection replay");
        CUDA_OK(cudaMemcpy(replayed, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
        snprintf(what, sizeof what,
                 "grouped projection T=%lld k=%lld E=%lld N=%lld K=%lld: replay %d matches the "
                 "direct run",
                 (long long)T, (long long)k, (long long)E, (long long)N, (long long)K, round);
        check(memcmp(direct, replayed, out.bytes) == 0, what);
    }
    mxmoe_graph_free(g_gpu, g);

    /* misuse while recording: each call fails, the recording builds nothing, the context works */
    MX_OK(g_gpu, mxmoe_graph_begin(g_gpu));
    check(mxmoe_graph_begin(g_gpu) == MXMOE_ERR_INVALID_ARGUMENT, "graph_begin twice fails");
    check(mxmoe_ctx_synchronize(g_gpu) == MXMOE_ERR_INVALID_ARGUMENT,
          "synchronize while recording fails");
    check(mxmoe_memcpy(g_gpu, direct, out.dev.data, 16, MXMOE_COPY_BACKEND_TO_HOST) ==
              MXMOE_ERR_INVALID_ARGUMENT,
          "memcpy while recording fails");
    GROUPED_OP(st);
    g = (mxmoe_graph*)&g; /* must come back NULL */
    st = mxmoe_graph_end(g_gpu, &g);
    check(st == MXMOE_ERR_INVALID_ARGUMENT && g == NULL,
          "a recording with a failed call builds no graph and reports the failure");
    check(strstr(mxmoe_ctx_last_error(g_gpu), "already recording") != NULL,
          "graph_end names the first failed call");
    check(mxmoe_graph_end(g_gpu, &g) == MXMOE_ERR_INVALID_ARGUMENT && g == NULL,
          "graph_end without graph_begin fails");
    check(mxmoe_graph_replay(g_gpu, NULL) == MXMOE_ERR_INVALID_ARGUMENT, "replay of NULL fails");
    mxmoe_graph_free(g_gpu, NULL);
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    GROUPED_OP(st);
    check(st == MXMOE_OK, "the context runs directly after a failed recording");
    gpu_sync_ok("grouped projection after a failed recording");
    CUDA_OK(cudaMemcpy(replayed, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    check(memcmp(direct, replayed, out.bytes) == 0,
          "after a failed recording the direct run gives the same bits");
#undef GROUPED_OP
    free(direct);
    free(replayed);
    free_pair(&x), free_pair(&ids), free_pair(&counts), free_pair(&off), free_pair(&sorted),
        free_pair(&row_of), free_pair(&ap), free_pair(&as), free_pair(&wp), free_pair(&ws),
        free_pair(&out);
}

/* mxmoe_grouped_projection (tokens + ids in, a row per pair out). Exact kernels: bit for bit
 * against the CPU projection, dropped pairs' rows still poisoned. The Hopper path (not exact):
 * bit for bit against the GPU's own plan + permute_quantize + grouped_gemm, rows put in pair
 * order here (the same kernel on the same operands), which checks the GEMM's pair-row stores.
 * Then the call recorded into a graph and replayed on fresh activations, bit for bit. */
static int g_x_skew; /* bytes the projection's device tokens start past an aligned address */

/* In about half of the T rows of K values (F32 or BF16), a third of the 32-element blocks scaled
 * by 2^-15 .. 2^-19 (exact): their 128-K chunks then lie off the token's reference (more than
 * 14 binades below its largest block), so a tile holds tokens on and off their references. */
static void spread_blocks(void* x, mxmoe_dtype dtype, int64_t T, int64_t K) {
    for (int64_t t = 0; t < T; t++) {
        if (rand_int(2)) {
            continue;
        }
        for (int64_t b = 0; b < K / 32; b++) {
            if (rand_int(3)) {
                continue;
            }
            const int shift = 15 + (int)rand_int(5);
            for (int64_t i = t * K + 32 * b; i < t * K + 32 * b + 32; i++) {
                if (dtype == MXMOE_F32) {
                    ((float*)x)[i] = ldexpf(((float*)x)[i], -shift);
                } else { /* BF16: FP32's exponent range, so the scaling stays exact */
                    uint16_t* h = (uint16_t*)x + i;
                    uint32_t u = (uint32_t)*h << 16;
                    float v;
                    memcpy(&v, &u, 4);
                    v = ldexpf(v, -shift);
                    memcpy(&u, &v, 4);
                    *h = (uint16_t)(u >> 16);
                }
            }
        }
    }
}

static void test_projection(int64_t T, int64_t k, int64_t E, int64_t N, int64_t K,
                            mxmoe_dtype x_dtype, mxmoe_dtype out_dtype, int with_map, int with_bias,
                            int specials, int exact) {
    const int64_t P = T * k, E_global = with_map ? E + 2 : E;
    pair x = pair2(x_dtype, T, K), ids = pair2(MXMOE_I32, T, k), map = pair1(MXMOE_I32, E_global);
    void* x_base = x.dev.data;
    if (g_x_skew != 0) {
        CUDA_OK(cudaFree(x_base));
        CUDA_OK(cudaMalloc(&x_base, x.bytes + 16));
        x.dev.data = (uint8_t*)x_base + g_x_skew;
    }
    for (int64_t g = 0; g < E_global; g++) {
        ((int32_t*)map.host.data)[g] = g < E ? (int32_t)(E - 1 - g) : -1;
    }
    for (int64_t i = 0; i < P; i++) { /* duplicates within a token allowed; some dropped */
        ((int32_t*)ids.host.data)[i] = rand_int(9) == 0 ? -1 : (int32_t)rand_int(E_global);
    }
    fill_float(x.host.data, x_dtype, T * K, specials == 1, 4.0);
    if (specials == 2) { /* half the tokens with whole blocks 15-19 binades down (exact) */
        spread_blocks(x.host.data, x_dtype, T, K);
    }
    upload(&x), upload(&ids), upload(&map);
    pair wp = pair3(MXMOE_U8, E, N, K / 2), ws = pair3(MXMOE_U8, E, N, K / 32);
    random_mx(&wp, &ws, specials == 1);
    pair bias = pair2(MXMOE_BF16, E, N), out = pair2(out_dtype, P, N);
    fill_float(bias.host.data, MXMOE_BF16, E * N, 0, 1.0);
    upload(&bias);
    mxmoe_mx_tensor w_h = {wp.host, ws.host, MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w_d = {wp.dev, ws.dev, MXMOE_SCALES_LINEAR};
    const mxmoe_tensor* map_h = with_map ? &map.host : NULL;
    const mxmoe_tensor* map_d = with_map ? &map.dev : NULL;
    const mxmoe_tensor* bias_d = with_bias ? &bias.dev : NULL;
    char what[200];
    snprintf(what, sizeof what,
             "grouped_projection %s T=%lld k=%lld E=%lld N=%lld K=%lld x=%s out=%s map=%d bias=%d "
             "specials=%d skew=%d",
             g_gemm_kernel, (long long)T, (long long)k, (long long)E, (long long)N, (long long)K,
             mxmoe_dtype_name(x_dtype), mxmoe_dtype_name(out_dtype), with_map, with_bias, specials,
             g_x_skew);
    MX_OK(g_gpu, mxmoe_grouped_projection(g_gpu, &x.dev, &ids.dev, map_d, &w_d, bias_d,
                                          MXMOE_RULE_EVEN, &out.dev));
    gpu_sync_ok(what);
    if (exact) {
        MX_OK(g_cpu,
              mxmoe_grouped_projection(g_cpu, &x.host, &ids.host, map_h, &w_h,
                                       with_bias ? &bias.host : NULL, MXMOE_RULE_EVEN, &out.host));
    } else { /* the GPU's composition, rows scattered to their pairs on the host */
        pair counts = pair1(MXMOE_I32, E), off = pair1(MXMOE_I32, E + 1);
        pair sorted = pair1(MXMOE_I32, P), row_of = pair1(MXMOE_I32, P);
        pair ap = pair2(MXMOE_U8, P, K / 2), as = pair2(MXMOE_U8, P, K / 32);
        pair grouped = pair2(out_dtype, P, N);
        mxmoe_mx_tensor a = {ap.dev, as.dev, MXMOE_SCALES_LINEAR};
        MX_OK(g_gpu, mxmoe_plan(g_gpu, &ids.dev, map_d, (int32_t)E, &counts.dev, &off.dev,
                                &sorted.dev, &row_of.dev));
        MX_OK(g_gpu, mxmoe_permute_quantize(g_gpu, &x.dev, &sorted.dev, &off.dev, (int32_t)k,
                                            MXMOE_RULE_EVEN, &a));
        MX_OK(g_gpu, mxmoe_grouped_gemm(g_gpu, &a, &w_d, &off.dev, bias_d, &grouped.dev));
        gpu_sync_ok(what);
        CUDA_OK(
            cudaMemcpy(grouped.host.data, grouped.dev.data, grouped.bytes, cudaMemcpyDeviceToHost));
        CUDA_OK(
            cudaMemcpy(sorted.host.data, sorted.dev.data, sorted.bytes, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(off.host.data, off.dev.data, off.bytes, cudaMemcpyDeviceToHost));
        const size_t row = (size_t)N * mxmoe_dtype_size(out_dtype);
        for (int32_t r = 0; r < ((int32_t*)off.host.data)[E]; r++) {
            memcpy((uint8_t*)out.host.data + (size_t)((int32_t*)sorted.host.data)[r] * row,
                   (uint8_t*)grouped.host.data + (size_t)r * row, row);
        }
        free_pair(&counts), free_pair(&off), free_pair(&sorted), free_pair(&row_of), free_pair(&ap),
            free_pair(&as), free_pair(&grouped);
    }
    int64_t n = diff_values(&out);
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %lld of %lld differ from the %s", what, (long long)n,
             (long long)mxmoe_tensor_numel(&out.host),
             exact ? "CPU projection" : "GPU's plan + permute_quantize + grouped_gemm");
    check(n == 0, msg);

    /* recorded, replayed on fresh activations: the same bits as a direct call */
    mxmoe_graph* graph = NULL;
    MX_OK(g_gpu, mxmoe_graph_begin(g_gpu));
    mxmoe_status st = mxmoe_grouped_projection(g_gpu, &x.dev, &ids.dev, map_d, &w_d, bias_d,
                                               MXMOE_RULE_EVEN, &out.dev);
    MX_OK(g_gpu, mxmoe_graph_end(g_gpu, &graph));
    check(st == MXMOE_OK, "the grouped projection records");
    fill_float(x.host.data, x_dtype, T * K, specials, 4.0);
    upload(&x);
    uint8_t* direct = malloc(out.bytes);
    MX_OK(g_gpu, mxmoe_grouped_projection(g_gpu, &x.dev, &ids.dev, map_d, &w_d, bias_d,
                                          MXMOE_RULE_EVEN, &out.dev));
    gpu_sync_ok(what);
    CUDA_OK(cudaMemcpy(direct, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu, mxmoe_graph_replay(g_gpu, graph));
    gpu_sync_ok(what);
    CUDA_OK(cudaMemcpy(out.host.data, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    snprintf(msg, sizeof msg, "%s: a replay gives the direct call's bits", what);
    check(memcmp(direct, out.host.data, out.bytes) == 0, msg);
    mxmoe_graph_free(g_gpu, graph);
    /* the codes repacked in place: the same bits */
    repack_weights(&w_d, what);
    CUDA_OK(cudaMemset(out.dev.data, 0xA5, out.bytes));
    MX_OK(g_gpu, mxmoe_grouped_projection(g_gpu, &x.dev, &ids.dev, map_d, &w_d, bias_d,
                                          MXMOE_RULE_EVEN, &out.dev));
    gpu_sync_ok(what);
    CUDA_OK(cudaMemcpy(out.host.data, out.dev.data, out.bytes, cudaMemcpyDeviceToHost));
    snprintf(msg, sizeof msg, "%s: with repacked weights, the canonical bits", what);
    check(memcmp(direct, out.host.data, out.bytes) == 0, msg);
    unpack_weights(&w_d, &wp, what);
    free(direct);
    x.dev.data = x_base;
    free_pair(&x), free_pair(&ids), free_pair(&map), free_pair(&wp), free_pair(&ws),
        free_pair(&bias), free_pair(&out);
}

/* Bad ids and map entries in a projection: found on the device, reported by synchronize, their
 * pairs dropped (rows untouched) and every other pair computed, on both of its paths. */
static void test_projection_errors(int64_t T) {
    const int64_t k = 2, E = 3, N = 40, K = 64, P = T * k;
    pair x = pair2(MXMOE_F32, T, K), ids = pair2(MXMOE_I32, T, k), map = pair1(MXMOE_I32, 4);
    pair wp = pair3(MXMOE_U8, E, N, K / 2), ws = pair3(MXMOE_U8, E, N, K / 32);
    pair out = pair2(MXMOE_F32, P, N);
    fill_float(x.host.data, MXMOE_F32, T * K, 0, 1.0);
    random_mx(&wp, &ws, 0);
    int32_t* id = ids.host.data;
    for (int64_t i = 0; i < P; i++) {
        id[i] = (int32_t)(i % 3);
    }
    id[1] = 7, id[2] = -5;       /* out of [-1, 4) */
    int32_t m[4] = {2, 1, 0, 9}; /* id 3 maps out of [-1, 3) */
    id[3] = 3;
    memcpy(map.host.data, m, sizeof m);
    upload(&x), upload(&ids), upload(&map);
    mxmoe_mx_tensor w_h = {wp.host, ws.host, MXMOE_SCALES_LINEAR};
    mxmoe_mx_tensor w_d = {wp.dev, ws.dev, MXMOE_SCALES_LINEAR};
    MX_OK(g_gpu, mxmoe_grouped_projection(g_gpu, &x.dev, &ids.dev, &map.dev, &w_d, NULL,
                                          MXMOE_RULE_EVEN, &out.dev));
    mxmoe_status s = mxmoe_ctx_synchronize(g_gpu);
    char msg[160];
    snprintf(msg, sizeof msg, "projection T=%lld: bad ids and map entries reported", (long long)T);
    check(s == MXMOE_ERR_OUT_OF_RANGE, msg);
    check(mxmoe_ctx_synchronize(g_gpu) == MXMOE_OK, "the error is cleared once reported");
    /* the expected rows: the valid pairs alone, on the CPU (which refuses any bad map entry) */
    id[1] = id[2] = id[3] = -1;
    ((int32_t*)map.host.data)[3] = -1;
    MX_OK(g_cpu, mxmoe_grouped_projection(g_cpu, &x.host, &ids.host, &map.host, &w_h, NULL,
                                          MXMOE_RULE_EVEN, &out.host));
    int64_t n = diff_values(&out);
    snprintf(msg, sizeof msg,
             "projection T=%lld: valid pairs computed, bad ones untouched (%lld differ)",
             (long long)T, (long long)n);
    check(n == 0, msg);
    free_pair(&x), free_pair(&ids), free_pair(&map), free_pair(&wp), free_pair(&ws),
        free_pair(&out);
}

/* Bad ids on the device: dropped, never followed, and reported by synchronize. */
static void test_device_errors(void) {
    int64_t T = 4, k = 2, E = 3;
    pair ids = pair2(MXMOE_I32, T, k);
    int32_t bad[8] = {0, 1, 7, -5, 2, 1000000, 1, -1};
    memcpy(ids.host.data, bad, sizeof bad);
    upload(&ids);
    pair counts = pair1(MXMOE_I32, E), offsets = pair1(MXMOE_I32, E + 1);
    pair sorted = pair1(MXMOE_I32, T * k), row_of = pair1(MXMOE_I32, T * k);
    MX_OK(g_gpu, mxmoe_plan(g_gpu, &ids.dev, NULL, (int32_t)E, &counts.dev, &offsets.dev,
                            &sorted.dev, &row_of.dev));
    mxmoe_status s = mxmoe_ctx_synchronize(g_gpu);
    check(s == MXMOE_ERR_OUT_OF_RANGE, "out-of-range ids are reported by synchronize");
    check(strstr(mxmoe_ctx_last_error(g_gpu), "expert id") != NULL, "the message names the ids");
    int32_t got[4];
    CUDA_OK(cudaMemcpy(got, offsets.dev.data, sizeof got, cudaMemcpyDeviceToHost));
    check(got[3] == 4, "the 4 valid pairs are planned, the bad ones dropped");
    check(mxmoe_ctx_synchronize(g_gpu) == MXMOE_OK, "the error is cleared once reported");
    free_pair(&ids), free_pair(&counts), free_pair(&offsets), free_pair(&sorted),
        free_pair(&row_of);
}

/* ------------------------------------------------------------------------------------------ */

/* --bound-stress: the Hopper cases whose tokens all sum 256-K spans in one wgmma chain (tiles
 * of up to 64 tokens, and 160-token tiles holding at most 80 rows an expert), at K = 512 (two
 * spans: least averaging) with blocks 14 and 40 binades apart, and over long K. */
static int bound_stress(int rounds) {
    if (!g_sm90) {
        printf("bound stress: skipped (no compute capability 9.0 GPU)\n");
        return 0;
    }
    force_gemm("sm90");
    for (int i = 0; i < rounds; i++) {
        test_gemm_sm90(333, 7, 200, 512, 0, 0, MXMOE_F32, 14);
        test_gemm_sm90(333, 7, 200, 512, 1, 1, MXMOE_F32, 40);
        test_gemm_sm90(40, 3, 200, 512, 0, 1, MXMOE_F32, 14);
        test_gemm_sm90(60, 4, 128, 7168, 0, 1, MXMOE_F32, 14);
        test_gemm_sm90_low_chunks(60, 3, 200, 2880, 100, 0);
    }
    printf("Hopper path: largest sums error / (2^-13 sum|a w|) = %.3f (bound: 8)\n", g_sm90_worst);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed != 0;
}

int main(int argc, char** argv) {
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    int stress = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) {
            g_small = 1;
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--bound-stress") == 0 && i + 1 < argc) {
            stress = atoi(argv[++i]);
        }
    }
    g_rng = seed ? seed : 88172645463325252ull;
    printf("test_cuda: seed %llu%s\n", (unsigned long long)seed, g_small ? " (small)" : "");

    mxmoe_ctx_params cp = mxmoe_ctx_params_default();
    cp.backend = MXMOE_BACKEND_CPU;
    MX_OK(NULL, mxmoe_ctx_init(&g_cpu, &cp));
    cp.backend = MXMOE_BACKEND_CUDA;
    MX_OK(NULL, mxmoe_ctx_init(&g_gpu, &cp));
    printf("device: %s\n", mxmoe_ctx_backend_detail(g_gpu));
    int cc_major = 0, cc_minor = 0;
    CUDA_OK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, 0));
    CUDA_OK(cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, 0));
    g_sm90 = cc_major == 9 && cc_minor == 0;
    if (stress > 0) {
        const int rc = bound_stress(stress);
        mxmoe_ctx_free(g_gpu);
        mxmoe_ctx_free(g_cpu);
        return rc;
    }

    int64_t big = g_small ? 64 : 1000;
    const int64_t ks[] = {32, 96, 160, 2880};
    for (int i = 0; i < 4; i++) {
        if (g_small && ks[i] > 160) {
            continue;
        }
        test_quantize(i == 3 ? 37 : big, ks[i], (mxmoe_dtype)(i % 3));
    }
    test_quantize(3, 64, MXMOE_F16);
    if (!g_small) { /* enough blocks for the thread-per-block kernel (and its BF16 vector loads) */
        test_quantize(2400, 2880, MXMOE_BF16);
        test_quantize(2400, 2880, MXMOE_F16);
    }
    for (int swz = 0; swz < 2; swz++) {
        test_experts_quantize(g_small ? 50 : 700, 6, 96, swz);
        test_experts_quantize(1, 3, 32, swz);
    }
    for (int swz = 0; swz < 2; swz++) {
        test_permute_quantize(g_small ? 20 : 512, 4, 32, 2880, swz);
        test_permute_quantize(1, 8, 8, 32, swz);
        /* > 4096 pairs: tokens quantized once, rows copied to their pairs (linear scales) */
        test_permute_quantize(g_small ? 700 : 3000, 8, 64, 512, swz);
        test_permute_quantize(g_small ? 600 : 2100, 4, 32, 2880, swz);
    }
    for (int act = 0; act < MXMOE_ACTIVATION_COUNT; act++) {
        for (int layout = 0; layout < 2; layout++) {
            test_act(g_small ? 40 : 300, 96, (mxmoe_activation)act, (mxmoe_gate_up_layout)layout,
                     layout ? MXMOE_F16 : MXMOE_BF16, 1, layout, MXMOE_F32, 0);
            /* eight elements a lane: FP32 h (the vector kernel; to BF16 through the FP32 form of
             * core/activation_fp32.h where the activation has one, specials taking its FP64
             * fallback; to F32 or F16 in FP64 only), BF16 h (the same kernel, 8-byte loads),
             * F16 h (the generic kernel, four a lane) */
            test_act(g_small ? 600 : 1500, 256, (mxmoe_activation)act, (mxmoe_gate_up_layout)layout,
                     MXMOE_BF16, layout, 0, MXMOE_F32, 1);
            test_act(g_small ? 600 : 1500, 256, (mxmoe_activation)act, (mxmoe_gate_up_layout)layout,
                     MXMOE_BF16, !layout, layout, MXMOE_F32, 0);
            test_act(g_small ? 600 : 1500, 256, (mxmoe_activation)act, (mxmoe_gate_up_layout)layout,
                     layout ? MXMOE_F32 : MXMOE_F16, layout, !layout, MXMOE_F32, 1);
            test_act(g_small ? 600 : 1500, 256, (mxmoe_activation)act, (mxmoe_gate_up_layout)layout,
                     MXMOE_BF16, !layout, layout, MXMOE_BF16, 1);
        }
        test_act(g_small ? 9 : 130, 64, (mxmoe_activation)act, MXMOE_GATE_UP_CONCAT, MXMOE_F32, 0,
                 1, MXMOE_F32, 0);
    }
    /* several blocks a lane (over 1024 blocks an SM: 135168 on 132 SMs), 7 blocks a row so that
     * the pass's stride wraps the block index at every row count: BF16 h, SiLU and SwiGLU */
    if (!g_small) {
        test_act(40000, 224, MXMOE_ACT_SILU_MUL, MXMOE_GATE_UP_CONCAT, MXMOE_BF16, 1, 0, MXMOE_BF16,
                 1);
        test_act(40000, 224, MXMOE_ACT_SWIGLU_OAI, MXMOE_GATE_UP_INTERLEAVED, MXMOE_BF16, 0, 0,
                 MXMOE_F32, 0);
    }
    test_route(g_small ? 8 : 500, 32, MXMOE_ROUTE_SOFTMAX_TOPK, 4, 1, 1, 0);
    test_route(g_small ? 8 : 500, 32, MXMOE_ROUTE_TOPK_SOFTMAX, 4, 1, 1, 1);
    test_route(g_small ? 8 : 500, 256, MXMOE_ROUTE_SIGMOID_GROUPED, 8, 8, 4, 0);
    test_route(g_small ? 8 : 200, 8, MXMOE_ROUTE_SOFTMAX_TOPK, 8, 1, 1, 1);
    test_route(g_small ? 8 : 200, 16, MXMOE_ROUTE_SIGMOID_GROUPED, 1, 4, 2, 1);
    test_plan(g_small ? 33 : 8192, 8, 128, 0);
    test_plan(g_small ? 33 : 4096, 4, 32, 1);
    test_plan(1, 1, 1, 0);
    /* one warp (<= 32 pairs): decode shapes, a map, more experts than lanes and than the
     * wide plan takes, exactly 32 pairs */
    test_plan(1, 8, 256, 0);
    test_plan(1, 4, 32, 1);
    test_plan(4, 8, 128, 0);
    test_plan(3, 7, 1000, 1);
    test_plan(5, 6, 2000, 0);
    /* the wide plan (<= 4096 pairs, a block per 128): one block, several with a ragged last
     * one and a map, exactly 4096 pairs, the most experts it takes */
    test_plan(g_small ? 20 : 500, 8, 128, 1);
    test_plan(g_small ? 37 : 512, g_small ? 3 : 8, g_small ? 7 : 128, 0);
    test_plan(11, 10, 64, 0);
    test_plan(301, 7, 48, 1);
    test_plan(1024, 4, 32, 0);
    test_plan(g_small ? 20 : 512, 8, 1000, 0);
    test_plan(g_small ? 100 : 512, 8, 1024, 1);
    test_plan(1, 33, 64, 0);                      /* 33 pairs: the smallest the wide plan takes */
    test_plan(g_small ? 1100 : 5000, 6, 1000, 1); /* tiled plan: ragged last tile, a map */
    test_plan(g_small ? 700 : 3000, 4, 2000, 0);  /* more experts than the tiled plan takes */
    moe_case cases[] = {
        {1, 4, 1, 64, 32, MXMOE_ACT_SILU_MUL, MXMOE_GATE_UP_CONCAT, 0, 0, 0, 0, MXMOE_BF16,
         MXMOE_BF16, MXMOE_F32},
        {5, 6, 6, 96, 64, MXMOE_ACT_SWIGLU_OAI, MXMOE_GATE_UP_INTERLEAVED, 1, 0, 0, 1, MXMOE_BF16,
         MXMOE_F32, MXMOE_F32},
        {17, 8, 2, 160, 96, MXMOE_ACT_GELU_TANH_MUL, MXMOE_GATE_UP_CONCAT, 1, 1, 1, 1, MXMOE_F32,
         MXMOE_F16, MXMOE_F32},
        {9, 4, 2, 64, 64, MXMOE_ACT_RELU2, MXMOE_GATE_UP_CONCAT, 1, 0, 0, 0, MXMOE_F16, MXMOE_BF16,
         MXMOE_F32},
        /* small: 6000 activation blocks, past act_quantize's one-element-a-lane size */
        {g_small ? 1500 : 8192, 16, 2, 128, 64, MXMOE_ACT_SILU_MUL, MXMOE_GATE_UP_CONCAT, 0, 0, 0,
         1, MXMOE_BF16, MXMOE_BF16, MXMOE_F32},
        {g_small ? 3 : 8, 32, 4, g_small ? 96 : 2880, g_small ? 64 : 2880, MXMOE_ACT_SWIGLU_OAI,
         MXMOE_GATE_UP_INTERLEAVED, 1, 0, 0, 0, MXMOE_BF16, MXMOE_BF16, MXMOE_F32},
        /* the GEMMs' results kept in BF16 (gemm_dtype): the activation kernel's BF16 loads
         * (gate || up and interleaved, past the one-pass size) and the BF16 reduction */
        {g_small ? 1500 : 8192, 16, 2, 128, 64, MXMOE_ACT_SILU_MUL, MXMOE_GATE_UP_CONCAT, 1, 0, 0,
         1, MXMOE_BF16, MXMOE_BF16, MXMOE_BF16},
        {g_small ? 1500 : 4096, 8, 2, 96, 64, MXMOE_ACT_SWIGLU_OAI, MXMOE_GATE_UP_INTERLEAVED, 1, 1,
         1, 0, MXMOE_F32, MXMOE_F32, MXMOE_BF16},
        {3, 6, 6, 96, 64, MXMOE_ACT_GELU_TANH_MUL, MXMOE_GATE_UP_CONCAT, 0, 0, 0, 1, MXMOE_BF16,
         MXMOE_F16, MXMOE_BF16},
        /* the decode form (no plan: both GEMMs in one launch) with a map and dropped pairs */
        {4, 16, 4, 128, 96, MXMOE_ACT_SILU_MUL, MXMOE_GATE_UP_CONCAT, 1, 0, 1, 1, MXMOE_F32,
         MXMOE_BF16, MXMOE_BF16},
        /* the activations without the multiply (FP32 form, the FP64 one; I % 128 != 0) */
        {g_small ? 300 : 2000, 8, 2, 96, 96, MXMOE_ACT_SILU, MXMOE_GATE_UP_CONCAT, 1, 0, 0, 1,
         MXMOE_BF16, MXMOE_BF16, MXMOE_BF16},
        {6, 4, 3, 64, 160, MXMOE_ACT_GELU_TANH, MXMOE_GATE_UP_CONCAT, 0, 0, 0, 0, MXMOE_F16,
         MXMOE_F32, MXMOE_F32},
    };
    /* Both exact GEMM kernels, bit for bit: generic tiles, and the few-tokens kernel (forced at
     * every size: groups of 32 tokens, partial row tiles, K tails, the slow scale path). */
    const char* exact_kernels[] = {"generic", "skinny"};
    for (int kernel = 0; kernel < 2; kernel++) {
        force_gemm(exact_kernels[kernel]);
        printf("exact GEMM kernel: %s\n", g_gemm_kernel);
        test_gemm(g_small ? 70 : 600, 5, 96, 160, 0, 0, 1, MXMOE_F32, 0);
        test_gemm(g_small ? 70 : 600, 5, 130, 96, 1, 1, 0, MXMOE_BF16, 0);
        test_gemm(1, 3, 64, 32, 0, 1, 1, MXMOE_F16, 0);
        test_gemm(g_small ? 40 : 333, 7, 200, 544, 0, 1, 1, MXMOE_F32, 1);
        test_gemm(g_small ? 9 : 77, 256, 72, 2880, 0, 0, 0, MXMOE_BF16, 1);
        if (!g_small) {
            test_gemm(300, 4, 2880, 2880, 0, 0, 1, MXMOE_F32, 0);
            test_gemm(5, 32, 2880, 2880, 0, 1, 1, MXMOE_BF16, 0);
            test_gemm(2000, 3, 64, 7168, 0, 0, 0, MXMOE_F32, 1);
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            test_moe(&cases[i], i == 1 || i == 5, 1);
        }
        /* skinny: one launch up to 256 pairs, the composition past it; generic: composed */
        test_projection(1, 8, 128, 768, 2048, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 1);
        test_projection(8, 4, 32, 200, 2880, MXMOE_F32, MXMOE_F32, 1, 1, 1, 1);
        test_projection(3, 5, 5, 64, 32, MXMOE_F16, MXMOE_F32, 0, 1, 0, 1);     /* repeats */
        test_projection(40, 6, 8, 72, 160, MXMOE_BF16, MXMOE_BF16, 1, 0, 1, 1); /* 240 pairs */
        test_projection(g_small ? 50 : 300, 8, 64, 96, 256, MXMOE_BF16, MXMOE_F32, 0, 1, 0, 1);
        /* one token (a decode step: the one-token paths) with NaN/Inf blocks (the slow path),
         * K tails, repeated experts within the token */
        test_projection(1, 4, 32, 200, 2880, MXMOE_F32, MXMOE_F32, 1, 1, 1, 1);
        test_projection(1, 8, 16, 96, 160, MXMOE_BF16, MXMOE_BF16, 0, 1, 0, 1);
        test_projection(1, 8, 3, 72, 544, MXMOE_BF16, MXMOE_F32, 0, 0, 1, 1);
        /* two lanes a token block (slabs of up to 64 blocks), F32 and F16 tokens */
        test_projection(1, 4, 32, 200, 1024, MXMOE_F32, MXMOE_F32, 1, 1, 1, 1);
        test_projection(2, 4, 5, 136, 512, MXMOE_F16, MXMOE_BF16, 0, 1, 1, 1);
        test_projection_errors(2);   /* few pairs */
        test_projection_errors(300); /* many */
    }
    /* the library's own choice (on an H100: the one-launch kernel at decode sizes), then the
     * composition at the same sizes */
    for (int composed = 0; composed < 2; composed++) {
        if (composed) {
            setenv("MXMOE_CUDA_PROJECTION", "composed", 1);
        }
        test_projection(1, 8, 256, 2048, 7168, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 1);
        test_projection(8, 8, 128, 768, 2048, MXMOE_BF16, MXMOE_BF16, 1, 0, 0, 1);
        test_projection_errors(2);
        /* the layer likewise: its decode form, then the plan and the quantizer */
        test_moe(&cases[1], 0, 1);
        test_moe(&cases[8], 1, 1);
        test_moe(&cases[9], 0, 1);
        unsetenv("MXMOE_CUDA_PROJECTION");
    }
    if (g_sm90) {
        printf("Hopper path (sm_90a FP8 GEMM):\n");
        force_gemm("sm90");
        test_gemm_sm90(g_small ? 70 : 600, 5, 96, 160, 0, 1, MXMOE_F32, 0);
        test_gemm_sm90(g_small ? 70 : 600, 5, 130, 96, 1, 0, MXMOE_BF16, 0);
        test_gemm_sm90(1, 3, 64, 32, 0, 1, MXMOE_F16, 0);
        test_gemm_sm90(g_small ? 40 : 333, 7, 200, 512, 0, 0, MXMOE_F32, 14); /* exact spread */
        test_gemm_sm90(g_small ? 40 : 333, 7, 200, 512, 1, 1, MXMOE_F32, 40); /* rounded blocks */
        test_gemm_sm90(g_small ? 9 : 40, 256, 256, 256, 0, 1, MXMOE_F32, 0);  /* many experts */
        /* tokens with a chunk > 100 binades below their largest: absolute factors (v10b) */
        test_gemm_sm90(g_small ? 70 : 600, 5, 200, 512, 1, 1, MXMOE_F32, 120);
        /* ... at the narrow tiles with BF16 results, no K-split: the lean kernels' out-of-line
         * promotion (16-, 32- and 48-token tiles) */
        test_gemm_sm90(30, 5, 200, 512, 1, 1, MXMOE_BF16, 120);
        test_gemm_sm90(70, 5, 200, 512, 0, 1, MXMOE_BF16, 120);
        test_gemm_sm90(150, 5, 200, 512, 1, 0, MXMOE_BF16, 120);
        test_gemm_sm90(1200, 3, 200, 512, 0, 1, MXMOE_F32, 20); /* 192-token tiles (mean 400) */
        test_gemm_sm90(400, 3, 200, 512, 0, 1, MXMOE_F32, 20);  /* ... mean ~133: less padding */
        test_gemm_sm90(384, 3, 200, 512, 1, 1, MXMOE_BF16, 20); /* 160-token tiles (mean 128) */
        /* 176-token tiles (mean 1000: 6 tiles an expert, as with 192, and fewer padded tokens):
         * the lean kernel (BF16, no K-split) and the full one (F32), tokens off their references */
        test_gemm_sm90(2000, 2, 136, 512, 1, 1, MXMOE_BF16, 20);
        test_gemm_sm90(2000, 2, 200, 640, 0, 1, MXMOE_F32, 20);
        /* 144-token tiles (mean 256 over K of 16 chunks: 2 tiles an expert, as with 160) */
        test_gemm_sm90(768, 3, 136, 2048, 0, 1, MXMOE_F32, 20);
        test_gemm_sm90(768, 3, 120, 2048, 1, 1, MXMOE_BF16, 20);
        /* 48-token tiles (means 17-32: one tile an expert; an expert past 48 rows takes two) */
        test_gemm_sm90(96, 3, 136, 512, 0, 1, MXMOE_F32, 20);
        static const int32_t past48[] = {47, 48, 49, 96, 97, 3, 0, 0, 0, 0, 0, 0}; /* mean 29 */
        test_gemm_sm90_counts(340, 12, 72, 384, 1, 1, MXMOE_BF16, 0, 0, past48);
        /* 8-token tiles (at most 4 rows a mean: decode-sized batches): one group of 8 tokens,
         * stored by the epilogue's two-matrix stmatrix and in FP32 passes of 4 tokens; F16 at a
         * ragged N; experts of 9 and 12 rows take two tiles */
        test_gemm_sm90(12, 8, 136, 512, 0, 1, MXMOE_F32, 20);
        test_gemm_sm90(16, 8, 200, 512, 1, 1, MXMOE_BF16, 120);
        test_gemm_sm90(14, 8, 130, 160, 1, 0, MXMOE_F16, 0);
        static const int32_t past8[] = {9, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}; /* mean 2 */
        test_gemm_sm90_counts(18, 12, 72, 384, 1, 1, MXMOE_BF16, 0, 0, past8);
        static const int32_t past8_at4[] = {12, 9, 4, 3, 0, 4, 0, 0}; /* mean 4 */
        test_gemm_sm90_counts(32, 8, 136, 512, 0, 1, MXMOE_F32, 20, 0, past8_at4);
        /* ... and at 5 a mean over K of 32 chunks or more (16 tokens over a shorter K) */
        static const int32_t past8_at5[] = {13, 9, 8, 5, 0, 3, 2, 0}; /* mean 5 */
        test_gemm_sm90_counts(40, 8, 136, 4096, 0, 1, MXMOE_F32, 20, 0, past8_at5);
        test_gemm_sm90_counts(40, 8, 136, 2048, 1, 1, MXMOE_BF16, 0, 0, past8_at5);
        /* 16-token tiles (5-8 rows a mean): F32 tokens off their references; experts of 16 and
         * 17 rows (one tile, two) */
        test_gemm_sm90(28, 4, 136, 512, 0, 1, MXMOE_F32, 20);
        static const int32_t past16[] = {17, 16, 5, 0, 0, 0}; /* mean 7 */
        test_gemm_sm90_counts(38, 6, 72, 384, 1, 1, MXMOE_BF16, 0, 0, past16);
        /* 80-token tiles (56-72 rows a mean; two warpgroups, one CTA an SM): F32 tokens off
         * their references, BF16 lean, F16 at a ragged N; experts of 79, 80 and 81 rows (one tile,
         * one, two); spans summed in one chain, and rows on their chunks' references */
        test_gemm_sm90(192, 3, 136, 512, 0, 1, MXMOE_F32, 20);
        test_gemm_sm90(180, 3, 200, 512, 1, 1, MXMOE_BF16, 120);
        test_gemm_sm90(200, 3, 130, 160, 1, 0, MXMOE_F16, 0);
        static const int32_t past80[] = {79, 80, 81, 20}; /* mean 65 */
        test_gemm_sm90_counts(260, 4, 136, 384, 1, 1, MXMOE_BF16, 0, 0, past80);
        test_gemm_sm90_low_chunks(192, 3, 200, 2880, 100, 0);
        test_gemm_sm90_low_chunks(192, 3, 136, 512, -1, 1);
        /* 96-token tiles (73-84 rows a mean over K of 20 chunks or more, 85-88 over 32), the same
         * set; at K = 2048 the same rows take three warpgroups' 128 */
        test_gemm_sm90(240, 3, 136, 2560, 0, 1, MXMOE_F32, 20);
        test_gemm_sm90(230, 3, 200, 2880, 1, 1, MXMOE_BF16, 120);
        test_gemm_sm90(250, 3, 130, 2560, 1, 0, MXMOE_F16, 0);
        static const int32_t past96[] = {95, 96, 97, 32}; /* mean 80 */
        test_gemm_sm90_counts(320, 4, 136, 2560, 1, 1, MXMOE_BF16, 0, 0, past96);
        test_gemm_sm90_counts(320, 4, 136, 2048, 1, 1, MXMOE_BF16, 0, 0, past96);
        /* ... and at 85-88 a mean over K of 32 chunks or more (128 over a shorter K) */
        static const int32_t past96_at87[] = {95, 96, 97, 60}; /* mean 87 */
        test_gemm_sm90_counts(348, 4, 136, 4096, 0, 1, MXMOE_F32, 20, 0, past96_at87);
        test_gemm_sm90_counts(348, 4, 136, 2880, 1, 1, MXMOE_BF16, 0, 0, past96_at87);
        test_gemm_sm90_low_chunks(240, 3, 200, 2880, 100, 0);
        test_gemm_sm90_low_chunks(240, 3, 136, 2560, -1, 1);
        /* 128-token tiles (means ~90 and ~133): three warpgroups, each tile's tokens in two
         * halves of 64 (a tile of <= 64 rows skips the second), warpgroups wholly or partly past
         * N */
        test_gemm_sm90(270, 3, 300, 512, 0, 1, MXMOE_F32, 20);
        test_gemm_sm90(400, 3, 136, 160, 1, 0, MXMOE_BF16, 0);
        /* ... ragged halves, placed rather than drawn: experts ending 10, 25, 50 rows into
         * half 0 and 6, 30, 60 into half 1, and two past a whole tile (mean 89: 128-token
         * tiles; bench/NOTES.md v22 ran narrower MMAs on such halves) */
        static const int32_t ragged[] = {10, 25, 50, 70, 94, 124, 138, 201};
        test_gemm_sm90_counts(712, 8, 136, 288, 0, 1, MXMOE_F32, 20, 0, ragged);
        test_gemm_sm90_counts(712, 8, 300, 160, 1, 0, MXMOE_BF16, 0, 0, ragged);
        /* weight rows on their spans' references and on their chunks': narrow tiles (mean 20),
         * 160- and 192-token tiles (means 128 and 400), over 12 spans */
        test_gemm_sm90_low_chunks(60, 3, 200, 2880, 100, 0);
        test_gemm_sm90_low_chunks(384, 3, 200, 2880, 100, 1);
        test_gemm_sm90_low_chunks(1200, 3, 200, 2880, 100, 0);
        test_gemm_sm90_low_chunks(60, 3, 200, 512, -1, 0);
        test_gemm_sm90_low_chunks(1200, 3, 136, 512, -1, 1);
        if (!g_small) {
            test_gemm_sm90(300, 4, 2880, 2880, 0, 1, MXMOE_F32, 0);
            /* 128-token tiles, whole (mean 500; N = 192: one row tile of three warpgroups) */
            test_gemm_sm90(1500, 3, 192, 384, 0, 0, MXMOE_F32, 0);
            test_gemm_sm90(1500, 3, 192, 512, 0, 1, MXMOE_F32, 20); /* ... off-reference */
            test_gemm_sm90(1500, 3, 384, 256, 1, 1, MXMOE_BF16, 0); /* 16-byte BF16 stores */
            /* ... the same at 192-token tiles, taken from 768 rows a mean (1250 here) */
            test_gemm_sm90(2500, 2, 384, 256, 1, 1, MXMOE_BF16, 0);
            test_gemm_sm90(3000, 3, 256, 512, 0, 1, MXMOE_F32, 20); /* 176 (mean 1000) */
            test_gemm_sm90(1000, 3, 136, 160, 0, 1, MXMOE_F16, 0);  /* F16 through stmatrix */
            test_gemm_sm90(1000, 3, 130, 160, 1, 0, MXMOE_F16, 0);  /* ... ragged, unaligned */
            test_gemm_sm90(90, 3, 72, 96, 1, 1, MXMOE_BF16, 0);     /* 48-token tiles (mean 30) */
            test_gemm_sm90(40, 3, 200, 512, 0, 1, MXMOE_F32, 0);    /* 32-token tiles (mean 14) */
            test_gemm_sm90(1200, 32, 130, 2880, 1, 1, MXMOE_BF16, 6);
            /* narrow tiles over long K: 256-K spans summed by one wgmma chain (the bound's
             * accumulation term over twice the chain), odd chunk counts */
            test_gemm_sm90(100, 4, 256, 2880, 0, 1, MXMOE_F32, 0);
            test_gemm_sm90(60, 4, 128, 7168, 1, 0, MXMOE_F32, 0);
            test_gemm_sm90(60, 4, 128, 7168, 0, 1, MXMOE_BF16, 14);
            /* 192-token tiles over long K, their first part's tokens summed over each span
             * (N = 120: 128 weight rows pad less than three warpgroups' 192) */
            test_gemm_sm90(1200, 3, 120, 2880, 0, 1, MXMOE_F32, 0);
            test_gemm_sm90(384, 3, 120, 2880, 0, 1, MXMOE_F32, 0); /* ... 160-token tiles */
            /* 144-token tiles at 256 rows a mean over K of 16 chunks or more: two an expert */
            test_gemm_sm90(768, 3, 200, 2048, 1, 1, MXMOE_BF16, 14);
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            test_moe(&cases[i], i == 1 || i == 5, 0);
        }
        test_projection(g_small ? 70 : 600, 4, 5, 130, 160, MXMOE_BF16, MXMOE_BF16, 0, 1, 0, 0);
        test_projection(g_small ? 40 : 333, 8, 7, 200, 512, MXMOE_F32, MXMOE_F32, 1, 0, 0, 0);
        test_projection(300, 4, 3, 136, 256, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 0);  /* BN = 192 */
        test_projection(200, 2, 3, 200, 256, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 0);  /* BN = 128 */
        test_projection(1000, 2, 2, 136, 256, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 0); /* BN = 176 */
        test_projection(384, 2, 3, 136, 2048, MXMOE_BF16, MXMOE_BF16, 0, 1, 0, 0); /* BN = 144 */
        /* the tokens quantized by the GEMM's prepass (gemm_args.tokens): F16 and F32 tokens with
         * NaN/Inf and scales far apart, dropped pairs, K % 128 != 0, K = 32, BF16 and F32 rows
         * off 16-byte alignment (element loads); past its K the quantizer and the MXFP4 prepass,
         * and the latter forced (MXMOE_CUDA_TOKEN_PREPASS=0) */
        test_projection(g_small ? 50 : 260, 4, 6, 72, 2880, MXMOE_F16, MXMOE_F32, 1, 0, 1, 0);
        test_projection(64, 8, 9, 64, 32, MXMOE_F32, MXMOE_BF16, 0, 1, 1, 0);
        test_projection(g_small ? 30 : 130, 3, 4, 96, 8192, MXMOE_BF16, MXMOE_BF16, 1, 1, 1, 0);
        test_projection(20, 2, 3, 64, 8320, MXMOE_BF16, MXMOE_BF16, 0, 0, 0, 0);
        /* tiles with tokens on and off their references (the off-reference promotion, the
         * factors stored for those tokens only): 192-, 80-, 96-, 128- (three warpgroups),
         * 48-token tiles */
        test_projection(300, 4, 3, 120, 2048, MXMOE_BF16, MXMOE_BF16, 0, 1, 2, 0);
        test_projection(48, 4, 3, 120, 2048, MXMOE_BF16, MXMOE_BF16, 0, 1, 2, 0);
        test_projection(60, 4, 3, 120, 2560, MXMOE_BF16, MXMOE_BF16, 0, 1, 2, 0);
        test_projection(200, 2, 3, 136, 2880, MXMOE_F32, MXMOE_BF16, 1, 0, 2, 0);
        test_projection(g_small ? 40 : 120, 4, 8, 72, 1024, MXMOE_BF16, MXMOE_F32, 0, 0, 2, 0);
        g_x_skew = 2;
        test_projection(g_small ? 20 : 90, 4, 5, 64, 480, MXMOE_BF16, MXMOE_BF16, 1, 0, 1, 0);
        g_x_skew = 4;
        test_projection(g_small ? 20 : 90, 4, 5, 64, 480, MXMOE_F32, MXMOE_F32, 0, 1, 1, 0);
        g_x_skew = 0;
        setenv("MXMOE_CUDA_TOKEN_PREPASS", "0", 1);
        test_projection(g_small ? 50 : 260, 4, 6, 72, 2880, MXMOE_F16, MXMOE_F32, 1, 0, 1, 0);
        unsetenv("MXMOE_CUDA_TOKEN_PREPASS");
        /* the K-split (each tile's K in two halves, FP32 partials, one reduction): taken by
         * choice where K is long and the tiles fill under half the grid, forced here everywhere */
        printf("Hopper path with the K-split forced (MXMOE_CUDA_KSPLIT=1):\n");
        setenv("MXMOE_CUDA_KSPLIT", "1", 1);
        test_gemm_sm90(g_small ? 70 : 600, 5, 96, 160, 0, 1, MXMOE_F32, 0);
        test_gemm_sm90(g_small ? 40 : 333, 7, 200, 512, 1, 1, MXMOE_BF16, 40);
        test_gemm_sm90(g_small ? 9 : 40, 256, 256, 384, 0, 1, MXMOE_F16, 0);
        test_gemm_sm90(1200, 3, 120, 1152, 1, 0, MXMOE_BF16, 0); /* 192-token tiles */
        test_gemm_sm90(2000, 2, 120, 1152, 1, 0, MXMOE_BF16, 0); /* 176-token tiles */
        test_gemm_sm90(768, 3, 120, 2048, 1, 0, MXMOE_BF16, 0);  /* 144-token tiles */
        test_gemm_sm90(96, 3, 136, 4096, 0, 1, MXMOE_F32, 0);    /* 48-token tiles */
        test_gemm_sm90(10, 8, 120, 1152, 1, 0, MXMOE_BF16, 0);   /* 8-token tiles */
        test_gemm_sm90(130, 2, 120, 1152, 1, 0, MXMOE_BF16, 0);  /* 80-token tiles */
        test_gemm_sm90(160, 2, 120, 2560, 1, 0, MXMOE_BF16, 0);  /* 96-token tiles */
        test_gemm_sm90(24, 4, 120, 1152, 1, 0, MXMOE_BF16, 0);   /* 16-token tiles */
        test_gemm_sm90(400, 3, 136, 512, 1, 1, MXMOE_BF16, 40);  /* 128-token tiles */
        test_gemm_sm90(384, 3, 200, 512, 0, 1, MXMOE_F32, 0);    /* 160-token tiles */
        test_gemm_sm90(60, 4, 128, 640, 0, 1, MXMOE_F32, 0);     /* narrow: a half from chunk 3 */
        /* N % 4 != 0: the partials' rows not 16-byte runs, the reduction's rows ragged */
        test_gemm_sm90(g_small ? 50 : 300, 4, 102, 384, 0, 1, MXMOE_BF16, 0);
        if (!g_small) {
            test_gemm_sm90(3000, 3, 256, 1152, 0, 1, MXMOE_F32, 20); /* 128-token tiles */
            test_gemm_sm90(40, 40, 2048, 1024, 0, 1, MXMOE_BF16, 0);
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            test_moe(&cases[i], i == 1, 0);
        }
        test_projection(g_small ? 40 : 333, 8, 7, 200, 512, MXMOE_BF16, MXMOE_BF16, 1, 1, 0, 0);
        unsetenv("MXMOE_CUDA_KSPLIT");
        printf("Hopper path: largest sums error / (2^-13 sum|a w|) = %.3f (bound: 8)\n",
               g_sm90_worst);
        force_gemm(NULL);
    } else {
        printf("Hopper path: skipped (compute capability %d.%d)\n", cc_major, cc_minor);
    }
    /* recorded and replayed: the skinny path (1 token), 16-token tiles, and past 4096 pairs */
    test_graph_grouped(1, 4, 32, 256, 2880);
    test_graph_grouped(g_small ? 24 : 64, 8, 128, 768, 2048);
    test_graph_grouped(g_small ? 600 : 1024, 8, 64, 512, 1024);
    test_device_errors();

    mxmoe_ctx_free(g_gpu);
    mxmoe_ctx_free(g_cpu);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed != 0;
}
