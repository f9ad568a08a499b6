/*
 * safetensors_write.c — the safetensors writer (mxmoe_io.h).
 *
 * The header is known before any data (shapes and dtypes fix every offset), so the writer emits
 * it first and then accepts tensor bytes in pieces, in any tensor order: a converter can stream
 * a checkpoint far larger than memory. The layout is the reference writer's (dtype size
 * descending, then name), which keeps each tensor aligned to its element size in a mapped file
 * since the header is padded with spaces to a multiple of 8. Output goes to `<path>.tmp` and is
 * renamed into place on success only.
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fseeko */
#endif
#if !defined(_FILE_OFFSET_BITS)
#define _FILE_OFFSET_BITS 64
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "io/io_common.h"
#include "io/json.h"

typedef struct writer_tensor {
    char* name;
    uint64_t offset; /* in the data buffer */
    uint64_t nbytes;
    uint64_t filled; /* bytes appended so far */
} writer_tensor;

struct mxmoe_st_writer {
    char* path;
    char* tmp_path;
    FILE* fp;
    uint64_t data_start;
    uint64_t position;      /* where the stream is, to seek only when a write jumps */
    writer_tensor* tensors; /* in the caller's entry order */
    size_t count;
    int failed;
};

/* ---------------------------------------------------------------------------------------------
 * A growable string for the JSON header
 */
typedef struct text_builder {
    char* buf;
    size_t len, cap;
    int out_of_memory;
} text_builder;

static void put_bytes(text_builder* b, const char* s, size_t n) {
    if (b->out_of_memory) {
        return;
    }
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->len) {
            if (cap > SIZE_MAX / 2) {
                b->out_of_memory = 1;
                return;
            }
            cap *= 2;
        }
        char* p = realloc(b->buf, cap);
        if (p == NULL) {
            b->out_of_memory = 1;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void put_text(text_builder* b, const char* s) {
    put_bytes(b, s, strlen(s));
}

static void put_u64(text_builder* b, uint64_t v) {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put_text(b, tmp);
}

/* A JSON string literal: quotes, backslashes and control characters escaped; other UTF-8 as is. */
static void put_json_string(text_builder* b, const char* s) {
    put_bytes(b, "\"", 1);
    for (const char* p = s; *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            put_bytes(b, esc, 2);
        } else if (ch < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)ch);
            put_bytes(b, esc, 6);
        } else {
            put_bytes(b, p, 1);
        }
    }
    put_bytes(b, "\"", 1);
}

/* ---------------------------------------------------------------------------------------------
 * Validation and layout
 */

typedef struct layout_ref {
    const char* name;
    size_t elsize;
    size_t index;
} layout_ref;

/* The reference writer's order: larger elements first (alignment), then by name. */
static int compare_layout(const void* a, const void* b) {
    const layout_ref* x = a;
    const layout_ref* y = b;
    if (x->elsize != y->elsize) {
        return x->elsize > y->elsize ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static int compare_strings(const void* a, const void* b) {
    return strcmp(*(const char* const*)a, *(const char* const*)b);
}

static mxmoe_status check_entry(const char* path, const mxmoe_st_entry* e, size_t i,
                                uint64_t* nbytes, mxmoe_io_error* err) {
    io_quoted q;
    if (e->name == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "entry %zu has no name", i);
    }
    const char* name = io_quote_head(q, e->name);
    if (!json_utf8_valid(e->name, strlen(e->name))) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path,
                       "tensor '%s': name is not valid UTF-8", name);
    }
    if (strcmp(e->name, "__metadata__") == 0) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path,
                       "tensor '%s': the name is reserved for metadata", name);
    }
    if (mxmoe_st_dtype_name(e->dtype) == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "tensor '%s': invalid dtype %d", name,
                       (int)e->dtype);
    }
    if (e->ndim < 0 || e->ndim > MXMOE_ST_MAX_DIMS) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "tensor '%s': rank %d outside 0..%d",
                       name, (int)e->ndim, MXMOE_ST_MAX_DIMS);
    }
    int64_t numel;
    if (io_shape_numel(e->shape, e->ndim, &numel) != 0 ||
        io_mul_bytes(numel, mxmoe_st_dtype_size(e->dtype), nbytes) != 0) {
        return io_fail(err, MXMOE_ERR_OVERFLOW, path,
                       "tensor '%s': shape has a negative dim or overflows 64-bit sizes", name);
    }
    return MXMOE_OK;
}

