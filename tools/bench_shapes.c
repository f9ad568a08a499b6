/*
 * bench_shapes.c — the benchmark shapes of SPEC §6 / issue 4 and their synthetic routing.
 *
 * Routing is uniform: every token picks top_k distinct experts at random, which is what the
 * peers' numbers in reference/anchors.md used. The per-expert counts go into the JSON, and the
 * baseline script builds its groups from them, so both sides time the same grouping.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* name, E, top-k, hidden, intermediate, gpt-oss style, projection, N, K.
 * The grouped projections are issue 4's, with its dims as written (they are the ones the peers'
 * anchors were measured on): gpt-oss down N = K = 2880; Qwen3-30B-A3B "down" N = 768, K = 2048
 * (the [I, H] orientation; a true down projection is [H, I] = [2048, 768], the same bytes and
 * FLOPs transposed); DeepSeek-V3 gate half N = 2048, K = 7168. */
const bench_shape bench_shapes[] = {
    {"gpt-oss-20b", 32, 4, 2880, 2880, 1, "down", 2880, 2880},
    {"gpt-oss-120b", 128, 4, 2880, 2880, 1, "down", 2880, 2880},
    {"qwen3-30b-a3b", 128, 8, 2048, 768, 0, "down", 768, 2048},
    {"deepseek-v3", 256, 8, 7168, 2048, 0, "gate half", 2048, 7168},
};
const int bench_shape_count = (int)(sizeof bench_shapes / sizeof bench_shapes[0]);

const bench_shape* bench_find_shape(const char* name) {
    for (int i = 0; i < bench_shape_count; i++) {
        if (strcmp(bench_shapes[i].name, name) == 0) {
            return &bench_shapes[i];
        }
    }
    return NULL;
}

uint64_t bench_next(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void bench_routing_free(bench_routing* r) {
    free(r->ids);
    free(r->weights);
    free(r->counts);
    memset(r, 0, sizeof *r);
}

int bench_routing_make(bench_routing* r, const bench_shape* s, int64_t tokens, uint64_t seed) {
    memset(r, 0, sizeof *r);
    int32_t E = s->experts, k = s->top_k;
    r->tokens = tokens;
    r->top_k = k;
    r->experts = E;
    r->ids = malloc((size_t)(tokens * k) * sizeof *r->ids);
    r->weights = malloc((size_t)(tokens * k) * sizeof *r->weights);
    r->counts = calloc((size_t)E, sizeof *r->counts);
    int32_t* pool = malloc((size_t)E * sizeof *pool);
    if (r->ids == NULL || r->weights == NULL || r->counts == NULL || pool == NULL) {
        free(pool);
        bench_routing_free(r);
        return -1;
    }
    uint64_t state = seed * 0x100000001B3ull ^ (uint64_t)tokens;
    for (int64_t t = 0; t < tokens; t++) {
        for (int32_t e = 0; e < E; e++) {
            pool[e] = e;
        }
        double sum = 0;
        for (int32_t j = 0; j < k; j++) {
            /* Partial Fisher-Yates: slot j takes a uniform pick of the E - j experts left. */
            int32_t pick = j + (int32_t)(bench_next(&state) % (uint64_t)(E - j));
            int32_t e = pool[pick];
            pool[pick] = pool[j];
            pool[j] = e;
            r->ids[t * k + j] = e;
            r->counts[e]++;
            float w = (float)((bench_next(&state) >> 40) + 1) / (float)(1 << 24);
            r->weights[t * k + j] = w;
            sum += w;
        }
        for (int32_t j = 0; j < k; j++) {
            r->weights[t * k + j] = (float)(r->weights[t * k + j] / sum);
        }
    }
    for (int32_t e = 0; e < E; e++) {
        r->active += r->counts[e] > 0;
        r->busiest = r->counts[e] > r->busiest ? r->counts[e] : r->busiest;
    }
    free(pool);
    return 0;
}
