/*
 * gguf_read.c — the strict GGUF reader of gguf.h.
 *
 * The whole file is mapped and parsed with one bounds-checked cursor: every length and count
 * read from the file is compared with the bytes that remain before anything is allocated for
 * it, so a hostile file cannot make the reader allocate more than the file's own size allows
 * or read past its end. The rules follow ggml's reader (ggml/src/gguf.cpp) so a file accepted
 * here is one llama.cpp accepts too.
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* open, fstat, mmap */
#endif
#if !defined(_FILE_OFFSET_BITS)
#define _FILE_OFFSET_BITS 64
#endif

#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_common.h"
#include "io/json.h"

struct gguf_file {
    char* display;
    const unsigned char* image;
    uint64_t size;
    void* mapping;
    size_t mapping_size;

    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;

    gguf_kv* kvs;
    size_t kv_count;
    gguf_tensor* tensors;
    size_t tensor_count;
    size_t* by_name; /* tensor indices sorted by name */
};

/* ---------------------------------------------------------------------------------------------
 * Type tables
 */

static const struct {
    const char* name;
    uint32_t block, size;
} ggml_types[] = {
    [0] = {"f32", 1, 4},         [1] = {"f16", 1, 2},         [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},      [6] = {"q5_0", 32, 22},      [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},      [9] = {"q8_1", 32, 36},      [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},   [12] = {"q4_K", 256, 144},   [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},   [15] = {"q8_K", 256, 292},   [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},  [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},   [21] = {"iq3_s", 256, 110},  [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},         [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},        [27] = {"i64", 1, 8},        [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},   [30] = {"bf16", 1, 2},       [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},   [39] = {"mxfp4", 32, 17},    [40] = {"nvfp4", 64, 36},
    [41] = {"q1_0", 128, 18},
};

#define NUM_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char* gguf_type_name(uint32_t t) {
    return t < NUM_GGML_TYPES ? ggml_types[t].name : NULL;
}

int gguf_type_block(uint32_t t, uint32_t* block_size, uint32_t* type_size) {
    if (t >= NUM_GGML_TYPES || ggml_types[t].name == NULL) {
        return 0;
    }
    *block_size = ggml_types[t].block;
    *type_size = ggml_types[t].size;
    return 1;
}

/* Bytes of one scalar of a metadata value type (0 for STRING, ARRAY and unknown types). */
static uint64_t value_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The cursor
 */

typedef struct cursor {
    gguf_file* f;
    uint64_t pos;
    mxmoe_io_error* err;
} cursor;

static uint64_t remaining(const cursor* c) {
    return c->f->size - c->pos;
}

static mxmoe_status need(cursor* c, uint64_t bytes, const char* what) {
    if (bytes > remaining(c)) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "%s at byte %llu needs %llu bytes, only %llu left (truncated?)", what,
                       (unsigned long long)c->pos, (unsigned long long)bytes,
                       (unsigned long long)remaining(c));
    }
    return MXMOE_OK;
}

static uint64_t load_le(const unsigned char* p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static mxmoe_status read_u32(cursor* c, uint32_t* out, const char* what) {
    MXMOE_IO_FORWARD(need(c, 4, what));
    *out = (uint32_t)load_le(c->f->image + c->pos, 4);
    c->pos += 4;
    return MXMOE_OK;
}

static mxmoe_status read_u64(cursor* c, uint64_t* out, const char* what) {
    MXMOE_IO_FORWARD(need(c, 8, what));
    *out = load_le(c->f->image + c->pos, 8);
    c->pos += 8;
    return MXMOE_OK;
}

/* A gguf_string: u64 length, bytes. Returns its position and length without copying. */
static mxmoe_status read_string_span(cursor* c, uint64_t* at, uint64_t* len, const char* what) {
    MXMOE_IO_FORWARD(read_u64(c, len, what));
    MXMOE_IO_FORWARD(need(c, *len, what));
    *at = c->pos;
    c->pos += *len;
    return MXMOE_OK;
}

/* A name (key or tensor name): UTF-8, no U+0000; copied, NUL-terminated. */
static mxmoe_status read_name(cursor* c, char** out, const char* what) {
    uint64_t at, len;
    MXMOE_IO_FORWARD(read_string_span(c, &at, &len, what));
    const char* s = (const char*)c->f->image + at;
    if (memchr(s, '\0', (size_t)len) != NULL || !json_utf8_valid(s, (size_t)len)) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "%s at byte %llu is not UTF-8 text without U+0000", what,
                       (unsigned long long)at);
    }
    *out = malloc((size_t)len + 1);
    if (*out == NULL) {
        return io_fail(c->err, MXMOE_ERR_NO_MEMORY, c->f->display, "out of memory");
    }
    memcpy(*out, s, (size_t)len);
    (*out)[len] = '\0';
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Metadata
 */

