/*
 * cli.h — what the subcommands of the `mxmoe` tool share: the command table, argument parsing,
 * error reporting, timing, BF16 conversions and the CPU feature probe.
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
int cli_parse_int(const char* cmd, const char* option, const char* text, int64_t min, int64_t max,
                  int64_t* out);
/* The value after option argv[*i] (advancing *i), or NULL after a usage error. */
const char* cli_option_value(const char* cmd, int argc, char** argv, int* i);

/* Lower-case rule name for files and messages ("even"). */
const char* cli_rule_name(mxmoe_scale_rule rule);

/* Creates a context for `backend`; on failure prints why and returns NULL. */
mxmoe_ctx* cli_ctx_open(const char* cmd, mxmoe_backend backend);

/* The tool moves tensors between files and the library in host memory. A CUDA context needs
 * device pointers, and the public API has no device allocation or copy yet, so the tool can
 * only drive host backends: returns 1 if `ctx` computes on host memory, else prints why not
 * and returns 0. */
int cli_ctx_uses_host_memory(const char* cmd, mxmoe_ctx* ctx);

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
