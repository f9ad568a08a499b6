/*
 * mxmoe_io.h — file formats of libmxmoe: a strict safetensors reader and writer.
 *
 * safetensors (https://github.com/huggingface/safetensors, README "Format"): an 8-byte
 * little-endian header length N, N bytes of UTF-8 JSON mapping tensor names to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the byte buffer that
 * follows the header, end exclusive) plus an optional "__metadata__" string->string map, then the
 * byte buffer. Data is little-endian, C order.
 *
 * The reader is strict: anything the format does not allow is refused with MXMOE_ERR_FORMAT
 * (malformed or non-UTF-8 JSON, numbers that are not non-negative integers, duplicate keys,
 * unknown keys in a tensor entry, trailing bytes other than JSON whitespace after the header
 * object, an unknown or sub-byte dtype, shape x dtype size != end - begin, offsets past the
 * buffer, overlapping tensors, gaps or trailing bytes in the buffer, a header over 100 MB).
 * Validation happens once, at open; later calls only use validated numbers.
 *
 * Errors: every fallible call returns an mxmoe_status (mxmoe.h) and, when `err` is not NULL,
 * writes a readable message into err->message that names the file and, where there is one, the
 * tensor: "model.safetensors: tensor 'w1': data_offsets [0, 10] hold 10 bytes, shape [2, 3] of
 * F32 needs 24". On success err->message is "". The library never prints.
 *
 * Threads: a reader or writer handle is used by one thread at a time.
 */
#ifndef MXMOE_IO_H
#define MXMOE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Errors
 */
#define MXMOE_IO_ERROR_SIZE 512

/* A caller-owned message buffer, filled by every fallible I/O call that is given one. */
typedef struct mxmoe_io_error {
    char message[MXMOE_IO_ERROR_SIZE];
} mxmoe_io_error;

/* ---------------------------------------------------------------------------------------------
 * safetensors element types (the byte-sized ones; sub-byte F4 / F6_* are refused)
 */
typedef enum mxmoe_st_dtype {
    MXMOE_ST_BOOL = 0,
    MXMOE_ST_U8 = 1,
    MXMOE_ST_I8 = 2,
    MXMOE_ST_F8_E5M2 = 3,
    MXMOE_ST_F8_E4M3 = 4,
    MXMOE_ST_F8_E8M0 = 5,
    MXMOE_ST_F8_E4M3FNUZ = 6,
    MXMOE_ST_F8_E5M2FNUZ = 7,
    MXMOE_ST_I16 = 8,
    MXMOE_ST_U16 = 9,
    MXMOE_ST_F16 = 10,
    MXMOE_ST_BF16 = 11,
    MXMOE_ST_I32 = 12,
    MXMOE_ST_U32 = 13,
    MXMOE_ST_F32 = 14,
    MXMOE_ST_I64 = 15,
    MXMOE_ST_U64 = 16,
    MXMOE_ST_F64 = 17,
    MXMOE_ST_C64 = 18,
    MXMOE_ST_DTYPE_COUNT
} mxmoe_st_dtype;

/* The dtype's name as written in a header ("F32"), or NULL for an invalid value. */
MXMOE_API const char* mxmoe_st_dtype_name(mxmoe_st_dtype dtype);
/* Bytes of one element, 0 for an invalid value. */
MXMOE_API size_t mxmoe_st_dtype_size(mxmoe_st_dtype dtype);
/* Parses a header dtype name. Returns 1 and sets *out when `name` is a supported dtype, else 0. */
MXMOE_API int mxmoe_st_dtype_from_name(const char* name, mxmoe_st_dtype* out);
/* The mxmoe.h dtype with the same meaning (F32, BF16, F16, U8, I32). Returns 1 and sets *out,
 * or 0 when the library's compute API has no such dtype. */
MXMOE_API int mxmoe_st_dtype_to_mxmoe(mxmoe_st_dtype dtype, mxmoe_dtype* out);

