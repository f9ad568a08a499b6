/*
 * safetensors_read.c — the strict safetensors reader (mxmoe_io.h).
 *
 * Everything is validated once, at open, against the format as the reference implementation
 * defines it (huggingface/safetensors `tensor.rs`): header length <= 100 MB and inside the file,
 * a UTF-8 JSON object of tensor entries plus an optional "__metadata__" string map, known
 * dtypes, shape x dtype size == end - begin, and tensors that tile the data buffer exactly (no
 * overlap, no gap, nothing after the last one). After that every number the handle gives out is
 * trusted, so reads are plain offset arithmetic.
 *
 * The header parser works on a byte image (`parse_header`), the same for files and for memory,
 * which is what a fuzzer drives (mxmoe_st_open_memory). A file is mapped read-only (mmap), so
 * its header is parsed in place and tensor data is handed out zero-copy (mxmoe_st_data); pages
 * are read by the kernel only when touched. Where mapping fails (or MXMOE_NO_MMAP is set) the
 * handle falls back to pread: only the header is read at open, tensors on demand.
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* open, pread, fstat, mmap */
#endif
#if !defined(_FILE_OFFSET_BITS)
#define _FILE_OFFSET_BITS 64 /* files over 2 GB on 32-bit hosts */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/io_common.h"
#include "io/json.h"

struct mxmoe_st_file {
    char* display;              /* the path or display name, for messages */
    int fd;                     /* the open file (mapped or read with pread); -1 in memory */
    const unsigned char* image; /* the whole file image: borrowed memory or the mapping */
    void* mapping;              /* the mmap of a file (owned), or NULL */
    size_t mapping_size;
    uint64_t data_start; /* 8 + header length: where the data buffer begins */
    uint64_t data_size;  /* bytes of the data buffer */

    mxmoe_st_tensor_info* tensors; /* header order; names owned (malloc'd) */
    size_t count;
    size_t capacity;
    size_t* by_name; /* tensor indices sorted by name, for mxmoe_st_find */

    mxmoe_st_kv* metadata; /* header order; strings owned */
    size_t metadata_count;
    size_t metadata_capacity;
    int has_metadata;
};

/* ---------------------------------------------------------------------------------------------
 * Handle lifetime
 */

void mxmoe_st_close(mxmoe_st_file* f) {
    if (f == NULL) {
        return;
    }
    if (f->fd >= 0) {
        close(f->fd);
    }
    if (f->mapping != NULL) {
        munmap(f->mapping, f->mapping_size);
    }
    for (size_t i = 0; i < f->count; i++) {
        free((char*)f->tensors[i].name);
    }
    for (size_t i = 0; i < f->metadata_count; i++) {
        free((char*)f->metadata[i].key);
        free((char*)f->metadata[i].value);
    }
    free(f->tensors);
    free(f->by_name);
    free(f->metadata);
    free(f->display);
    free(f);
}

static mxmoe_st_file* new_handle(const char* display) {
    mxmoe_st_file* f = calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL;
    }
    f->fd = -1;
    size_t n = strlen(display);
    f->display = malloc(n + 1);
    if (f->display == NULL) {
        free(f);
        return NULL;
    }
    memcpy(f->display, display, n + 1);
    return f;
}

