/*
 * gguf.h — a strict reader for GGUF files (llama.cpp / ggml), enough to load MoE layers.
 *
 * Internal to src/io. Format (ggml docs/gguf.md, ggml/src/gguf.cpp): little-endian; magic
 * "GGUF", u32 version (2 or 3), u64 tensor count, u64 KV count; KV pairs (string key, u32 value
 * type, value); tensor infos (string name, u32 n_dims <= 4, u64 ne[n_dims] innermost first, u32
 * ggml type, u64 offset); padding to `general.alignment` (u32, a power of two, default 32);
 * then the tensor data, each tensor at its offset from the data start. Strings are a u64 length
 * and that many bytes.
 *
 * The file is mapped (mmap) and validated once, at open, as strictly as ggml's own reader:
 * counts and lengths checked against the bytes left, no duplicate keys or tensor names, known
 * value and tensor types only, row length a multiple of the type's block, tensor offsets exactly
 * where ggml expects them (each tensor where the previous one ended, rounded up to the
 * alignment), every tensor inside the file. After open, every number handed out is trusted.
 * Keys and tensor names must be UTF-8 without U+0000 (names under 64 bytes, as in ggml).
 * Arrays of arrays and big-endian files are refused (UNSUPPORTED), as ggml does.
 */
#ifndef MXMOE_IO_GGUF_H
#define MXMOE_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe_io.h"

/* GGUF metadata value types (gguf.md `gguf_metadata_value_type`). */
enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* The ggml tensor types the loader converts (ggml.h `enum ggml_type`). */
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_BF16 = 30, GGML_TYPE_MXFP4 = 39 };

#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          64 /* ggml's GGML_MAX_NAME: names are shorter than this */
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_kv {
    char* key;
    uint32_t type;       /* GGUF_TYPE_* */
    uint32_t array_type; /* for arrays: the element type */
    uint64_t array_count;
    union {
        uint64_t u; /* unsigned integers and bool */
        int64_t i;  /* signed integers */
        double f;   /* floats */
    } value;
    char* string; /* STRING values: NUL-terminated copy (NULL if it holds U+0000) */
    uint64_t string_len;
} gguf_kv;

typedef struct gguf_tensor {
    char* name;
    uint32_t type; /* ggml type */
    int32_t ndim;
    int64_t ne[GGUF_MAX_DIMS]; /* innermost first (ne[0] = row length); unused dims are 1 */
    uint64_t offset;           /* from the start of the data section */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and validates a GGUF file. Errors: IO, FORMAT, UNSUPPORTED, NO_MEMORY; messages name the
 * file and, where there is one, the key or tensor. */
mxmoe_status gguf_open(const char* path, gguf_file** out, mxmoe_io_error* err);
/* The same over an image in memory (borrowed: it must outlive the handle), e.g. for fuzzing. */
mxmoe_status gguf_open_memory(const void* data, size_t size, const char* display_name,
                              gguf_file** out, mxmoe_io_error* err);
void gguf_close(gguf_file* f); /* NULL is a no-op */

const char* gguf_display_name(const gguf_file* f);
uint32_t gguf_version(const gguf_file* f);
uint64_t gguf_alignment(const gguf_file* f);

size_t gguf_kv_count(const gguf_file* f);
const gguf_kv* gguf_kv_at(const gguf_file* f, size_t index);
const gguf_kv* gguf_find_kv(const gguf_file* f, const char* key);
/* Typed reads of a scalar KV: 1 and *out set when `key` exists with a compatible type (any
 * integer type that fits for _uint; any integer or float for _float; BOOL for _bool; STRING for
 * _string), 0 when absent, -1 when present with another type or out of range. */
int gguf_get_uint(const gguf_file* f, const char* key, uint64_t* out);
int gguf_get_float(const gguf_file* f, const char* key, double* out);
int gguf_get_bool(const gguf_file* f, const char* key, int* out);
int gguf_get_string(const gguf_file* f, const char* key, const char** out);

size_t gguf_tensor_count(const gguf_file* f);
const gguf_tensor* gguf_tensor_at(const gguf_file* f, size_t index);
const gguf_tensor* gguf_find_tensor(const gguf_file* f, const char* name);
/* Pointer to a tensor's bytes (in the mapping or the memory image), valid until gguf_close. */
const void* gguf_tensor_data(const gguf_file* f, const gguf_tensor* t);

/* A ggml type's name ("mxfp4", "q4_K") or NULL for an unknown type; its block size and bytes per
 * block (0 when unknown). */
const char* gguf_type_name(uint32_t ggml_type);
int gguf_type_block(uint32_t ggml_type, uint32_t* block_size, uint32_t* type_size);

#endif /* MXMOE_IO_GGUF_H */