/* Ranks above this are refused (checkpoints use at most 5). */
#define MXMOE_ST_MAX_DIMS 8
/* The largest header accepted, as in the reference implementation (safetensors tensor.rs). */
#define MXMOE_ST_MAX_HEADER_BYTES 100000000u
/* mxmoe_st_find's answer for a name that is not in the file. */
#define MXMOE_ST_NOT_FOUND ((size_t)-1)

/* One tensor of an opened file. */
typedef struct mxmoe_st_tensor_info {
    const char* name; /* UTF-8, NUL-terminated (names holding U+0000 are refused) */
    mxmoe_st_dtype dtype;
    int32_t ndim;                     /* 0..MXMOE_ST_MAX_DIMS; 0 = a scalar (one element) */
    int64_t shape[MXMOE_ST_MAX_DIMS]; /* outermost first; entries beyond ndim are 1 */
    uint64_t offset;                  /* data_offsets[0]: byte offset in the data buffer */
    uint64_t nbytes;                  /* data_offsets[1] - data_offsets[0] = numel x dtype size */
    int64_t numel;
} mxmoe_st_tensor_info;

/* A metadata entry ("__metadata__" in a file), both strings UTF-8 and NUL-terminated. */
typedef struct mxmoe_st_kv {
    const char* key;
    const char* value;
} mxmoe_st_kv;

/* ---------------------------------------------------------------------------------------------
 * Reader
 */
typedef struct mxmoe_st_file mxmoe_st_file;

/* Opens and validates a safetensors file. The file is mapped read-only (mmap) and its header
 * parsed in place; tensor bytes are then reachable zero-copy through mxmoe_st_data, and pages
 * are read by the kernel only when touched. Where the file cannot be mapped, or the environment
 * variable MXMOE_NO_MMAP is set (to anything but "" or "0"), the handle reads with pread instead:
 * the header at open, tensors on demand by mxmoe_st_read (mxmoe_st_data then returns NULL).
 * A mapped file must not be truncated while open (reading a vanished page raises SIGBUS, as with
 * any mapping). Errors: IO (cannot open or read; not a regular file), FORMAT (malformed
 * content), NO_MEMORY. `*out` is NULL on failure. */
MXMOE_API mxmoe_status mxmoe_st_open(const char* path, mxmoe_st_file** out, mxmoe_io_error* err);

/* The same validation over a file image in memory (`size` bytes at `data`), e.g. for fuzzing or
 * embedded weights. The image is borrowed, not copied: it must outlive the handle.
 * `display_name` (may be NULL) names the image in messages. */
MXMOE_API mxmoe_status mxmoe_st_open_memory(const void* data, size_t size, const char* display_name,
                                            mxmoe_st_file** out, mxmoe_io_error* err);

/* Closes the file and frees every string and info the handle gave out. NULL is a no-op. */
MXMOE_API void mxmoe_st_close(mxmoe_st_file* file);

/* Tensors, in the order the header lists them. */
MXMOE_API size_t mxmoe_st_count(const mxmoe_st_file* file);
/* Info of tensor `index` (< mxmoe_st_count), or NULL if out of range. Owned by the handle. */
MXMOE_API const mxmoe_st_tensor_info* mxmoe_st_info(const mxmoe_st_file* file, size_t index);
/* Index of the tensor called `name`, or MXMOE_ST_NOT_FOUND. */
MXMOE_API size_t mxmoe_st_find(const mxmoe_st_file* file, const char* name);

/* The "__metadata__" entries in header order (*count = 0 and possibly NULL when absent). */
MXMOE_API const mxmoe_st_kv* mxmoe_st_metadata(const mxmoe_st_file* file, size_t* count);
/* The value of metadata `key`, or NULL. */
MXMOE_API const char* mxmoe_st_metadata_get(const mxmoe_st_file* file, const char* key);