/* Grows an array of `elem` bytes per item to hold one more; -1 when out of memory. */
static int grow(void** items, size_t* capacity, size_t count, size_t elem) {
    if (count < *capacity) {
        return 0;
    }
    size_t want = *capacity ? *capacity * 2 : 16;
    if (want > SIZE_MAX / elem) {
        return -1;
    }
    void* p = realloc(*items, want * elem);
    if (p == NULL) {
        return -1;
    }
    *items = p;
    *capacity = want;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Header parsing
 */

/* A JSON error: "<file>: header offset N: <what>". */
static mxmoe_status json_error(const mxmoe_st_file* f, const json_cursor* c, mxmoe_io_error* err) {
    return io_fail(err, MXMOE_ERR_FORMAT, f->display, "%s", c->error);
}

/* Names of header dtypes the reader knows but refuses, so the message can say why. */
static int is_sub_byte_dtype(const char* name) {
    return strcmp(name, "F4") == 0 || strcmp(name, "F6_E2M3") == 0 || strcmp(name, "F6_E3M2") == 0;
}

/* Parses a JSON array of non-negative integers into out[0..*n), at most `max` of them. */
static int parse_uint_array(json_cursor* c, int64_t* out, int32_t max, int32_t* n,
                            const char* what) {
    *n = 0;
    if (json_array_begin(c) != 0) {
        return -1;
    }
    int first = 1, more;
    while ((more = json_array_next(c, &first)) == 1) {
        int64_t v;
        if (json_parse_int64(c, &v) != 0) {
            return -1;
        }
        if (v < 0) {
            return json_fail(c, "negative value %lld in %s", (long long)v, what);
        }
        if (*n >= max) {
            return json_fail(c, "%s has more than %d entries", what, (int)max);
        }
        out[(*n)++] = v;
    }
    return more;
}

/* Checks one parsed entry: dtype known, sizes consistent, inside the buffer. */
static mxmoe_status check_tensor_entry(mxmoe_st_file* f, const char* qname, const char* dtype_name,
                                       const int64_t offsets[2], mxmoe_st_tensor_info* t,
                                       mxmoe_io_error* err) {
    io_quoted qdtype;
    if (!mxmoe_st_dtype_from_name(dtype_name, &t->dtype)) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display, "tensor '%s': %s dtype \"%s\"", qname,
                       is_sub_byte_dtype(dtype_name) ? "unsupported sub-byte" : "unknown",
                       io_quote_head(qdtype, dtype_name));
    }
    for (int32_t i = t->ndim; i < MXMOE_ST_MAX_DIMS; i++) {
        t->shape[i] = 1;
    }
    char shape_text[200];
    io_format_shape(shape_text, sizeof shape_text, t->shape, t->ndim);
    uint64_t want;
    if (io_shape_numel(t->shape, t->ndim, &t->numel) != 0 ||
        io_mul_bytes(t->numel, mxmoe_st_dtype_size(t->dtype), &want) != 0) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "tensor '%s': shape %s of %s overflows 64-bit sizes", qname, shape_text,
                       dtype_name);
    }
    if (offsets[1] < offsets[0]) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "tensor '%s': data_offsets [%lld, %lld] end before they begin", qname,
                       (long long)offsets[0], (long long)offsets[1]);
    }
    uint64_t have = (uint64_t)offsets[1] - (uint64_t)offsets[0];
    if (have != want) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "tensor '%s': data_offsets [%lld, %lld] hold %llu bytes, shape %s of %s "
                       "needs %llu",
                       qname, (long long)offsets[0], (long long)offsets[1],
                       (unsigned long long)have, shape_text, dtype_name, (unsigned long long)want);
    }
    if ((uint64_t)offsets[1] > f->data_size) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "tensor '%s': data_offsets [%lld, %lld] run past the end of the %llu-byte "
                       "data buffer",
                       qname, (long long)offsets[0], (long long)offsets[1],
                       (unsigned long long)f->data_size);
    }
    t->offset = (uint64_t)offsets[0];
    t->nbytes = have;
    return MXMOE_OK;
}

/* One tensor entry: {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, keys in any
 * order, each exactly once, nothing else (the reference reader ignores unknown keys; a strict
 * reader refuses them, so a misspelt key is caught instead of silently defaulted). */