/* Checks metadata strings and that no key repeats. */
static mxmoe_status check_metadata(const char* path, const mxmoe_st_kv* metadata, size_t count,
                                   mxmoe_io_error* err) {
    if (count == 0) {
        return MXMOE_OK;
    }
    if (metadata == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "metadata is NULL");
    }
    const char** keys = malloc(count * sizeof *keys);
    if (keys == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    mxmoe_status st = MXMOE_OK;
    io_quoted q;
    for (size_t i = 0; i < count && st == MXMOE_OK; i++) {
        const char* k = metadata[i].key;
        const char* v = metadata[i].value;
        if (k == NULL || v == NULL) {
            st = io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "metadata entry %zu is NULL", i);
        } else if (!json_utf8_valid(k, strlen(k)) || !json_utf8_valid(v, strlen(v))) {
            st = io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path,
                         "metadata entry \"%s\" is not valid UTF-8", io_quote_head(q, k));
        }
        keys[i] = k;
    }
    if (st == MXMOE_OK) {
        qsort(keys, count, sizeof *keys, compare_strings);
        for (size_t i = 1; i < count && st == MXMOE_OK; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                st = io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "duplicate metadata key \"%s\"",
                             io_quote_head(q, keys[i]));
            }
        }
    }
    free(keys);
    return st;
}

/* Validates the entries, sorts them into the layout order, assigns offsets and builds the
 * padded header. */
static mxmoe_status build_header(mxmoe_st_writer* w, const mxmoe_st_entry* entries,
                                 const mxmoe_st_kv* metadata, size_t metadata_count,
                                 text_builder* b, mxmoe_io_error* err) {
    MXMOE_IO_FORWARD(check_metadata(w->path, metadata, metadata_count, err));
    layout_ref* order = malloc((w->count ? w->count : 1) * sizeof *order);
    if (order == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, w->path, "out of memory");
    }
    mxmoe_status st = MXMOE_OK;
    for (size_t i = 0; i < w->count && st == MXMOE_OK; i++) {
        st = check_entry(w->path, &entries[i], i, &w->tensors[i].nbytes, err);
        if (st == MXMOE_OK) {
            size_t n = strlen(entries[i].name);
            w->tensors[i].name = malloc(n + 1);
            if (w->tensors[i].name == NULL) {
                st = io_fail(err, MXMOE_ERR_NO_MEMORY, w->path, "out of memory");
            } else {
                memcpy(w->tensors[i].name, entries[i].name, n + 1);
            }
        }
        order[i].name = entries[i].name;
        order[i].elsize = mxmoe_st_dtype_size(entries[i].dtype);
        order[i].index = i;
    }
    if (st == MXMOE_OK) {
        qsort(order, w->count, sizeof *order, compare_layout);
    }
    io_quoted q;
    if (st == MXMOE_OK && w->count > 1) {
        const char** names = malloc(w->count * sizeof *names);
        if (names == NULL) {
            st = io_fail(err, MXMOE_ERR_NO_MEMORY, w->path, "out of memory");
        } else {
            for (size_t i = 0; i < w->count; i++) {
                names[i] = entries[i].name;
            }
            qsort(names, w->count, sizeof *names, compare_strings);
            for (size_t i = 1; i < w->count && st == MXMOE_OK; i++) {
                if (strcmp(names[i - 1], names[i]) == 0) {
                    st = io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, w->path,
                                 "duplicate tensor name '%s'", io_quote_head(q, names[i]));
                }
            }
            free(names);
        }
    }
    if (st != MXMOE_OK) {
        free(order);
        return st;
    }

    put_text(b, "{");
    int need_comma = 0;
    if (metadata_count > 0) {
        put_text(b, "\"__metadata__\":{");
        for (size_t i = 0; i < metadata_count; i++) {
            put_text(b, i > 0 ? "," : "");
            put_json_string(b, metadata[i].key);
            put_text(b, ":");
            put_json_string(b, metadata[i].value);
        }
        put_text(b, "}");
        need_comma = 1;
    }
    uint64_t offset = 0;
    for (size_t k = 0; k < w->count; k++) {
        size_t i = order[k].index;
        const mxmoe_st_entry* e = &entries[i];
        writer_tensor* t = &w->tensors[i];
        if (t->nbytes > (uint64_t)INT64_MAX - offset) {
            free(order);
            return io_fail(err, MXMOE_ERR_OVERFLOW, w->path, "total size overflows 64 bits");
        }
        t->offset = offset;
        offset += t->nbytes;
        put_text(b, need_comma ? "," : "");
        need_comma = 1;
        put_json_string(b, e->name);
        put_text(b, ":{\"dtype\":\"");
        put_text(b, mxmoe_st_dtype_name(e->dtype));
        put_text(b, "\",\"shape\":[");
        for (int32_t d = 0; d < e->ndim; d++) {
            put_text(b, d > 0 ? "," : "");
            put_u64(b, (uint64_t)e->shape[d]);
        }
        put_text(b, "],\"data_offsets\":[");
        put_u64(b, t->offset);
        put_text(b, ",");
        put_u64(b, t->offset + t->nbytes);
        put_text(b, "]}");
    }
    put_text(b, "}");
    free(order);
    /* Spaces up to a multiple of 8: JSON whitespace, and the data starts 8-byte aligned. */
    while (!b->out_of_memory && b->len % 8 != 0) {
        put_text(b, " ");
    }
    if (b->out_of_memory) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, w->path, "out of memory for the header");
    }
    if (b->len > MXMOE_ST_MAX_HEADER_BYTES) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, w->path,
                       "header of %zu bytes exceeds the %u-byte limit readers accept", b->len,
                       MXMOE_ST_MAX_HEADER_BYTES);
    }
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writer lifetime
 */

