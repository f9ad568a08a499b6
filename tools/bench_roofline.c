/*
 * bench_roofline.c — the roofline plot of `mxmoe bench --svg`: every timed point at its
 * arithmetic intensity (FLOPs per byte of MXFP4 weights read) against the roof the card allows,
 * min(copy bandwidth x intensity, compute peak). Plain SVG text: no plotting dependency.
 */
#include <math.h>
#include <string.h>

#include "bench.h"

void bench_roofline_add(bench_roofline* roof, const bench_point* p) {
    if (roof->count >= BENCH_ROOFLINE_MAX || p->runs == 0 || p->time_us <= 0.0 ||
        p->weight_bytes <= 0.0) {
        return;
    }
    bench_roof_point* q = &roof->points[roof->count++];
    q->op = p->op;
    q->shape = p->shape->name;
    q->tokens = p->tokens;
    q->intensity = p->flops / p->weight_bytes;
    q->tflops = p->flops / p->time_us * 1e-6;
    q->floor_tflops = p->floor_us > 0.0 ? p->flops / p->floor_us * 1e-6 : 0.0;
}

/* Plot area and axes: log10 x in [-1, 4] flop/byte, log10 y in [-4, 4] TFLOP/s. */
enum { W = 900, H = 600, LEFT = 80, RIGHT = 20, TOP = 40, BOTTOM = 60 };
static const double X_MIN = -1.0, X_MAX = 4.0, Y_MIN = -4.0, Y_MAX = 4.0;

static double px(double intensity) {
    double x = log10(intensity);
    x = x < X_MIN ? X_MIN : (x > X_MAX ? X_MAX : x);
    return LEFT + (x - X_MIN) / (X_MAX - X_MIN) * (W - LEFT - RIGHT);
}

static double py(double tflops) {
    double y = log10(tflops > 1e-12 ? tflops : 1e-12);
    y = y < Y_MIN ? Y_MIN : (y > Y_MAX ? Y_MAX : y);
    return H - BOTTOM - (y - Y_MIN) / (Y_MAX - Y_MIN) * (H - TOP - BOTTOM);
}

void bench_roofline_write_svg(const bench_roofline* roof, const bench_ceilings* c,
                              const char* title, FILE* f) {
    static const char* const colour[BENCH_OP_COUNT] = {"#1f77b4", "#d62728"};
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"14\">roofline: ", LEFT);
    for (const char* s = title; *s; s++) { /* escape the few characters XML reserves */
        fputs(*s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : (char[]){*s, 0}, f);
    }
    fputs("</text>\n", f);
    for (int d = (int)X_MIN; d <= (int)X_MAX; d++) { /* decades */
        double x = px(pow(10.0, d));
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">1e%d</text>\n",
                x, TOP, x, H - BOTTOM, x, H - BOTTOM + 16, d);
    }
    for (int d = (int)Y_MIN; d <= (int)Y_MAX; d++) {
        double y = py(pow(10.0, d));
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
                LEFT, y, W - RIGHT, y, LEFT - 6, y + 4, d);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">FLOPs per byte of MXFP4 weights "
            "read</text>\n",
            (W + LEFT) / 2, H - 18);
    fprintf(f,
            "<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" "
            "text-anchor=\"middle\">TFLOP/s</text>\n",
            H / 2, H / 2);
    /* the roof: memory slope, capped by the compute peak when it is known */
    if (c->copy_GBps > 0.0) {
        fputs("<polyline fill=\"none\" stroke=\"black\" stroke-width=\"2\" points=\"", f);
        for (double x = X_MIN; x <= X_MAX + 1e-9; x += 0.05) {
            double ai = pow(10.0, x);
            double roof_tflops = c->copy_GBps * ai * 1e-3;
            if (c->fp8_TFLOPs > 0.0 && roof_tflops > c->fp8_TFLOPs) {
                roof_tflops = c->fp8_TFLOPs;
            }
            fprintf(f, "%.1f,%.1f ", px(ai), py(roof_tflops));
        }
        fprintf(f, "\"/>\n<text x=\"%d\" y=\"%d\">roof: copy %.0f GB/s%s", LEFT + 8, TOP + 16,
                c->copy_GBps, c->fp8_TFLOPs > 0.0 ? "" : " (compute peak not measured here)");
        if (c->fp8_TFLOPs > 0.0) {
            fprintf(f, ", FP8 %.0f TFLOP/s", c->fp8_TFLOPs);
        }
        fputs("</text>\n", f);
    }
    for (int i = 0; i < roof->count; i++) {
        const bench_roof_point* q = &roof->points[i];
        fprintf(f,
                "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>%s %s n=%lld: "
                "%.3g TFLOP/s, %.3g flop/byte</title></circle>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" fill=\"%s\">%lld</text>\n",
                px(q->intensity), py(q->tflops), colour[q->op], bench_op_names[q->op], q->shape,
                (long long)q->tokens, q->tflops, q->intensity, px(q->intensity) + 5,
                py(q->tflops) - 5, colour[q->op], (long long)q->tokens);
    }
    for (int op = 0; op < BENCH_OP_COUNT; op++) {
        fprintf(f,
                "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s "
                "(labels: tokens)</text>\n",
                W - 260, TOP + 16 + 16 * op, colour[op], W - 250, TOP + 20 + 16 * op,
                bench_op_names[op]);
    }
    fputs("</svg>\n", f);
}
