/*
 * model_cli.h — the CLI commands over real checkpoints (include/mxmoe_model.h): `mxmoe run`, and
 * the model-folder mode of `mxmoe quantize`.
 */
#ifndef MXMOE_TOOLS_MODEL_CLI_H
#define MXMOE_TOOLS_MODEL_CLI_H

#include "mxmoe.h"

/* `mxmoe run MODEL --layer L ...` (cmd_run.c). */
int cmd_run(int argc, char** argv);

/* `mxmoe quantize MODEL_DIR OUT_DIR`: quantizes a Hugging Face model folder with
 * mxmoe_model_quantize, with a progress bar when stdout is a terminal
 * (cmd_quantize_model.c). Returns the exit code. */
int cli_quantize_model(const char* cmd, const char* in_dir, const char* out_dir,
                       mxmoe_scale_rule rule, mxmoe_backend backend);

/* 1 if `path` is a folder. */
int cli_is_folder(const char* path);

#endif /* MXMOE_TOOLS_MODEL_CLI_H */
