/*
 * cmd_info.c — `mxmoe info`: what this build is and what it can use here. The first thing to
 * ask for in a bug report.
 */
#include <stdio.h>

#include "cli.h"

static const char* const usage =
    "usage: mxmoe info\n"
    "\n"
    "Prints the library and format versions, the backends compiled in\n"
    "and usable here, the backend AUTO picks, the CPU and its SIMD\n"
    "features, and the GPU when the CUDA backend can run.\n";

/* The detail line of a context on `backend`, or why none could be made. */
static void print_backend_detail(const char* label, mxmoe_backend backend) {
    mxmoe_ctx_params params = mxmoe_ctx_params_default();
    params.backend = backend;
    mxmoe_ctx* ctx = NULL;
    mxmoe_status st = mxmoe_ctx_init(&ctx, &params);
    if (st != MXMOE_OK) {
        printf("%-14s unavailable (%s)\n", label, mxmoe_status_string(st));
        return;
    }
    printf("%-14s %s\n", label, mxmoe_ctx_backend_detail(ctx)); /* it names the backend */
    mxmoe_ctx_free(ctx);
}

/* "available", "compiled, no device" or "not built". */
static const char* backend_state(mxmoe_backend backend) {
    if (mxmoe_backend_available(backend)) {
        return "available";
    }
    return mxmoe_backend_compiled(backend) ? "compiled, no device" : "not built";
}

int cmd_info(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
        return cli_usage_error("info", "unexpected argument '%s'", argv[i]);
    }
    printf("%-14s %s (header %d.%d.%d)\n", "mxmoe", mxmoe_version_string(), MXMOE_VERSION_MAJOR,
           MXMOE_VERSION_MINOR, MXMOE_VERSION_PATCH);
    printf("%-14s %d (E2M1 low nibble first, E8M0 scales [rows, K/32], block 32)\n", "format",
           MXMOE_FORMAT_VERSION);
    printf("%-14s", "backends");
    for (int b = MXMOE_BACKEND_CPU; b < MXMOE_BACKEND_COUNT; b++) {
        printf("%s %s: %s", b == MXMOE_BACKEND_CPU ? "" : ",", mxmoe_backend_name((mxmoe_backend)b),
               backend_state((mxmoe_backend)b));
    }
    printf("\n");
    print_backend_detail("auto picks", MXMOE_BACKEND_AUTO);

    char model[256], flags[512];
    cli_cpu_model(model, sizeof model);
    cli_cpu_flags(flags, sizeof flags);
    printf("%-14s %s, %d logical cores\n", "cpu", model, cli_cpu_count());
    printf("%-14s %s\n", "cpu features", flags);
    if (mxmoe_backend_available(MXMOE_BACKEND_CUDA)) {
        print_backend_detail("gpu", MXMOE_BACKEND_CUDA);
    } else if (mxmoe_backend_compiled(MXMOE_BACKEND_CUDA)) {
        printf("%-14s none: the CUDA backend is compiled in, but no usable CUDA device is "
               "visible\n",
               "gpu");
    } else {
        printf("%-14s none: this build has no CUDA backend (nvcc was not found at configure "
               "time, or -DMXMOE_CUDA=OFF)\n",
               "gpu");
    }
    return CLI_EXIT_OK;
}
