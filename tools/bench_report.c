/*
 * bench_report.c — what a benchmark point is worth against the hardware, and the JSON report.
 *
 * Per point (issue 4):
 *   W = bytes of the active experts' MXFP4 weights (rows*K*17/32 per matrix: 4-bit codes plus
 *       one scale byte per 32), active = experts with at least one row;
 *   F = 2 * n * top_k * N * K for the grouped projection, summed over both GEMMs for the layer;
 *   floor_us  = max(W / B, F / fp8 rate), B = the copy bandwidth measured in the same run
 *               (bytes read + written per second, as in reference/anchors.md);
 *   target_us = max(10 us, W / (0.8 B), F / 900 TFLOP/s).
 * The FP8 rate is measured by bench/torch_baseline.py, which recomputes floor and target with
 * its own ceilings; until then floor_us is the memory floor alone (floor_basis says which).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define TARGET_MIN_US     10.0
#define TARGET_COPY_SHARE 0.8
#define TARGET_FLOPS      900e12

const char* const bench_op_names[BENCH_OP_COUNT] = {"grouped", "layer"};

void bench_point_metrics(bench_point* p, const bench_ceilings* c) {
    const bench_shape* s = p->shape;
    double per_expert = p->op == BENCH_OP_GROUPED
                            ? (double)p->n * (double)p->k * 17.0 / 32.0
                            : 3.0 * (double)s->intermediate * (double)s->hidden * 17.0 / 32.0;
    double nk = p->op == BENCH_OP_GROUPED ? (double)p->n * (double)p->k
                                          : 3.0 * (double)s->intermediate * (double)s->hidden;
    p->weight_bytes = (double)p->routing->active * per_expert;
    p->flops = 2.0 * (double)p->tokens * (double)s->top_k * nk;
    double bw = c->copy_GBps * 1e9;
    double mem_us = bw > 0 ? p->weight_bytes / bw * 1e6 : NAN;
    double fp8_us = c->fp8_TFLOPs > 0 ? p->flops / (c->fp8_TFLOPs * 1e12) * 1e6 : NAN;
    p->floor_has_fp8 = c->fp8_TFLOPs > 0;
    p->floor_us = p->floor_has_fp8 ? fmax(mem_us, fp8_us) : mem_us;
    double target = fmax(TARGET_MIN_US, p->flops / TARGET_FLOPS * 1e6);
    p->target_us = bw > 0 ? fmax(target, p->weight_bytes / (TARGET_COPY_SHARE * bw) * 1e6) : NAN;
    p->gflops = p->time_us > 0 ? p->flops / (p->time_us * 1e-6) / 1e9 : NAN;
}

/* --- JSON --- */