static void free_writer(mxmoe_st_writer* w) {
    for (size_t i = 0; i < w->count; i++) {
        free(w->tensors[i].name);
    }
    free(w->tensors);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

void mxmoe_st_writer_abort(mxmoe_st_writer* w) {
    if (w == NULL) {
        return;
    }
    if (w->fp != NULL) {
        fclose(w->fp);
        remove(w->tmp_path);
    }
    free_writer(w);
}

static mxmoe_status write_bytes(mxmoe_st_writer* w, uint64_t at, const void* data, size_t n,
                                const char* what, mxmoe_io_error* err) {
    if (at != w->position) {
        if (at > (uint64_t)INT64_MAX || fseeko(w->fp, (off_t)at, SEEK_SET) != 0) {
            w->failed = 1;
            return io_fail(err, MXMOE_ERR_IO, w->tmp_path, "cannot seek to %s: %s", what,
                           strerror(errno));
        }
        w->position = at;
    }
    if (n > 0 && fwrite(data, 1, n, w->fp) != n) {
        w->failed = 1;
        return io_fail(err, MXMOE_ERR_IO, w->tmp_path, "cannot write %s: %s", what,
                       strerror(errno));
    }
    w->position += n;
    return MXMOE_OK;
}

static char* copy_string(const char* s, const char* suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    char* p = malloc(a + b + 1);
    if (p != NULL) {
        memcpy(p, s, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

mxmoe_status mxmoe_st_writer_open(mxmoe_st_writer** out, const char* path,
                                  const mxmoe_st_entry* entries, size_t count,
                                  const mxmoe_st_kv* metadata, size_t metadata_count,
                                  mxmoe_io_error* err) {
    if (out == NULL || path == NULL || (entries == NULL && count > 0)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path ? path : "(null)",
                       "mxmoe_st_writer_open: NULL argument");
    }
    *out = NULL;
    if (count > SIZE_MAX / sizeof(writer_tensor)) {
        return io_fail(err, MXMOE_ERR_OVERFLOW, path, "too many tensors");
    }
    mxmoe_st_writer* w = calloc(1, sizeof *w);
    if (w == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    w->count = count;
    w->path = copy_string(path, "");
    w->tmp_path = copy_string(path, ".tmp");
    w->tensors = calloc(count ? count : 1, sizeof *w->tensors);
    if (w->path == NULL || w->tmp_path == NULL || w->tensors == NULL) {
        free_writer(w);
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    text_builder b = {0};
    mxmoe_status st = build_header(w, entries, metadata, metadata_count, &b, err);
    if (st == MXMOE_OK) {
        w->fp = fopen(w->tmp_path, "wb");
        if (w->fp == NULL) {
            st = io_fail(err, MXMOE_ERR_IO, w->tmp_path, "cannot create: %s", strerror(errno));
        }
    }
    if (st == MXMOE_OK) {
        unsigned char prefix[8];
        for (int i = 0; i < 8; i++) {
            prefix[i] = (unsigned char)((uint64_t)b.len >> (8 * i));
        }
        st = write_bytes(w, 0, prefix, 8, "the header", err);
        if (st == MXMOE_OK) {
            st = write_bytes(w, 8, b.buf, b.len, "the header", err);
        }
        w->data_start = 8 + (uint64_t)b.len;
    }
    free(b.buf);
    if (st != MXMOE_OK) {
        mxmoe_st_writer_abort(w);
        return st;
    }
    *out = w;
    return io_ok(err);
}

mxmoe_status mxmoe_st_writer_append(mxmoe_st_writer* w, size_t index, const void* data,
                                    size_t bytes, mxmoe_io_error* err) {
    if (w == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, "(null)", "writer is NULL");
    }
    if (w->failed) {
        return io_fail(err, MXMOE_ERR_IO, w->tmp_path, "an earlier write failed");
    }
    if (index >= w->count) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, w->path,
                       "tensor index %zu out of range (%zu tensors)", index, w->count);
    }
    writer_tensor* t = &w->tensors[index];
    io_quoted q;
    if (bytes > t->nbytes - t->filled || (data == NULL && bytes > 0)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, w->path,
                       "tensor '%s': appending %zu bytes to %llu of %llu",
                       io_quote_head(q, t->name), bytes, (unsigned long long)t->filled,
                       (unsigned long long)t->nbytes);
    }
    char what[IO_QUOTE_MAX + 16];
    snprintf(what, sizeof what, "tensor '%s'", q);
    MXMOE_IO_FORWARD(write_bytes(w, w->data_start + t->offset + t->filled, data, bytes, what, err));
    t->filled += bytes;
    return io_ok(err);
}

mxmoe_status mxmoe_st_writer_close(mxmoe_st_writer* w, mxmoe_io_error* err) {
    if (w == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, "(null)", "writer is NULL");
    }
    mxmoe_status st =
        w->failed ? io_fail(err, MXMOE_ERR_IO, w->tmp_path, "an earlier write failed") : MXMOE_OK;
    io_quoted q;
    for (size_t i = 0; i < w->count && st == MXMOE_OK; i++) {
        if (w->tensors[i].filled != w->tensors[i].nbytes) {
            st = io_fail(
                err, MXMOE_ERR_INVALID_ARGUMENT, w->path, "tensor '%s': %llu of %llu bytes written",
                io_quote_head(q, w->tensors[i].name), (unsigned long long)w->tensors[i].filled,
                (unsigned long long)w->tensors[i].nbytes);
        }
    }
    if (st == MXMOE_OK) {
        int flush_failed = fflush(w->fp) != 0 || ferror(w->fp);
        int saved = errno;
        int close_failed = fclose(w->fp) != 0;
        w->fp = NULL;
        if (flush_failed || close_failed) {
            st = io_fail(err, MXMOE_ERR_IO, w->tmp_path, "cannot write: %s",
                         strerror(flush_failed ? saved : errno));
            remove(w->tmp_path);
        } else if (rename(w->tmp_path, w->path) != 0) {
            st = io_fail(err, MXMOE_ERR_IO, w->path, "cannot rename %s into place: %s", w->tmp_path,
                         strerror(errno));
            remove(w->tmp_path);
        }
    }
    if (st != MXMOE_OK) {
        mxmoe_st_writer_abort(w);
        return st;
    }
    free_writer(w);
    return io_ok(err);
}

mxmoe_status mxmoe_st_write(const char* path, const mxmoe_st_entry* entries, size_t count,
                            const mxmoe_st_kv* metadata, size_t metadata_count,
                            mxmoe_io_error* err) {
    mxmoe_st_writer* w;
    MXMOE_IO_FORWARD(mxmoe_st_writer_open(&w, path, entries, count, metadata, metadata_count, err));
    for (size_t i = 0; i < count; i++) {
        size_t bytes = (size_t)w->tensors[i].nbytes;
        if (entries[i].data == NULL && bytes > 0) {
            io_quoted q;
            mxmoe_st_writer_abort(w);
            return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path, "tensor '%s': data is NULL",
                           io_quote_head(q, entries[i].name));
        }
        mxmoe_status st = mxmoe_st_writer_append(w, i, entries[i].data, bytes, err);
        if (st != MXMOE_OK) {
            mxmoe_st_writer_abort(w);
            return st;
        }
    }
    return mxmoe_st_writer_close(w, err);
}