/* Reads one scalar of `type` into kv->value. */
static mxmoe_status read_scalar(cursor* c, uint32_t type, gguf_kv* kv) {
    uint64_t n = value_size(type);
    MXMOE_IO_FORWARD(need(c, n, "a metadata value"));
    uint64_t raw = load_le(c->f->image + c->pos, (int)n);
    c->pos += n;
    switch (type) {
    case GGUF_TYPE_INT8:
        kv->value.i = (int8_t)(uint8_t)raw;
        break;
    case GGUF_TYPE_INT16:
        kv->value.i = (int16_t)(uint16_t)raw;
        break;
    case GGUF_TYPE_INT32:
        kv->value.i = (int32_t)(uint32_t)raw;
        break;
    case GGUF_TYPE_INT64:
        kv->value.i = (int64_t)raw;
        break;
    case GGUF_TYPE_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        kv->value.f = f;
        break;
    }
    case GGUF_TYPE_FLOAT64:
        memcpy(&kv->value.f, &raw, sizeof kv->value.f);
        break;
    case GGUF_TYPE_BOOL:
        if (raw > 1) {
            io_quoted q;
            return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                           "key '%s': bool value %llu is neither 0 nor 1",
                           io_quote_head(q, kv->key), (unsigned long long)raw);
        }
        kv->value.u = raw;
        break;
    default:
        kv->value.u = raw;
    }
    return MXMOE_OK;
}

static mxmoe_status read_kv(cursor* c, gguf_kv* kv) {
    MXMOE_IO_FORWARD(read_name(c, &kv->key, "a metadata key"));
    io_quoted q;
    io_quote_head(q, kv->key);
    MXMOE_IO_FORWARD(read_u32(c, &kv->type, "a metadata value type"));
    if (kv->type >= GGUF_TYPE_COUNT) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display, "key '%s': unknown value type %u",
                       q, (unsigned)kv->type);
    }
    if (kv->type == GGUF_TYPE_STRING) {
        uint64_t at;
        MXMOE_IO_FORWARD(read_string_span(c, &at, &kv->string_len, "a string value"));
        const char* s = (const char*)c->f->image + at;
        if (memchr(s, '\0', (size_t)kv->string_len) == NULL) {
            kv->string = malloc((size_t)kv->string_len + 1);
            if (kv->string == NULL) {
                return io_fail(c->err, MXMOE_ERR_NO_MEMORY, c->f->display, "out of memory");
            }
            memcpy(kv->string, s, (size_t)kv->string_len);
            kv->string[kv->string_len] = '\0';
        }
        return MXMOE_OK;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        return read_scalar(c, kv->type, kv);
    }
    MXMOE_IO_FORWARD(read_u32(c, &kv->array_type, "an array element type"));
    MXMOE_IO_FORWARD(read_u64(c, &kv->array_count, "an array length"));
    if (kv->array_type == GGUF_TYPE_ARRAY) {
        return io_fail(c->err, MXMOE_ERR_UNSUPPORTED, c->f->display,
                       "key '%s': arrays of arrays are not supported (nor by ggml)", q);
    }
    if (kv->array_type >= GGUF_TYPE_COUNT) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "key '%s': unknown array element type %u", q, (unsigned)kv->array_type);
    }
    if (kv->array_type == GGUF_TYPE_STRING) {
        /* Each string is at least its 8-byte length: a count past that cannot be real. */
        if (kv->array_count > remaining(c) / 8) {
            return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                           "key '%s': %llu strings cannot fit in the %llu bytes left", q,
                           (unsigned long long)kv->array_count, (unsigned long long)remaining(c));
        }
        for (uint64_t i = 0; i < kv->array_count; i++) {
            uint64_t at, len;
            MXMOE_IO_FORWARD(read_string_span(c, &at, &len, "an array string"));
        }
        return MXMOE_OK;
    }
    uint64_t elem = value_size(kv->array_type);
    if (kv->array_count > remaining(c) / elem) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "key '%s': an array of %llu values runs past the end of the file", q,
                       (unsigned long long)kv->array_count);
    }
    if (kv->array_type == GGUF_TYPE_BOOL) {
        for (uint64_t i = 0; i < kv->array_count; i++) {
            if (c->f->image[c->pos + i] > 1) {
                return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                               "key '%s': bool element %llu is neither 0 nor 1", q,
                               (unsigned long long)i);
            }
        }
    }
    c->pos += kv->array_count * elem;
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Tensor infos
 */