static mxmoe_status parse_tensor_entry(mxmoe_st_file* f, json_cursor* c, const char* name,
                                       mxmoe_st_tensor_info* t, mxmoe_io_error* err) {
    io_quoted qname;
    io_quote_head(qname, name);
    int have_shape = 0, have_offsets = 0;
    int64_t offsets[2] = {0, 0};
    char* dtype_name = NULL;
    size_t dtype_len = 0;
    if (json_object_begin(c) != 0) {
        return json_error(f, c, err);
    }
    int first = 1, more;
    char* key;
    size_t key_len;
    while ((more = json_object_next(c, &first, &key, &key_len)) == 1) {
        int rc;
        if (key_len == 5 && strcmp(key, "dtype") == 0) {
            if (dtype_name != NULL) {
                rc = json_fail(c, "tensor '%s': duplicate key \"dtype\"", qname);
            } else if (json_peek(c) != '"') {
                rc = json_fail(c, "tensor '%s': dtype must be a string", qname);
            } else {
                rc = json_parse_string(c, &dtype_name, &dtype_len);
            }
        } else if (key_len == 5 && strcmp(key, "shape") == 0) {
            rc = have_shape ? json_fail(c, "tensor '%s': duplicate key \"shape\"", qname)
                            : parse_uint_array(c, t->shape, MXMOE_ST_MAX_DIMS, &t->ndim, "shape");
            have_shape = 1;
        } else if (key_len == 12 && strcmp(key, "data_offsets") == 0) {
            int32_t n = 2;
            rc = have_offsets ? json_fail(c, "tensor '%s': duplicate key \"data_offsets\"", qname)
                              : parse_uint_array(c, offsets, 2, &n, "data_offsets");
            if (rc == 0 && n != 2) {
                rc = json_fail(c, "tensor '%s': data_offsets must hold 2 integers, not %d", qname,
                               (int)n);
            }
            have_offsets = 1;
        } else {
            io_quoted qkey;
            rc =
                json_fail(c, "tensor '%s': unexpected key \"%s\"", qname, io_quote_head(qkey, key));
        }
        free(key);
        if (rc != 0) {
            free(dtype_name);
            return json_error(f, c, err);
        }
    }
    mxmoe_status st = MXMOE_OK;
    if (more < 0) {
        st = json_error(f, c, err);
    } else if (dtype_name == NULL || !have_shape || !have_offsets) {
        st = io_fail(err, MXMOE_ERR_FORMAT, f->display, "tensor '%s': missing key \"%s\"", qname,
                     dtype_name == NULL ? "dtype"
                     : !have_shape      ? "shape"
                                        : "data_offsets");
    } else if (dtype_len != strlen(dtype_name)) {
        st = io_fail(err, MXMOE_ERR_FORMAT, f->display, "tensor '%s': unknown dtype", qname);
    } else {
        st = check_tensor_entry(f, qname, dtype_name, offsets, t, err);
    }
    free(dtype_name);
    return st;
}

/* "__metadata__": {"key": "value", ...}, string values only. */
static mxmoe_status parse_metadata(mxmoe_st_file* f, json_cursor* c, mxmoe_io_error* err) {
    if (json_object_begin(c) != 0) {
        return json_error(f, c, err);
    }
    int first = 1, more;
    char* key;
    size_t key_len;
    while ((more = json_object_next(c, &first, &key, &key_len)) == 1) {
        char* value = NULL;
        size_t value_len = 0;
        io_quoted qkey;
        if (json_peek(c) != '"') {
            json_fail(c, "__metadata__ value of \"%s\" must be a string", io_quote_head(qkey, key));
        } else {
            json_parse_string(c, &value, &value_len);
        }
        if (c->failed) {
            free(key);
            return json_error(f, c, err);
        }
        mxmoe_status st = MXMOE_OK;
        if (key_len != strlen(key) || value_len != strlen(value)) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display,
                         "__metadata__ entry \"%s\" holds U+0000", io_quote_head(qkey, key));
        } else if (grow((void**)&f->metadata, &f->metadata_capacity, f->metadata_count,
                        sizeof *f->metadata) != 0) {
            st = io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory for metadata");
        }
        if (st != MXMOE_OK) {
            free(key);
            free(value);
            return st;
        }
        f->metadata[f->metadata_count].key = key;
        f->metadata[f->metadata_count].value = value;
        f->metadata_count++;
    }
    return more < 0 ? json_error(f, c, err) : MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Whole-header checks: unique names, tensors tiling the data buffer
 */

