/*
 * main.c — the `mxmoe` command-line tool: dispatch to one subcommand per file (cmd_*.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model_cli.h"

typedef struct command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "version, backends, CPU features and GPU"},
    {"quantize", cmd_quantize, "BF16/F16/F32 safetensors -> MXFP4 (X_packed + X_scale)"},
    {"dequantize", cmd_dequantize, "MXFP4 safetensors (X_packed + X_scale) -> F32"},
    {"demo", cmd_demo, "a gpt-oss-20b-shaped MoE layer: quantize, run, verify, time"},
    {"run", cmd_run, "one MoE layer of a checkpoint (model folder or GGUF) on any backend"},
    {"bench", cmd_bench, "time a grouped projection or a MoE layer (JSON for bench/ scripts)"},
};

static void print_usage(FILE* out) {
    fprintf(out,
            "usage: mxmoe <command> [options]\n"
            "\n"
            "MXFP4 W4A4 Mixture-of-Experts inference (libmxmoe %s).\n"
            "\n"
            "commands:\n",
            mxmoe_version_string());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(out, "\n'mxmoe <command> --help' describes a command's options.\n");
}

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mxmoe %s (format version %d)\n", mxmoe_version_string(), MXMOE_FORMAT_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "mxmoe: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}