static mxmoe_status read_tensor_info(cursor* c, gguf_tensor* t) {
    MXMOE_IO_FORWARD(read_name(c, &t->name, "a tensor name"));
    io_quoted q;
    io_quote_head(q, t->name);
    if (strlen(t->name) >= GGUF_MAX_NAME) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "tensor '%s': name longer than %d bytes (ggml's limit)", q,
                       GGUF_MAX_NAME - 1);
    }
    uint32_t ndim;
    MXMOE_IO_FORWARD(read_u32(c, &ndim, "a tensor's dimension count"));
    if (ndim > GGUF_MAX_DIMS) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "tensor '%s': %u dimensions, at most %d", q, (unsigned)ndim, GGUF_MAX_DIMS);
    }
    t->ndim = (int32_t)ndim;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
    }
    for (uint32_t d = 0; d < ndim; d++) {
        uint64_t ne;
        MXMOE_IO_FORWARD(read_u64(c, &ne, "a tensor dimension"));
        if (ne > (uint64_t)INT64_MAX) {
            return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                           "tensor '%s': dimension %u = %llu is out of range", q, (unsigned)d,
                           (unsigned long long)ne);
        }
        t->ne[d] = (int64_t)ne;
    }
    MXMOE_IO_FORWARD(read_u32(c, &t->type, "a tensor type"));
    MXMOE_IO_FORWARD(read_u64(c, &t->offset, "a tensor offset"));
    uint32_t block, size;
    if (!gguf_type_block(t->type, &block, &size)) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display, "tensor '%s': unknown ggml type %u",
                       q, (unsigned)t->type);
    }
    if (t->ne[0] % block != 0) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "tensor '%s': row length %lld is not a multiple of the %s block size %u", q,
                       (long long)t->ne[0], ggml_types[t->type].name, (unsigned)block);
    }
    int64_t shape[GGUF_MAX_DIMS] = {t->ne[0] / block, t->ne[1], t->ne[2], t->ne[3]};
    int64_t blocks;
    if (io_shape_numel(shape, GGUF_MAX_DIMS, &blocks) != 0 ||
        io_mul_bytes(blocks, size, &t->nbytes) != 0) {
        return io_fail(c->err, MXMOE_ERR_FORMAT, c->f->display,
                       "tensor '%s': its size overflows 64 bits", q);
    }
    return MXMOE_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Whole-file checks
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

