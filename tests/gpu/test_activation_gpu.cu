/*
 * test_activation_gpu.cu — the device's FP32 activation (core/activation_fp32.h: MUFU ex2 and
 * rcp, whose error the CUDA documentation states but this project must not take on trust)
 * against the reference's FP64 evaluation (ref/activation.h), on the GPU: every FP32 gate whose
 * magnitude lies in the fast form's range [2^-100, 80), both signs, each with a drawn up value,
 * for SiLU, SiLU·up and gpt-oss's SwiGLU (default alpha and limit); and for SwiGLU every BF16
 * up with gates above the limit (the clamped form, mxmoe_act_fp32_consts), which must decide
 * nearly all. Where the fast form decides, its value must lie within its stated bound
 * k 2^-24 |x| of the FP64 value x, and its BF16 value must be the reference's. Needs a GPU:
 * tests/gpu/run.sh runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/activation_fp32.h"
extern "C" {
#include "ref/activation.h"
}

struct counts {
    unsigned long long checked, decided, beyond_bound, wrong_bf16;
    unsigned long long first; /* the first failure: gate bits << 32 | up bits (neither is 0) */
    double worst;             /* the largest error over its bound, as a ratio */
};

/* a drawn up value from the gate's bits: magnitudes 2^-8..2^8, both signs, and the SwiGLU
 * limits themselves */
__device__ float up_for(uint32_t i) {
    uint32_t h = i * 0x9E3779B1u;
    h ^= h >> 15;
    h *= 0x85EBCA77u;
    h ^= h >> 13;
    if ((h & 63) == 0) {
        return (h & 64) ? 7.0f : -7.0f;
    }
    const float m = 1.0f + (float)((h >> 8) & 0xFFFF) * 0x1p-16f;
    return ((h & 128) ? -m : m) * exp2f((float)((int)((h >> 24) & 15) - 8));
}

__device__ void atomic_max_double(double* at, double v) {
    unsigned long long* p = reinterpret_cast<unsigned long long*>(at);
    unsigned long long old = *p;
    while (__longlong_as_double(old) < v) {
        const unsigned long long seen = atomicCAS(p, old, __double_as_longlong(v));
        if (seen == old) {
            break;
        }
        old = seen;
    }
}

/* one (gate, up): its bound and bits into the thread's counts */
struct tally {
    unsigned long long checked = 0, decided = 0, beyond = 0, wrong = 0;
    double worst = 0.0;

    __device__ void check(mxmoe_activation act, const mxmoe_act_params& p,
                          const mxmoe_act_fp32_consts& consts, float gate, float up, counts* c) {
        const double x = mxmoe_activation_of(act, gate, up, &p);
        const unsigned long long pair =
            (unsigned long long)__float_as_uint(gate) << 32 | __float_as_uint(up);
        float y, k, bf16;
        checked++;
        if (mxmoe_activation_fp32(act, gate, up, &p, &consts, &y, &k)) {
            const double err = fabs((double)y - x), bound = k * 0x1p-24 * fabs(x);
            if (!(err <= bound)) {
                beyond++;
                atomicCAS(&c->first, 0ull, pair);
            }
            worst = bound > 0.0 && err / bound > worst ? err / bound : worst;
        }
        if (mxmoe_activation_bf16_fp32(act, gate, up, &p, &consts, &bf16)) {
            decided++;
            if (__float_as_uint(bf16) !=
                __float_as_uint(mxmoe_round_to_dtype((float)x, MXMOE_BF16))) {
                wrong++;
                atomicCAS(&c->first, 0ull, pair);
            }
        }
    }

    __device__ void add_to(counts* c) const {
        atomicAdd(&c->checked, checked);
        atomicAdd(&c->decided, decided);
        atomicAdd(&c->beyond_bound, beyond);
        atomicAdd(&c->wrong_bf16, wrong);
        atomic_max_double(&c->worst, worst);
    }
};