typedef struct name_ref {
    const char* name;
    size_t index;
} name_ref;

static int compare_name_ref(const void* a, const void* b) {
    const name_ref* x = a;
    const name_ref* y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

typedef struct span_ref {
    uint64_t begin, end;
    size_t index;
} span_ref;

static int compare_span_ref(const void* a, const void* b) {
    const span_ref* x = a;
    const span_ref* y = b;
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    if (x->end != y->end) {
        return x->end < y->end ? -1 : 1;
    }
    return (x->index > y->index) - (x->index < y->index);
}

/* Sorts names, refuses duplicates, keeps the sorted order for mxmoe_st_find. */
static mxmoe_status check_unique_names(mxmoe_st_file* f, mxmoe_io_error* err) {
    size_t n = f->count > f->metadata_count ? f->count : f->metadata_count;
    name_ref* refs = malloc((n ? n : 1) * sizeof *refs);
    if (refs == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory");
    }
    io_quoted q;
    for (size_t i = 0; i < f->metadata_count; i++) {
        refs[i].name = f->metadata[i].key;
        refs[i].index = i;
    }
    qsort(refs, f->metadata_count, sizeof *refs, compare_name_ref);
    for (size_t i = 1; i < f->metadata_count; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            io_quote_head(q, refs[i].name);
            free(refs);
            return io_fail(err, MXMOE_ERR_FORMAT, f->display, "duplicate __metadata__ key \"%s\"",
                           q);
        }
    }
    for (size_t i = 0; i < f->count; i++) {
        refs[i].name = f->tensors[i].name;
        refs[i].index = i;
    }
    qsort(refs, f->count, sizeof *refs, compare_name_ref);
    for (size_t i = 1; i < f->count; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            io_quote_head(q, refs[i].name);
            free(refs);
            return io_fail(err, MXMOE_ERR_FORMAT, f->display, "duplicate tensor name '%s'", q);
        }
    }
    f->by_name = malloc((f->count ? f->count : 1) * sizeof *f->by_name);
    if (f->by_name == NULL) {
        free(refs);
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory");
    }
    for (size_t i = 0; i < f->count; i++) {
        f->by_name[i] = refs[i].index;
    }
    free(refs);
    return MXMOE_OK;
}

/* The tensors must cover the data buffer exactly: sorted by offset, each begins where the
 * previous one ended, and the last ends at the buffer's end (tensor.rs does the same). Empty
 * tensors are points and fit anywhere on the chain. */
static mxmoe_status check_coverage(mxmoe_st_file* f, mxmoe_io_error* err) {
    span_ref* spans = malloc((f->count ? f->count : 1) * sizeof *spans);
    if (spans == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory");
    }
    for (size_t i = 0; i < f->count; i++) {
        spans[i].begin = f->tensors[i].offset;
        spans[i].end = f->tensors[i].offset + f->tensors[i].nbytes;
        spans[i].index = i;
    }
    qsort(spans, f->count, sizeof *spans, compare_span_ref);
    mxmoe_status st = MXMOE_OK;
    uint64_t covered = 0;
    size_t prev = MXMOE_ST_NOT_FOUND;
    io_quoted q1, q2;
    for (size_t i = 0; i < f->count && st == MXMOE_OK; i++) {
        const char* name = io_quote_head(q1, f->tensors[spans[i].index].name);
        if (spans[i].begin < covered) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display,
                         "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s'", name,
                         (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                         io_quote_head(q2, f->tensors[prev].name));
        } else if (spans[i].begin > covered) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display,
                         "tensor '%s': data_offsets [%llu, %llu] leave bytes [%llu, %llu) of the "
                         "data buffer unused",
                         name, (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                         (unsigned long long)covered, (unsigned long long)spans[i].begin);
        }
        covered = spans[i].end;
        prev = spans[i].index;
    }
    free(spans);
    if (st == MXMOE_OK && covered != f->data_size) {
        st = io_fail(err, MXMOE_ERR_FORMAT, f->display,
                     "the tensors end at byte %llu of the data buffer but it holds %llu bytes "
                     "(trailing data)",
                     (unsigned long long)covered, (unsigned long long)f->data_size);
    }
    return st;
}