/* Sorts names and refuses duplicates; the sorted tensor order is kept for lookups. */
static mxmoe_status check_unique(gguf_file* f, mxmoe_io_error* err) {
    size_t n = f->kv_count > f->tensor_count ? f->kv_count : f->tensor_count;
    name_ref* refs = malloc((n ? n : 1) * sizeof *refs);
    f->by_name = malloc((f->tensor_count ? f->tensor_count : 1) * sizeof *f->by_name);
    if (refs == NULL || f->by_name == NULL) {
        free(refs);
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory");
    }
    io_quoted q;
    mxmoe_status st = MXMOE_OK;
    for (size_t i = 0; i < f->kv_count; i++) {
        refs[i].name = f->kvs[i].key;
        refs[i].index = i;
    }
    qsort(refs, f->kv_count, sizeof *refs, compare_name_ref);
    for (size_t i = 1; i < f->kv_count && st == MXMOE_OK; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display, "duplicate key '%s'",
                         io_quote_head(q, refs[i].name));
        }
    }
    for (size_t i = 0; i < f->tensor_count && st == MXMOE_OK; i++) {
        refs[i].name = f->tensors[i].name;
        refs[i].index = i;
    }
    if (st == MXMOE_OK) {
        qsort(refs, f->tensor_count, sizeof *refs, compare_name_ref);
    }
    for (size_t i = 1; i < f->tensor_count && st == MXMOE_OK; i++) {
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            st = io_fail(err, MXMOE_ERR_FORMAT, f->display, "duplicate tensor name '%s'",
                         io_quote_head(q, refs[i].name));
        }
    }
    for (size_t i = 0; i < f->tensor_count && st == MXMOE_OK; i++) {
        f->by_name[i] = refs[i].index;
    }
    free(refs);
    return st;
}

/* general.alignment: a UINT32 power of two when present (ggml's rule). */
static mxmoe_status read_alignment(gguf_file* f, mxmoe_io_error* err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv* kv = gguf_find_kv(f, "general.alignment");
    if (kv == NULL) {
        return MXMOE_OK;
    }
    if (kv->type != GGUF_TYPE_UINT32 || kv->value.u == 0 ||
        (kv->value.u & (kv->value.u - 1)) != 0) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "key 'general.alignment' must be a UINT32 power of two");
    }
    f->alignment = kv->value.u;
    return MXMOE_OK;
}

/* Tensors lie back to back in info order, each at the previous end rounded up to the alignment,
 * starting at 0 (ggml refuses any other layout), and inside the file. */
static mxmoe_status check_layout(gguf_file* f, uint64_t infos_end, mxmoe_io_error* err) {
    uint64_t a = f->alignment;
    if (infos_end > UINT64_MAX - a) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display, "file too large");
    }
    f->data_start = (infos_end + a - 1) / a * a;
    uint64_t data_size = f->data_start <= f->size ? f->size - f->data_start : 0;
    uint64_t expected = 0;
    io_quoted q;
    for (size_t i = 0; i < f->tensor_count; i++) {
        const gguf_tensor* t = &f->tensors[i];
        if (t->offset != expected) {
            return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                           "tensor '%s': data offset %llu, expected %llu (tensors must follow "
                           "each other in order, aligned to %llu bytes)",
                           io_quote_head(q, t->name), (unsigned long long)t->offset,
                           (unsigned long long)expected, (unsigned long long)a);
        }
        if (t->nbytes > data_size || t->offset > data_size - t->nbytes) {
            return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                           "tensor '%s': bytes [%llu, %llu) of the data section run past the end "
                           "of the file (%llu data bytes; truncated?)",
                           io_quote_head(q, t->name), (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->nbytes),
                           (unsigned long long)data_size);
        }
        uint64_t end = t->offset + t->nbytes;
        if (end > UINT64_MAX - a) {
            return io_fail(err, MXMOE_ERR_FORMAT, f->display, "tensor sizes overflow");
        }
        expected = (end + a - 1) / a * a;
    }
    return MXMOE_OK;
}

