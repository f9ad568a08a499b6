/*
 * convert.h — the machinery `mxmoe quantize` and `mxmoe dequantize` share: a list of output
 * tensors built from the input's header, metadata editing, chunked copies, and opening files
 * with messages that name them.
 *
 * Both commands stream: the output header is fixed from the input header alone, then each
 * tensor is read, converted and appended in row chunks (CONVERT_CHUNK_BYTES of input at a time),
 * so a checkpoint of any size converts in bounded memory.
 */
#ifndef MXMOE_TOOLS_CONVERT_H
#define MXMOE_TOOLS_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe.h"
#include "mxmoe_io.h"

#define CONVERT_CHUNK_BYTES ((size_t)64 << 20)

/* The tensors of the output file, in the order they are produced. Names are owned. */
typedef struct convert_outputs {
    mxmoe_st_entry* entries;
    size_t count, capacity;
} convert_outputs;

/* Appends an output tensor named prefix + suffix; returns its index, or -1 when out of memory. */
int64_t convert_add(convert_outputs* o, const char* prefix, const char* suffix,
                    mxmoe_st_dtype dtype, int32_t ndim, const int64_t* shape);
void convert_outputs_free(convert_outputs* o);
/* 0 if every output name is distinct, else prints an error naming the clash and returns -1. */
int convert_check_unique(const char* cmd, const convert_outputs* o);

/* Output metadata: the input's entries with the keys in `drop` (NULL-terminated list; prefix
 * match when the entry ends in '*') removed, then `add` (count pairs) appended. Strings are
 * borrowed from the input file and from `add`. */
typedef struct convert_metadata {
    mxmoe_st_kv* kv;
    size_t count;
} convert_metadata;
int convert_metadata_build(const mxmoe_st_file* in, const char* const* drop, const mxmoe_st_kv* add,
                           size_t add_count, convert_metadata* out);
void convert_metadata_free(convert_metadata* m);

/* Opens `path`, printing "mxmoe <cmd>: error: <reader message>" on failure. */
mxmoe_st_file* convert_open_input(const char* cmd, const char* path);

/* Copies input tensor `in_index` into output `out_index` in chunks. Returns 0 or prints and -1. */
int convert_copy_tensor(const char* cmd, mxmoe_st_file* in, size_t in_index, mxmoe_st_writer* out,
                        size_t out_index);

/* "BF16 [5760, 2880]" for progress lines. */
void convert_describe(char* buf, size_t size, mxmoe_st_dtype dtype, int32_t ndim,
                      const int64_t* shape);

/* The command line of both commands: IN OUT [--backend NAME] and, where `rule` is not NULL,
 * [--rule NAME]. Returns -1 once parsed (paths, rule and backend filled), otherwise the exit
 * code to return at once (help printed, or a usage error). */
int convert_parse_args(const char* cmd, const char* usage, int argc, char** argv,
                       const char* paths[2], mxmoe_scale_rule* rule, mxmoe_backend* backend);

/* Closes the output after a successful run (rc == 0), else removes it; returns the new rc. */
int convert_close_output(const char* cmd, mxmoe_st_writer* out, int rc);

/* How many of `rows_total` rows of `row_bytes` bytes make one chunk (at least 1). */
int64_t convert_chunk_rows(int64_t rows_total, uint64_t row_bytes);

#endif /* MXMOE_TOOLS_CONVERT_H */