/* Parses and validates the JSON header `text` (len bytes); f->data_size must be set. */
static mxmoe_status parse_header(mxmoe_st_file* f, const char* text, size_t len,
                                 mxmoe_io_error* err) {
    json_cursor c;
    json_init(&c, text, len);
    if (json_object_begin(&c) != 0) {
        return json_error(f, &c, err);
    }
    int first = 1, more;
    char* key;
    size_t key_len;
    while ((more = json_object_next(&c, &first, &key, &key_len)) == 1) {
        mxmoe_status st;
        io_quoted q;
        if (key_len != strlen(key)) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display,
                         "a tensor name holds U+0000 (\"%s...\")", io_quote_head(q, key));
        } else if (strcmp(key, "__metadata__") == 0) {
            st = f->has_metadata
                     ? io_fail(err, MXMOE_ERR_FORMAT, f->display, "duplicate key \"__metadata__\"")
                     : parse_metadata(f, &c, err);
            f->has_metadata = 1;
        } else if (grow((void**)&f->tensors, &f->capacity, f->count, sizeof *f->tensors) != 0) {
            st = io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory for tensor entries");
        } else {
            mxmoe_st_tensor_info* t = &f->tensors[f->count];
            memset(t, 0, sizeof *t);
            st = parse_tensor_entry(f, &c, key, t, err);
            if (st == MXMOE_OK) {
                t->name = key; /* the handle owns it from here */
                key = NULL;
                f->count++;
            }
        }
        free(key);
        if (st != MXMOE_OK) {
            return st;
        }
    }
    if (more < 0 || json_expect_end(&c) != 0) {
        return json_error(f, &c, err);
    }
    MXMOE_IO_FORWARD(check_unique_names(f, err));
    return check_coverage(f, err);
}

/* ---------------------------------------------------------------------------------------------
 * Opening
 */

/* The 8-byte little-endian header length, checked against the limit and the file size. */
static mxmoe_status check_header_length(mxmoe_st_file* f, const unsigned char prefix[8],
                                        uint64_t file_size, uint64_t* header_len,
                                        mxmoe_io_error* err) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) {
        n = (n << 8) | prefix[i];
    }
    if (n > MXMOE_ST_MAX_HEADER_BYTES) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "header length %llu exceeds the %u-byte limit (not a safetensors file?)",
                       (unsigned long long)n, MXMOE_ST_MAX_HEADER_BYTES);
    }
    if (n > file_size - 8) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "header length %llu runs past the end of the %llu-byte file (truncated?)",
                       (unsigned long long)n, (unsigned long long)file_size);
    }
    *header_len = n;
    return MXMOE_OK;
}

static mxmoe_status open_image(mxmoe_st_file* f, const unsigned char* image, uint64_t size,
                               mxmoe_io_error* err) {
    if (size < 8) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "file is %llu bytes, shorter than the 8-byte header length (truncated?)",
                       (unsigned long long)size);
    }
    uint64_t header_len = 0;
    MXMOE_IO_FORWARD(check_header_length(f, image, size, &header_len, err));
    f->data_start = 8 + header_len;
    f->data_size = size - f->data_start;
    return parse_header(f, (const char*)image + 8, (size_t)header_len, err);
}