static mxmoe_status parse(gguf_file* f, mxmoe_io_error* err) {
    cursor c = {f, 0, err};
    if (f->size < 4 || memcmp(f->image, "GGUF", 4) != 0) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display, "not a GGUF file (no \"GGUF\" magic)");
    }
    c.pos = 4;
    MXMOE_IO_FORWARD(read_u32(&c, &f->version, "the version"));
    if (f->version == 1) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, f->display,
                       "GGUF version 1 is not supported (convert it with a current llama.cpp)");
    }
    if ((f->version & 0xFFFF) == 0 && f->version != 0) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, f->display,
                       "a big-endian GGUF file (version field 0x%08x) is not supported",
                       (unsigned)f->version);
    }
    if (f->version != 2 && f->version != 3) {
        return io_fail(err, MXMOE_ERR_UNSUPPORTED, f->display, "unknown GGUF version %u",
                       (unsigned)f->version);
    }
    uint64_t tensor_count, kv_count;
    MXMOE_IO_FORWARD(read_u64(&c, &tensor_count, "the tensor count"));
    MXMOE_IO_FORWARD(read_u64(&c, &kv_count, "the metadata count"));
    /* A KV takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info at least 8 + 4 +
     * 4 + 8: counts past what the file could hold are refused before allocating. */
    if (kv_count > remaining(&c) / 13 || tensor_count > remaining(&c) / 24) {
        return io_fail(err, MXMOE_ERR_FORMAT, f->display,
                       "%llu tensors and %llu metadata entries cannot fit in a %llu-byte file",
                       (unsigned long long)tensor_count, (unsigned long long)kv_count,
                       (unsigned long long)f->size);
    }
    f->kvs = calloc(kv_count ? (size_t)kv_count : 1, sizeof *f->kvs);
    f->tensors = calloc(tensor_count ? (size_t)tensor_count : 1, sizeof *f->tensors);
    if (f->kvs == NULL || f->tensors == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, f->display, "out of memory");
    }
    for (uint64_t i = 0; i < kv_count; i++) {
        f->kv_count++; /* counted first so that a failure frees what was read */
        MXMOE_IO_FORWARD(read_kv(&c, &f->kvs[i]));
    }
    for (uint64_t i = 0; i < tensor_count; i++) {
        f->tensor_count++;
        MXMOE_IO_FORWARD(read_tensor_info(&c, &f->tensors[i]));
    }
    MXMOE_IO_FORWARD(check_unique(f, err));
    MXMOE_IO_FORWARD(read_alignment(f, err));
    return check_layout(f, c.pos, err);
}

/* ---------------------------------------------------------------------------------------------
 * Opening and closing
 */

void gguf_close(gguf_file* f) {
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; i < f->kv_count; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].string);
    }
    for (size_t i = 0; i < f->tensor_count; i++) {
        free(f->tensors[i].name);
    }
    free(f->kvs);
    free(f->tensors);
    free(f->by_name);
    if (f->mapping != NULL) {
        munmap(f->mapping, f->mapping_size);
    }
    free(f->display);
    free(f);
}

static gguf_file* new_handle(const char* display) {
    gguf_file* f = calloc(1, sizeof *f);
    size_t n = strlen(display);
    char* copy = malloc(n + 1);
    if (f == NULL || copy == NULL) {
        free(f);
        free(copy);
        return NULL;
    }
    memcpy(copy, display, n + 1);
    f->display = copy;
    return f;
}

mxmoe_status gguf_open_memory(const void* data, size_t size, const char* display_name,
                              gguf_file** out, mxmoe_io_error* err) {
    const char* display = display_name != NULL ? display_name : "(memory)";
    if (out == NULL || (data == NULL && size != 0)) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, display, "gguf_open_memory: NULL argument");
    }
    *out = NULL;
    gguf_file* f = new_handle(display);
    if (f == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, display, "out of memory");
    }
    f->image = data;
    f->size = size;
    mxmoe_status st = parse(f, err);
    if (st != MXMOE_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return io_ok(err);
}

