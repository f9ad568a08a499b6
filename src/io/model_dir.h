/*
 * model_dir.h — a Hugging Face model folder: config.json, the safetensors shards and the index
 * that says which shard holds which tensor.
 *
 * Internal to src/io (used by the layer loader and by mxmoe_model_quantize). With an index
 * (model.safetensors.index.json) shards are opened on first use; without one every *.safetensors
 * file of the folder is opened and their tensors merged (a name in two shards is an error).
 * Shard names from an index must be plain file names inside the folder (no '/', not "." or
 * ".."), so an index cannot make the loader open files elsewhere.
 */
#ifndef MXMOE_IO_MODEL_DIR_H
#define MXMOE_IO_MODEL_DIR_H

#include <stddef.h>

#include "io/json_value.h"
#include "mxmoe_io.h"

#define MODEL_CONFIG_NAME "config.json"
#define MODEL_INDEX_NAME  "model.safetensors.index.json"

typedef struct model_dir model_dir;

/* Opens the folder `path`: reads config.json and the index (or opens every shard).
 * Errors: IO (no such folder, no config.json, unreadable shard), FORMAT (malformed JSON,
 * index or shard), NO_MEMORY. */
mxmoe_status model_dir_open(const char* path, model_dir** out, mxmoe_io_error* err);
void model_dir_close(model_dir* d); /* NULL is a no-op */

const char* model_dir_path(const model_dir* d);
/* The parsed config.json (an object). */
const json_value* model_dir_config(const model_dir* d);
/* The index's file name when the folder has one, else NULL; and its "metadata" object (or NULL). */
const char* model_dir_index_name(const model_dir* d);
const json_value* model_dir_index_metadata(const model_dir* d);

/* Looks up tensor `name`. Returns MXMOE_OK with *file and *index set, or with *file = NULL when
 * no shard holds it; an error status if its shard cannot be opened. */
mxmoe_status model_dir_find(model_dir* d, const char* name, mxmoe_st_file** file, size_t* index,
                            mxmoe_io_error* err);
/* The shard's path ("<folder>/model-00001-of-00002.safetensors") for messages. */
const char* model_dir_file_path(const model_dir* d, const mxmoe_st_file* file);

/* The shards, in file-name order; model_dir_shard opens shard i if needed. */
size_t model_dir_shard_count(const model_dir* d);
const char* model_dir_shard_name(const model_dir* d, size_t i);
mxmoe_status model_dir_shard(model_dir* d, size_t i, mxmoe_st_file** file, mxmoe_io_error* err);

/* Reads a whole small file (at most max_bytes) into a NUL-terminated buffer (malloc'd).
 * Errors: IO, FORMAT (larger than max_bytes), NO_MEMORY. */
mxmoe_status model_read_file(const char* path, size_t max_bytes, char** text, size_t* len,
                             mxmoe_io_error* err);
/* "<dir>/<name>" (malloc'd), or NULL when out of memory. */
char* model_join(const char* dir, const char* name);

#endif /* MXMOE_IO_MODEL_DIR_H */
