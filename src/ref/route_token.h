/*
 * route_token.h — routing of one token (the body of the reference router), shared with the CUDA
 * backend so both select and weigh experts with the same code.
 *
 * Selection compares FP64 scores and breaks ties by the lower expert id; softmax and sigmoid
 * are evaluated in FP64 and each weight is rounded once to FP32. Softmax is monotonic, so the
 * SOFTMAX_TOPK selection is made on the logits themselves: no rounding can reorder it.
 */
#ifndef MXMOE_REF_ROUTE_TOKEN_H
#define MXMOE_REF_ROUTE_TOKEN_H

#include <math.h>
#include <stdint.h>

#include "core/hd.h"
#include "mxmoe.h"

/* Scratch for one token, sized for E experts in G groups. */
typedef struct route_scratch {
    double* logit;          /* [E] */
    double* sig;            /* [E] sigmoid scores */
    double* biased;         /* [E] selection scores */
    double* group_score;    /* [G] */
    double* weight;         /* [k] */
    unsigned char* allowed; /* [E] experts inside the kept groups */
    unsigned char* taken;   /* [max(E, G)] */
    int32_t* kept_groups;   /* [G] */
} route_scratch;

/* Writes to `chosen` the k best of `count` candidates, best first: highest score, ties to the
 * lower index; candidates with allowed[i] == 0 are skipped (allowed may be NULL). */
static inline MXMOE_HD void select_top(const double* score, const unsigned char* allowed,
                                       int64_t count, int32_t k, unsigned char* taken,
                                       int32_t* chosen) {
    for (int64_t i = 0; i < count; i++) {
        taken[i] = 0;
    }
    for (int32_t s = 0; s < k; s++) {
        int64_t best = -1;
        for (int64_t i = 0; i < count; i++) {
            if (!taken[i] && (allowed == NULL || allowed[i]) &&
                (best < 0 || score[i] > score[best])) {
                best = i;
            }
        }
        taken[best] = 1;
        chosen[s] = (int32_t)best;
    }
}

static inline MXMOE_HD void route_softmax_topk(const mxmoe_route_params* p, int64_t E,
                                               route_scratch* s, int32_t* ids, float* weights) {
    int32_t k = p->top_k;
    select_top(s->logit, NULL, E, k, s->taken, ids);
    double max = s->logit[ids[0]], sum = 0.0, chosen_sum = 0.0;
    for (int64_t e = 0; e < E; e++) {
        sum += exp(s->logit[e] - max);
    }
    for (int32_t j = 0; j < k; j++) {
        s->weight[j] = exp(s->logit[ids[j]] - max) / sum;
        chosen_sum += s->weight[j];
    }
    for (int32_t j = 0; j < k; j++) {
        weights[j] = (float)(p->renormalize ? s->weight[j] / chosen_sum : s->weight[j]);
    }
}

static inline MXMOE_HD void route_topk_softmax(const mxmoe_route_params* p, int64_t E,
                                               route_scratch* s, int32_t* ids, float* weights) {
    int32_t k = p->top_k;
    select_top(s->logit, NULL, E, k, s->taken, ids);
    double max = s->logit[ids[0]], sum = 0.0;
    for (int32_t j = 0; j < k; j++) {
        s->weight[j] = exp(s->logit[ids[j]] - max);
        sum += s->weight[j];
    }
    for (int32_t j = 0; j < k; j++) {
        weights[j] = (float)(s->weight[j] / sum);
    }
}

/* DeepSeek-V3: groups scored by the sum of their two best biased scores. */
static inline MXMOE_HD void route_sigmoid_grouped(const mxmoe_route_params* p, int64_t E,
                                                  const float* bias, route_scratch* s, int32_t* ids,
                                                  float* weights) {
    int32_t k = p->top_k;
    int64_t G = p->num_groups, per_group = E / G;
    for (int64_t e = 0; e < E; e++) {
        s->sig[e] = 1.0 / (1.0 + exp(-s->logit[e]));
        s->biased[e] = s->sig[e] + (bias != NULL ? (double)bias[e] : 0.0);
    }
    for (int64_t g = 0; g < G; g++) {
        /* the sum of the group's two best biased scores (the one score of a 1-expert group) */
        double first = -INFINITY, second = -INFINITY;
        for (int64_t i = 0; i < per_group; i++) {
            double v = s->biased[g * per_group + i];
            if (v > first) {
                second = first;
                first = v;
            } else if (v > second) {
                second = v;
            }
        }
        s->group_score[g] = per_group < 2 ? first : first + second;
    }
    select_top(s->group_score, NULL, G, p->topk_groups, s->taken, s->kept_groups);
    for (int64_t e = 0; e < E; e++) {
        s->allowed[e] = 0;
    }
    for (int32_t j = 0; j < p->topk_groups; j++) {
        for (int64_t i = 0; i < per_group; i++) {
            s->allowed[s->kept_groups[j] * per_group + i] = 1;
        }
    }
    select_top(s->biased, s->allowed, E, k, s->taken, ids);
    double sum = 0.0;
    for (int32_t j = 0; j < k; j++) {
        sum += s->sig[ids[j]];
    }
    for (int32_t j = 0; j < k; j++) {
        double v = p->renormalize ? s->sig[ids[j]] / (sum + 1e-20) : s->sig[ids[j]];
        weights[j] = (float)(v * (double)p->scaling_factor);
    }
}

/* Routes one token whose logits are in s->logit; writes k ids and weights. */
static inline MXMOE_HD void mxmoe_route_token(const mxmoe_route_params* p, int64_t E,
                                              const float* bias, route_scratch* s, int32_t* ids,
                                              float* weights) {
    switch (p->method) {
    case MXMOE_ROUTE_SOFTMAX_TOPK:
        route_softmax_topk(p, E, s, ids, weights);
        break;
    case MXMOE_ROUTE_TOPK_SOFTMAX:
        route_topk_softmax(p, E, s, ids, weights);
        break;
    default:
        route_sigmoid_grouped(p, E, bias, s, ids, weights);
        break;
    }
}

/* Bytes of scratch for one token: see mxmoe_route_scratch_carve. */
static inline MXMOE_HD size_t mxmoe_route_scratch_bytes(int64_t E, int64_t G, int64_t k) {
    return (size_t)(3 * E + G + k) * sizeof(double) + (size_t)G * sizeof(int32_t) + (size_t)(2 * E);
}

/* Points the scratch arrays into `mem` (8-byte aligned, mxmoe_route_scratch_bytes long). */
static inline MXMOE_HD void mxmoe_route_scratch_carve(void* mem, int64_t E, int64_t G, int64_t k,
                                                      route_scratch* s) {
    s->logit = (double*)mem;
    s->sig = s->logit + E;
    s->biased = s->sig + E;
    s->group_score = s->biased + E;
    s->weight = s->group_score + G;
    s->kept_groups = (int32_t*)(s->weight + k);
    s->allowed = (unsigned char*)(s->kept_groups + G);
    s->taken = s->allowed + E;
}

#endif /* MXMOE_REF_ROUTE_TOKEN_H */