static void json_string(FILE* f, const char* s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

static void json_number(FILE* f, double v) {
    if (!isfinite(v)) {
        fputs("null", f);
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        fprintf(f, "%.0f", v); /* integers (bytes, FLOPs, counts) exactly */
    } else {
        fprintf(f, "%.9g", v);
    }
}

static void key(FILE* f, const char* name, int* first) {
    fprintf(f, "%s", *first ? "" : ", ");
    *first = 0;
    json_string(f, name);
    fputs(": ", f);
}

static void kv_string(FILE* f, const char* name, const char* v, int* first) {
    key(f, name, first);
    json_string(f, v);
}

static void kv_number(FILE* f, const char* name, double v, int* first) {
    key(f, name, first);
    json_number(f, v);
}

void bench_report_begin(bench_report* r, FILE* out, mxmoe_ctx* ctx, const bench_options* o,
                        const bench_ceilings* c) {
    r->out = out;
    r->points = 0;
    char card[256], date[32];
    cli_card_name(ctx, card, sizeof card);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const char* commit = getenv("MXMOE_COMMIT");
    int first = 1;
    fputs("{\n  ", out);
    kv_string(out, "card", card, &first);
    fputs(",\n  ", out);
    first = 1;
    kv_string(out, "commit", commit != NULL && commit[0] != '\0' ? commit : "unknown", &first);
    kv_string(out, "date", date, &first);
    kv_string(out, "backend", mxmoe_backend_name(mxmoe_ctx_backend(ctx)), &first);
    kv_string(out, "mxmoe_version", mxmoe_version_string(), &first);
    fputs(",\n  ", out);
    first = 1;
    kv_string(out, "backend_detail", mxmoe_ctx_backend_detail(ctx), &first);
    fputs(",\n  \"settings\": {", out);
    first = 1;
    kv_number(out, "max_runs", o->iters, &first);
    kv_number(out, "budget_s", o->budget_s, &first);
    kv_number(out, "rotate_MB", o->rotate_mb, &first);
    kv_number(out, "rotate_max_MB", o->rotate_max_mb, &first);
    kv_number(out, "seed", (double)o->seed, &first);
    kv_number(out, "weights_prepared", o->prepare, &first);
    kv_number(out, "graph_replays", o->graph, &first);
    kv_string(out, "layer_gemm_dtype", o->gemm_dtype == MXMOE_BF16 ? "bf16" : "f32", &first);
    kv_string(out, "timing",
              "median over runs, each timed alone with mxmoe_timer_start/stop (CUDA events on a "
              "GPU), after warm-up; weights cycled through copies spanning rotate_MB of active "
              "experts",
              &first);
    fputs("},\n  \"ceilings\": {", out);
    first = 1;
    kv_number(out, "copy_GBps", c->copy_GBps > 0 ? c->copy_GBps : NAN, &first);
    kv_number(out, "copy_bytes", c->copy_bytes, &first);
    kv_string(out, "copy_convention", "bytes read + bytes written per second", &first);
    kv_string(out, "copy_source", "mxmoe_memcpy backend-to-backend", &first);
    kv_number(out, "fp8_TFLOPs", c->fp8_TFLOPs > 0 ? c->fp8_TFLOPs : NAN, &first);
    fputs("},\n  \"points\": [", out);
    fflush(out);
}

void bench_report_point(bench_report* r, const bench_point* p) {
    FILE* f = r->out;
    const bench_shape* s = p->shape;
    int first = 1;
    fputs(r->points++ ? ",\n    {" : "\n    {", f);
    kv_string(f, "op", bench_op_names[p->op], &first);
    kv_string(f, "shape", s->name, &first);
    kv_number(f, "tokens", (double)p->tokens, &first);
    kv_number(f, "time_us", p->runs > 0 ? p->time_us : NAN, &first);
    kv_number(f, "gflops", p->runs > 0 ? p->gflops : NAN, &first);
    kv_number(f, "floor_us", p->floor_us, &first);
    kv_number(f, "target_us", p->target_us, &first);
    kv_string(f, "floor_basis", p->floor_has_fp8 ? "max(memory, fp8)" : "memory only", &first);
    if (p->error[0] != '\0') {
        kv_string(f, "error", p->error, &first);
    }
    fputs(",\n     ", f);
    first = 1;
    if (p->op == BENCH_OP_GROUPED) {
        kv_string(f, "projection", s->projection, &first);
        kv_number(f, "N", (double)p->n, &first);
        kv_number(f, "K", (double)p->k, &first);
    } else {
        kv_string(f, "activation",
                  s->gpt_oss ? "swiglu-oai, gate/up interleaved, biases" : "silu*up, gate||up",
                  &first);
    }
    kv_number(f, "experts", s->experts, &first);
    kv_number(f, "top_k", s->top_k, &first);
    kv_number(f, "hidden", (double)s->hidden, &first);
    kv_number(f, "intermediate", (double)s->intermediate, &first);
    kv_number(f, "rows", (double)p->rows, &first);
    fputs(",\n     ", f);
    first = 1;
    kv_number(f, "min_us", p->runs > 0 ? p->min_us : NAN, &first);
    kv_number(f, "max_us", p->runs > 0 ? p->max_us : NAN, &first);
    kv_number(f, "host_us", p->runs > 0 ? p->host_us : NAN, &first);
    if (p->graph_replays > 0) {
        kv_number(f, "graph_us", p->graph_us, &first);
        kv_number(f, "graph_min_us", p->graph_min_us, &first);
        kv_number(f, "graph_replays", p->graph_replays, &first);
        kv_number(f, "graph_runs_per_replay", p->graph_runs_per_replay, &first);
        key(f, "graph_meets_target", &first);
        fputs(isfinite(p->target_us) ? (p->graph_us <= p->target_us ? "true" : "false") : "null",
              f);
    }
    kv_number(f, "runs", p->runs, &first);
    kv_number(f, "warmup_runs", p->warmup, &first);
    kv_number(f, "rotation_copies", p->copies, &first);
    kv_number(f, "active_experts", p->routing->active, &first);
    kv_number(f, "busiest_expert_rows", p->routing->busiest, &first);
    kv_number(f, "weight_bytes", p->weight_bytes, &first);
    kv_number(f, "flops", p->flops, &first);
    kv_number(f, "weight_GBps", p->runs > 0 ? p->weight_bytes / (p->time_us * 1e-6) / 1e9 : NAN,
              &first);
    key(f, "meets_target", &first);
    fputs(p->runs > 0 && isfinite(p->target_us) ? (p->time_us <= p->target_us ? "true" : "false")
                                                : "null",
          f);
    fputs(",\n     \"counts\": [", f);
    for (int32_t e = 0; e < p->routing->experts; e++) {
        fprintf(f, "%s%d", e ? "," : "", (int)p->routing->counts[e]);
    }
    fputs("]}", f);
    fflush(f);
}

void bench_report_end(bench_report* r) {
    fputs(r->points ? "\n  ]\n}\n" : "]\n}\n", r->out);
    fflush(r->out);
}