mxmoe_status gguf_open(const char* path, gguf_file** out, mxmoe_io_error* err) {
    if (out == NULL || path == NULL) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, path ? path : "(null)",
                       "gguf_open: NULL argument");
    }
    *out = NULL;
    gguf_file* f = new_handle(path);
    if (f == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    mxmoe_status st = MXMOE_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (fd < 0) {
        st = io_fail(err, MXMOE_ERR_IO, path, "cannot open: %s", strerror(errno));
    } else if (fstat(fd, &info) != 0) {
        st = io_fail(err, MXMOE_ERR_IO, path, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(info.st_mode)) {
        st = io_fail(err, MXMOE_ERR_IO, path, "not a regular file");
    } else if (info.st_size < 24) {
        st = io_fail(err, MXMOE_ERR_FORMAT, path,
                     "file is %lld bytes, shorter than a GGUF header (truncated?)",
                     (long long)info.st_size);
    } else if ((uint64_t)info.st_size > (uint64_t)SIZE_MAX) {
        st = io_fail(err, MXMOE_ERR_IO, path, "file too large to map on this system");
    } else {
        void* map = mmap(NULL, (size_t)info.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            st = io_fail(err, MXMOE_ERR_IO, path, "cannot map: %s", strerror(errno));
        } else {
            f->mapping = map;
            f->mapping_size = (size_t)info.st_size;
            f->image = map;
            f->size = (uint64_t)info.st_size;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    if (st == MXMOE_OK) {
        st = parse(f, err);
    }
    if (st != MXMOE_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return io_ok(err);
}

/* ---------------------------------------------------------------------------------------------
 * Accessors
 */

const char* gguf_display_name(const gguf_file* f) {
    return f->display;
}

uint32_t gguf_version(const gguf_file* f) {
    return f->version;
}

uint64_t gguf_alignment(const gguf_file* f) {
    return f->alignment;
}

size_t gguf_kv_count(const gguf_file* f) {
    return f != NULL ? f->kv_count : 0;
}

const gguf_kv* gguf_kv_at(const gguf_file* f, size_t index) {
    return (f != NULL && index < f->kv_count) ? &f->kvs[index] : NULL;
}

const gguf_kv* gguf_find_kv(const gguf_file* f, const char* key) {
    if (f == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < f->kv_count; i++) {
        if (strcmp(f->kvs[i].key, key) == 0) {
            return &f->kvs[i];
        }
    }
    return NULL;
}

static int is_unsigned(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static int is_signed(uint32_t t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

int gguf_get_uint(const gguf_file* f, const char* key, uint64_t* out) {
    const gguf_kv* kv = gguf_find_kv(f, key);
    if (kv == NULL) {
        return 0;
    }
    if (is_unsigned(kv->type)) {
        *out = kv->value.u;
        return 1;
    }
    if (is_signed(kv->type) && kv->value.i >= 0) {
        *out = (uint64_t)kv->value.i;
        return 1;
    }
    return -1;
}

int gguf_get_float(const gguf_file* f, const char* key, double* out) {
    const gguf_kv* kv = gguf_find_kv(f, key);
    if (kv == NULL) {
        return 0;
    }
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) {
        *out = kv->value.f;
    } else if (is_unsigned(kv->type)) {
        *out = (double)kv->value.u;
    } else if (is_signed(kv->type)) {
        *out = (double)kv->value.i;
    } else {
        return -1;
    }
    return 1;
}

int gguf_get_bool(const gguf_file* f, const char* key, int* out) {
    const gguf_kv* kv = gguf_find_kv(f, key);
    if (kv == NULL) {
        return 0;
    }
    if (kv->type != GGUF_TYPE_BOOL) {
        return -1;
    }
    *out = kv->value.u != 0;
    return 1;
}

int gguf_get_string(const gguf_file* f, const char* key, const char** out) {
    const gguf_kv* kv = gguf_find_kv(f, key);
    if (kv == NULL) {
        return 0;
    }
    if (kv->type != GGUF_TYPE_STRING || kv->string == NULL) {
        return -1;
    }
    *out = kv->string;
    return 1;
}

size_t gguf_tensor_count(const gguf_file* f) {
    return f != NULL ? f->tensor_count : 0;
}

const gguf_tensor* gguf_tensor_at(const gguf_file* f, size_t index) {
    return (f != NULL && index < f->tensor_count) ? &f->tensors[index] : NULL;
}

const gguf_tensor* gguf_find_tensor(const gguf_file* f, const char* name) {
    if (f == NULL || name == NULL) {
        return NULL;
    }
    size_t lo = 0, hi = f->tensor_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gguf_tensor* t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) {
            return t;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const void* gguf_tensor_data(const gguf_file* f, const gguf_tensor* t) {
    return f->image + f->data_start + t->offset;
}