/* Copies `bytes` bytes of tensor `index`, starting at byte `offset` of the tensor, to `dst`
 * (a whole tensor: offset 0, bytes = info->nbytes; a range lets callers stream large tensors).
 * Bytes are returned as stored: little-endian, as the format defines.
 * Errors: INVALID_ARGUMENT (index or range outside the tensor), IO (read failed, e.g. the file
 * shrank since it was opened). */
MXMOE_API mxmoe_status mxmoe_st_read(mxmoe_st_file* file, size_t index, uint64_t offset, void* dst,
                                     size_t bytes, mxmoe_io_error* err);

/* Direct pointer to tensor `index`'s bytes, valid until mxmoe_st_close: into the mapping of a
 * file, or into the image of mxmoe_st_open_memory. NULL when the file is read with pread (see
 * mxmoe_st_open) or index is out of range. Aligned only as well as the data sits in the file
 * (files from the reference writer align each tensor to its element size). */
MXMOE_API const void* mxmoe_st_data(const mxmoe_st_file* file, size_t index);

/* ---------------------------------------------------------------------------------------------
 * Writer
 *
 * Tensors are laid out like the reference writer does (decreasing dtype size, then name, so
 * every tensor is aligned to its element size in a mapped file); the header is padded with
 * spaces to a multiple of 8 bytes. The file is written as `<path>.tmp` and renamed to `path` only
 * when complete, so a failed write never leaves a truncated file under the real name.
 */

/* One tensor to write. `data` is read by mxmoe_st_write only (ignored by the streaming writer). */
typedef struct mxmoe_st_entry {
    const char* name; /* non-NULL, valid UTF-8 without U+0000, not "__metadata__", unique */
    mxmoe_st_dtype dtype;
    int32_t ndim; /* 0..MXMOE_ST_MAX_DIMS */
    int64_t shape[MXMOE_ST_MAX_DIMS];
    const void* data; /* numel x dtype size bytes, little-endian */
} mxmoe_st_entry;

typedef struct mxmoe_st_writer mxmoe_st_writer;

/* Validates the entries and metadata (keys unique, valid UTF-8), creates `<path>.tmp` and writes
 * the header. Errors: INVALID_ARGUMENT (bad entry or metadata), OVERFLOW, IO, NO_MEMORY. */
MXMOE_API mxmoe_status mxmoe_st_writer_open(mxmoe_st_writer** out, const char* path,
                                            const mxmoe_st_entry* entries, size_t count,
                                            const mxmoe_st_kv* metadata, size_t metadata_count,
                                            mxmoe_io_error* err);
/* Appends `bytes` bytes to tensor `index` (entries are filled front to back, each in any number
 * of pieces, tensors in any order). Errors: INVALID_ARGUMENT (more bytes than the tensor has),
 * IO. After an error the writer can only be aborted. */
MXMOE_API mxmoe_status mxmoe_st_writer_append(mxmoe_st_writer* writer, size_t index,
                                              const void* data, size_t bytes, mxmoe_io_error* err);
/* Checks every tensor is complete, flushes and renames the file into place, frees the writer
 * (also on failure, which removes the temporary file). Errors: INVALID_ARGUMENT (a tensor is
 * incomplete), IO. */
MXMOE_API mxmoe_status mxmoe_st_writer_close(mxmoe_st_writer* writer, mxmoe_io_error* err);
/* Discards the temporary file and frees the writer. NULL is a no-op. */
MXMOE_API void mxmoe_st_writer_abort(mxmoe_st_writer* writer);

/* Writes a whole file in one call: every entry's `data` must be set. */
MXMOE_API mxmoe_status mxmoe_st_write(const char* path, const mxmoe_st_entry* entries, size_t count,
                                      const mxmoe_st_kv* metadata, size_t metadata_count,
                                      mxmoe_io_error* err);

#ifdef __cplusplus
}
#endif

#endif /* MXMOE_IO_H */