mxmoe_status mxmoe_st_open_memory(const void* data, size_t size, const char* display_name,
                                  mxmoe_st_file** out, mxmoe_io_error* err) {
    const char* display = display_name != NULL ? display_name : "(memory)";
    if (out == NULL || (data == NULL && size != 0)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, display,
                       "mxmoe_st_open_memory: NULL argument");
    }
    *out = NULL;
    mxmoe_st_file* f = new_handle(display);
    if (f == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, display, "out of memory");
    }
    f->image = data;
    mxmoe_status st = open_image(f, data, size, err);
    if (st != MXMOE_OK) {
        mxmoe_st_close(f);
        return st;
    }
    *out = f;
    return io_ok(err);
}

/* Reads exactly `bytes` at file offset `offset`. pread, not stdio: no second copy through a
 * stream buffer for tensor-sized reads, and no stale buffered bytes if the file changes. */
static mxmoe_status read_at(mxmoe_st_file* f, uint64_t offset, void* dst, size_t bytes,
                            const char* what, mxmoe_io_error* err) {
    unsigned char* p = dst;
    while (bytes > 0) {
        if (offset > (uint64_t)INT64_MAX) {
            return io_fail(err, MXMOE_ERR_IO, f->display, "cannot read %s: offset too large", what);
        }
        /* Some kernels cap one read at about 2 GB; ask for at most 1 GB at a time. */
        size_t chunk = bytes < ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
        ssize_t got = pread(f->fd, p, chunk, (off_t)offset);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return io_fail(err, MXMOE_ERR_IO, f->display, "cannot read %s: %s", what,
                           got < 0 ? strerror(errno) : "unexpected end of file");
        }
        p += got;
        offset += (uint64_t)got;
        bytes -= (size_t)got;
    }
    return MXMOE_OK;
}

/* Mapping is the default; MXMOE_NO_MMAP set to anything but "" or "0" turns it off (for file
 * systems where mapped reads misbehave, and to test the pread path). */
static int mmap_allowed(void) {
    const char* v = getenv("MXMOE_NO_MMAP");
    return v == NULL || v[0] == '\0' || strcmp(v, "0") == 0;
}

static mxmoe_status open_file(mxmoe_st_file* f, const char* path, mxmoe_io_error* err) {
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        return io_fail(err, MXMOE_ERR_IO, f->display, "cannot open: %s", strerror(errno));
    }
    struct stat info;
    if (fstat(f->fd, &info) != 0) {
        return io_fail(err, MXMOE_ERR_IO, f->display, "cannot stat: %s", strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        return io_fail(err, MXMOE_ERR_IO, f->display, "not a regular file");
    }
    uint64_t size = (uint64_t)info.st_size;
    if (size < 8) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "file is %llu bytes, shorter than the 8-byte header length (truncated?)",
                       (unsigned long long)size);
    }
    if (size <= (uint64_t)SIZE_MAX && mmap_allowed()) {
        void* map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (map != MAP_FAILED) {
            f->mapping = map;
            f->mapping_size = (size_t)size;
            f->image = map;
            /* The descriptor stays open: mxmoe_st_read checks the file still holds the bytes
             * before copying, so a file truncated under a mapping gives IO, not SIGBUS. */
            return open_image(f, f->image, size, err);
        }
    }
    unsigned char prefix[8];
    MXMOE_IO_FORWARD(read_at(f, 0, prefix, 8, "the header length", err));
    uint64_t header_len = 0;
    MXMOE_IO_FORWARD(check_header_length(f, prefix, size, &header_len, err));
    f->data_start = 8 + header_len;
    f->data_size = size - f->data_start;
    char* header = malloc(header_len ? (size_t)header_len : 1);
    if (header == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display,
                       "out of memory for the %llu-byte header", (unsigned long long)header_len);
    }
    mxmoe_status st = read_at(f, 8, header, (size_t)header_len, "the header", err);
    if (st == MXMOE_OK) {
        st = parse_header(f, header, (size_t)header_len, err);
    }
    free(header);
    return st;
}