/* gates with bits [lo, lo + n) and their negatives */
__global__ void sweep(mxmoe_activation act, mxmoe_act_params p, mxmoe_act_fp32_consts consts,
                      uint32_t lo, uint32_t n, counts* c) {
    tally t;
    for (uint64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < 2ull * n;
         i += gridDim.x * blockDim.x) {
        const uint32_t bits = (lo + (uint32_t)(i / 2)) | (i & 1 ? 0x80000000u : 0u);
        t.check(act, p, consts, __uint_as_float(bits), up_for(bits), c);
    }
    t.add_to(c);
}

/* SwiGLU: every finite BF16 up of magnitude under 8 with BF16 gates above the limit (a BF16
 * layer's clamped gates), where 7 (u + 1) often sits on a BF16 midpoint */
__global__ void sweep_clamped(mxmoe_act_params p, mxmoe_act_fp32_consts consts, counts* c) {
    tally t;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < 65536u * 64u;
         i += gridDim.x * blockDim.x) {
        const float up = __uint_as_float((i & 0xFFFFu) << 16);
        /* 64 gates from just above the limit to 2^20 */
        const float gate = mxmoe_round_to_dtype(p.swiglu_limit * (1.0f + 0x1p-6f) *
                                                    exp2f((float)(i >> 16) * (20.0f / 64.0f)),
                                                MXMOE_BF16);
        if (fabsf(up) < 8.0f) {
            t.check(MXMOE_ACT_SWIGLU_OAI, p, consts, gate, up, c);
        }
    }
    t.add_to(c);
}

static int check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        printf("FAIL %s: %s\n", what, cudaGetErrorString(e));
        return 0;
    }
    return 1;
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("test_activation_gpu: no GPU\n");
        return 1;
    }
    counts* c = nullptr;
    if (!check_cuda(cudaMallocManaged(&c, sizeof *c), "cudaMallocManaged")) {
        return 1;
    }
    const uint32_t lo = 0x0D800000u; /* 2^-100 */
    const uint32_t hi = 0x42A00000u; /* 80 */
    const mxmoe_activation acts[3] = {MXMOE_ACT_SILU_MUL, MXMOE_ACT_SILU, MXMOE_ACT_SWIGLU_OAI};
    const char* names[4] = {"silu*up", "silu", "swiglu (gpt-oss)", "swiglu clamped"};
    int failed = 0;
    for (int a = 0; a < 4; a++) {
        *c = counts{};
        mxmoe_act_params p = mxmoe_act_params_default();
        p.activation = a < 3 ? acts[a] : MXMOE_ACT_SWIGLU_OAI;
        const mxmoe_act_fp32_consts consts = mxmoe_act_fp32_setup(&p);
        if (a < 3) {
            sweep<<<1024, 256>>>(acts[a], p, consts, lo, hi - lo, c);
        } else {
            sweep_clamped<<<1024, 256>>>(p, consts, c);
        }
        if (!check_cuda(cudaDeviceSynchronize(), "sweep")) {
            return 1;
        }
        /* every gate of the range checked; the clamped ones decided nearly always */
        const bool ok = (a < 3 ? c->checked == 2ull * (hi - lo) && c->decided > c->checked / 2
                               : c->checked > 0 && c->decided >= c->checked - c->checked / 100) &&
                        c->beyond_bound == 0 && c->wrong_bf16 == 0;
        printf("%-17s %llu gates: decided in FP32 %.3f %%, worst error %.3f of the bound, "
               "%llu beyond it, %llu BF16 values wrong%s",
               names[a], c->checked, 100.0 * c->decided / c->checked, c->worst, c->beyond_bound,
               c->wrong_bf16, ok ? "\n" : "");
        if (!ok) {
            const uint32_t gate_bits = (uint32_t)(c->first >> 32), up_bits = (uint32_t)c->first;
            float gate, up;
            memcpy(&gate, &gate_bits, 4);
            memcpy(&up, &up_bits, 4);
            printf(" (first: gate %a up %a)\n", gate, up);
            failed++;
        }
    }
    cudaFree(c);
    printf("test_activation_gpu: %s\n", failed ? "FAIL" : "ok");
    return failed ? 1 : 0;
}
