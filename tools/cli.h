/*
 * cli.h — what the subcommands of the `mxmoe` tool share: the command table, argument parsing,
 * error reporting, backend memory, timing, BF16 conversions and the CPU feature probe.
 *
 * The tool is a plain client of the public headers (include/mxmoe.h, include/mxmoe_io.h); it
 * never reaches into src/. Conventions: results and progress go to stdout, warnings and errors
 * to stderr as "mxmoe <command>: ...", and every failure exits with a non-zero status.
 */
#ifndef MXMOE_TOOLS_CLI_H
#define MXMOE_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe.h"

#if defined(__GNUC__)
#define CLI_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define CLI_PRINTF(fmt_idx, arg_idx)
#endif

/* Exit codes: 0 success, 1 a failed operation or check, 2 a usage error. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* Subcommands: argv[0] is the command's name. */
int cmd_info(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_dequantize(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_bench(int argc, char** argv);

/* "mxmoe <cmd>: error: <message>" on stderr; returns CLI_EXIT_FAILURE. */
int cli_error(const char* cmd, const char* fmt, ...) CLI_PRINTF(2, 3);
/* "mxmoe <cmd>: <message>" + "try 'mxmoe <cmd> --help'" on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char* cmd, const char* fmt, ...) CLI_PRINTF(2, 3);
/* "mxmoe <cmd>: warning: <message>" on stderr. */
void cli_warn(const char* cmd, const char* fmt, ...) CLI_PRINTF(2, 3);

int cli_is_help(const char* arg); /* -h or --help */

/* Option values; each returns 0 on success, -1 (after printing a usage error) otherwise. */
int cli_parse_backend(const char* cmd, const char* text, mxmoe_backend* out);
int cli_parse_rule(const char* cmd, const char* text, mxmoe_scale_rule* out);
/* --gemm-dtype: the layer's moe_params.gemm_dtype, "f32" or "bf16". */
int cli_parse_gemm_dtype(const char* cmd, const char* text, mxmoe_dtype* out);
int cli_parse_int(const char* cmd, const char* option, const char* text, int64_t min, int64_t max,
                  int64_t* out);
/* The value after option argv[*i] (advancing *i), or NULL after a usage error. */
const char* cli_option_value(const char* cmd, int argc, char** argv, int* i);

/* Lower-case rule name for files and messages ("even"). */
const char* cli_rule_name(mxmoe_scale_rule rule);

/* Creates a context for `backend`; on failure prints why and returns NULL. */
mxmoe_ctx* cli_ctx_open(const char* cmd, mxmoe_backend backend);

/* The memory a context computes on: host memory for the CPU backend, device memory for CUDA.
 * cli_tensor is mxmoe_tensor_make with the device of ctx's backend. */
mxmoe_device cli_ctx_device(const mxmoe_ctx* ctx);
mxmoe_tensor cli_tensor(const mxmoe_ctx* ctx, void* data, mxmoe_dtype dtype, int32_t ndim,
                        const int64_t* dims);

/* A host array and its twin in the backend's memory. On a host backend the twin is the array
 * itself (no copy, no extra memory), so CPU runs behave exactly as if the tool had passed its
 * host pointers; on CUDA it is a device allocation and upload/download copy. The environment
 * variable MXMOE_CLI_STAGE=1 makes the twins distinct on the CPU too (tests of the copy paths). */
typedef struct cli_buffer {
    void* host;    /* caller's host memory (may be NULL for a backend-only buffer) */
    void* backend; /* where the backend reads and writes it */
    size_t bytes;
    int owned; /* 1 if `backend` was allocated here (freed by cli_buffer_free) */
} cli_buffer;

/* Sets b up for `bytes` bytes at `host` (NULL: backend memory only, never copied). Returns 0,
 * or prints an error naming `what` and returns -1 (b is then empty and safe to free). */
int cli_buffer_init(const char* cmd, mxmoe_ctx* ctx, cli_buffer* b, void* host, size_t bytes,
                    const char* what);
/* Copies the first `bytes` bytes host -> backend / backend -> host (no-ops on a host backend). */
int cli_buffer_upload(const char* cmd, mxmoe_ctx* ctx, const cli_buffer* b, size_t bytes);
int cli_buffer_download(const char* cmd, mxmoe_ctx* ctx, const cli_buffer* b, size_t bytes);
void cli_buffer_free(mxmoe_ctx* ctx, cli_buffer* b); /* an empty buffer is a no-op */

/* The card's name for reports: for CUDA the device name from the backend detail, for the CPU
 * the CPU model. */
void cli_card_name(const mxmoe_ctx* ctx, char* out, size_t size);

/* Monotonic wall-clock seconds. */
double cli_seconds(void);

/* BF16 (the top half of an FP32) <-> FP32, round to nearest even; NaN stays a quiet NaN. */
uint16_t cli_bf16_from_float(float f);
float cli_float_from_bf16(uint16_t b);

/* CPU description for `mxmoe info`: model name and the SIMD flags that matter to the backend
 * (avx2, fma, f16c, avx512f/bw/vl, avx512_vnni, avx512_vbmi, avx512_bf16, amx, ...). */
void cli_cpu_model(char* out, size_t size);
void cli_cpu_flags(char* out, size_t size);
int cli_cpu_count(void);

#endif /* MXMOE_TOOLS_CLI_H */