mxmoe_status mxmoe_st_open(const char* path, mxmoe_st_file** out, mxmoe_io_error* err) {
    if (out == NULL || path == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path ? path : "(null)",
                       "mxmoe_st_open: NULL argument");
    }
    *out = NULL;
    mxmoe_st_file* f = new_handle(path);
    if (f == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    mxmoe_status st = open_file(f, path, err);
    if (st != MXMOE_OK) {
        mxmoe_st_close(f);
        return st;
    }
    *out = f;
    return io_ok(err);
}

/* ---------------------------------------------------------------------------------------------
 * Accessors and reads
 */

size_t mxmoe_st_count(const mxmoe_st_file* f) {
    return f != NULL ? f->count : 0;
}

const mxmoe_st_tensor_info* mxmoe_st_info(const mxmoe_st_file* f, size_t index) {
    return (f != NULL && index < f->count) ? &f->tensors[index] : NULL;
}

size_t mxmoe_st_find(const mxmoe_st_file* f, const char* name) {
    if (f == NULL || name == NULL) {
        return MXMOE_ST_NOT_FOUND;
    }
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) {
            return f->by_name[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return MXMOE_ST_NOT_FOUND;
}

const mxmoe_st_kv* mxmoe_st_metadata(const mxmoe_st_file* f, size_t* count) {
    if (count != NULL) {
        *count = f != NULL ? f->metadata_count : 0;
    }
    return f != NULL ? f->metadata : NULL;
}

const char* mxmoe_st_metadata_get(const mxmoe_st_file* f, const char* key) {
    if (f == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < f->metadata_count; i++) {
        if (strcmp(f->metadata[i].key, key) == 0) {
            return f->metadata[i].value;
        }
    }
    return NULL;
}

const void* mxmoe_st_data(const mxmoe_st_file* f, size_t index) {
    if (f == NULL || f->image == NULL || index >= f->count) {
        return NULL;
    }
    return f->image + f->data_start + f->tensors[index].offset;
}

mxmoe_status mxmoe_st_read(mxmoe_st_file* f, size_t index, uint64_t offset, void* dst, size_t bytes,
                           mxmoe_io_error* err) {
    if (f == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, "(null)", "mxmoe_st_read: NULL file");
    }
    if (index >= f->count) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, f->display,
                       "mxmoe_st_read: tensor index %zu out of range (%zu tensors)", index,
                       f->count);
    }
    const mxmoe_st_tensor_info* t = &f->tensors[index];
    io_quoted q;
    if (offset > t->nbytes || bytes > t->nbytes - offset || (dst == NULL && bytes > 0)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, f->display,
                       "tensor '%s': read of %zu bytes at offset %llu outside its %llu bytes",
                       io_quote_head(q, t->name), bytes, (unsigned long long)offset,
                       (unsigned long long)t->nbytes);
    }
    uint64_t at = f->data_start + t->offset + offset;
    if (f->mapping != NULL && bytes > 0) {
        struct stat info;
        if (fstat(f->fd, &info) != 0 || (uint64_t)info.st_size < at + bytes) {
            return io_fail(err, MXMOE_ERR_IO, f->display,
                           "cannot read tensor '%s': the file shrank since it was opened",
                           io_quote_head(q, t->name));
        }
    }
    if (f->image != NULL) {
        if (bytes > 0) {
            memcpy(dst, f->image + at, bytes);
        }
        return io_ok(err);
    }
    char what[IO_QUOTE_MAX + 16];
    snprintf(what, sizeof what, "tensor '%s'", io_quote_head(q, t->name));
    MXMOE_IO_FORWARD(read_at(f, at, dst, bytes, what, err));
    return io_ok(err);
}
