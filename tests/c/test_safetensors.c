/*
 * test_safetensors.c — the safetensors reader and writer (include/mxmoe_io.h).
 *
 * A writer -> reader round trip over every dtype (scalars, empty tensors, metadata, non-ASCII
 * names, streamed and out-of-order appends), then one case per way a file can be malformed:
 * each must fail with the right status and a message naming the file (and the tensor where
 * there is one), never crash. Ends with a few thousand mutated images through the parser (the
 * CI runs this under ASan + UBSan). Prints "N passed, N failed"; exits non-zero on a failure.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, truncate, close */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxmoe_io.h"

static int passed, failed;
/* Files are mapped unless MXMOE_NO_MMAP is set: main runs the file tests both ways. */
static int use_mmap = 1;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

/* A unique scratch path; the file is created empty (the writer replaces it). */
static void temp_path(char out[64]) {
    snprintf(out, 64, "/tmp/mxmoe_test_st_XXXXXX");
    int fd = mkstemp(out);
    if (fd >= 0) {
        close(fd);
    }
}

static int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A file image: 8-byte length, header text (verbatim), then `data_len` bytes of 0xAB. */
typedef struct image {
    unsigned char* bytes;
    size_t size;
} image;

static image make_image_len(uint64_t header_len_field, const char* header, size_t data_len) {
    size_t hlen = strlen(header);
    image im;
    im.size = 8 + hlen + data_len;
    im.bytes = malloc(im.size);
    for (int i = 0; i < 8; i++) {
        im.bytes[i] = (unsigned char)(header_len_field >> (8 * i));
    }
    memcpy(im.bytes + 8, header, hlen);
    memset(im.bytes + 8 + hlen, 0xAB, data_len);
    return im;
}

static image make_image(const char* header, size_t data_len) {
    return make_image_len(strlen(header), header, data_len);
}

static int write_image(const char* path, const image* im) {
    FILE* fp = fopen(path, "wb");
    if (fp == NULL) {
        return -1;
    }
    size_t n = fwrite(im->bytes, 1, im->size, fp);
    return (fclose(fp) == 0 && n == im->size) ? 0 : -1;
}

/* Opens `header` + data both from memory and from a file; both must give `want` and messages
 * that contain `needle` (and the display names). Returns 1 if both behaved. */
static int expect_open(const char* what, const char* header, size_t data_len, mxmoe_status want,
                       const char* needle) {
    image im = make_image(header, data_len);
    int ok = 1;

    mxmoe_io_error err;
    mxmoe_st_file* f = (mxmoe_st_file*)1;
    mxmoe_status st = mxmoe_st_open_memory(im.bytes, im.size, "mem.safetensors", &f, &err);
    if (st != want || (want != MXMOE_OK && (f != NULL || strstr(err.message, needle) == NULL ||
                                            strstr(err.message, "mem.safetensors") == NULL))) {
        fprintf(stderr, "  [%s] memory: status %s (want %s), message \"%s\" (want \"%s\")\n", what,
                mxmoe_status_string(st), mxmoe_status_string(want), err.message, needle);
        ok = 0;
    }
    mxmoe_st_close(st == MXMOE_OK ? f : NULL);

    char path[64];
    temp_path(path);
    if (write_image(path, &im) == 0) {
        f = (mxmoe_st_file*)1;
        st = mxmoe_st_open(path, &f, &err);
        if (st != want || (want != MXMOE_OK && (f != NULL || strstr(err.message, needle) == NULL ||
                                                strstr(err.message, path) == NULL))) {
            fprintf(stderr, "  [%s] file: status %s (want %s), message \"%s\"\n", what,
                    mxmoe_status_string(st), mxmoe_status_string(want), err.message);
            ok = 0;
        }
        mxmoe_st_close(st == MXMOE_OK ? f : NULL);
    } else {
        ok = 0;
    }
    remove(path);
    free(im.bytes);
    return ok;
}

#define EXPECT_FORMAT(what, header, data_len, needle)                                              \
    CHECK(expect_open(what, header, data_len, MXMOE_ERR_FORMAT, needle), "%s", what)
#define EXPECT_OK(what, header, data_len)                                                          \
    CHECK(expect_open(what, header, data_len, MXMOE_OK, ""), "%s", what)

/* ---------------------------------------------------------------------------------------------
 * Round trip
 */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void test_round_trip(void) {
    enum { N = MXMOE_ST_DTYPE_COUNT + 3 };
    mxmoe_st_entry entries[N];
    unsigned char* data[N];
    char names[N][48];
    memset(entries, 0, sizeof entries);
    for (int i = 0; i < N; i++) {
        mxmoe_st_entry* e = &entries[i];
        if (i < MXMOE_ST_DTYPE_COUNT) {
            e->dtype = (mxmoe_st_dtype)i;
            e->ndim = 1 + i % 3;
            for (int d = 0; d < e->ndim; d++) {
                e->shape[d] = 1 + (i + d) % 4;
            }
            snprintf(names[i], sizeof names[i], "layer.%d.%s", i, mxmoe_st_dtype_name(e->dtype));
        } else if (i == MXMOE_ST_DTYPE_COUNT) {
            e->dtype = MXMOE_ST_F32; /* a scalar: rank 0, one element */
            e->ndim = 0;
            snprintf(names[i], sizeof names[i], "scalar");
        } else if (i == MXMOE_ST_DTYPE_COUNT + 1) {
            e->dtype = MXMOE_ST_BF16; /* an empty tensor: zero bytes */
            e->ndim = 2;
            e->shape[0] = 3;
            e->shape[1] = 0;
            snprintf(names[i], sizeof names[i], "empty");
        } else {
            e->dtype = MXMOE_ST_U8; /* a name that needs JSON escapes and is not ASCII */
            e->ndim = 1;
            e->shape[0] = 5;
            snprintf(names[i], sizeof names[i], "w\"q\\\n\xc3\xa9\xf0\x9f\x98\x80");
        }
        e->name = names[i];
        size_t bytes = mxmoe_st_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            bytes *= (size_t)e->shape[d];
        }
        data[i] = malloc(bytes ? bytes : 1);
        for (size_t b = 0; b < bytes; b++) {
            data[i][b] = (unsigned char)next_random();
        }
        e->data = data[i];
    }
    mxmoe_st_kv meta[3] = {
        {"format", "pt"}, {"note", "quote \" backslash \\ tab \t \xe6\x97\xa5"}, {"empty", ""}};
    char path[64];
    temp_path(path);
    mxmoe_io_error err;
    mxmoe_status st = mxmoe_st_write(path, entries, N, meta, 3, &err);
    CHECK(st == MXMOE_OK, "write: %s", err.message);
    CHECK(err.message[0] == '\0', "message on success: %s", err.message);

    /* The header is padded to 8 bytes and every tensor is aligned to its element size. */
    FILE* fp = fopen(path, "rb");
    unsigned char len8[8] = {0};
    CHECK(fp != NULL && fread(len8, 1, 8, fp) == 8, "read back the length");
    if (fp != NULL) {
        fclose(fp);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) {
        hlen = (hlen << 8) | len8[i];
    }
    CHECK(hlen % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);

    mxmoe_st_file* f = NULL;
    st = mxmoe_st_open(path, &f, &err);
    CHECK(st == MXMOE_OK && f != NULL, "open: %s", err.message);
    if (f == NULL) {
        goto done;
    }
    CHECK(mxmoe_st_count(f) == N, "count %zu", mxmoe_st_count(f));
    for (int i = 0; i < N; i++) {
        size_t index = mxmoe_st_find(f, names[i]);
        CHECK(index != MXMOE_ST_NOT_FOUND, "find %s", names[i]);
        if (index == MXMOE_ST_NOT_FOUND) {
            continue;
        }
        const mxmoe_st_tensor_info* t = mxmoe_st_info(f, index);
        CHECK(strcmp(t->name, names[i]) == 0, "name");
        CHECK(t->dtype == entries[i].dtype && t->ndim == entries[i].ndim, "dtype/ndim of %s",
              names[i]);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            CHECK(t->shape[d] == entries[i].shape[d], "shape of %s", names[i]);
            numel *= t->shape[d];
        }
        CHECK(t->numel == numel, "numel of %s", names[i]);
        CHECK(t->nbytes == (uint64_t)numel * mxmoe_st_dtype_size(t->dtype), "nbytes");
        CHECK(t->offset % mxmoe_st_dtype_size(t->dtype) == 0, "alignment of %s", names[i]);
        unsigned char* back = malloc(t->nbytes ? t->nbytes : 1);
        st = mxmoe_st_read(f, index, 0, back, (size_t)t->nbytes, &err);
        CHECK(st == MXMOE_OK && memcmp(back, data[i], (size_t)t->nbytes) == 0, "data of %s: %s",
              names[i], err.message);
        if (t->nbytes >= 3) { /* a partial read from the middle */
            st = mxmoe_st_read(f, index, 1, back, (size_t)t->nbytes - 2, &err);
            CHECK(st == MXMOE_OK && memcmp(back, data[i] + 1, (size_t)t->nbytes - 2) == 0,
                  "range of %s", names[i]);
        }
        st = mxmoe_st_read(f, index, 1, back, (size_t)t->nbytes, &err);
        CHECK(st == MXMOE_ERR_INVALID_ARGUMENT && strstr(err.message, "outside") != NULL,
              "read past the tensor: %s", err.message);
        free(back);
        const void* direct = mxmoe_st_data(f, index);
        if (use_mmap) {
            CHECK(direct != NULL && memcmp(direct, data[i], (size_t)t->nbytes) == 0,
                  "mapped file: direct pointer to %s", names[i]);
        } else {
            CHECK(direct == NULL, "pread file handles give no direct pointer");
        }
    }
    CHECK(mxmoe_st_find(f, "missing") == MXMOE_ST_NOT_FOUND, "find missing");
    CHECK(mxmoe_st_info(f, N) == NULL, "info out of range");
    size_t nmeta = 0;
    const mxmoe_st_kv* kv = mxmoe_st_metadata(f, &nmeta);
    CHECK(nmeta == 3 && kv != NULL, "metadata count %zu", nmeta);
    for (int i = 0; i < 3 && kv != NULL && nmeta == 3; i++) {
        CHECK(strcmp(kv[i].key, meta[i].key) == 0 && strcmp(kv[i].value, meta[i].value) == 0,
              "metadata %d", i);
        CHECK(strcmp(mxmoe_st_metadata_get(f, meta[i].key), meta[i].value) == 0, "get %d", i);
    }
    CHECK(mxmoe_st_metadata_get(f, "nope") == NULL, "metadata miss");
    mxmoe_st_close(f);

    /* The same bytes through the memory reader: direct pointers to the data. */
    fp = fopen(path, "rb");
    if (fp != NULL) {
        fseek(fp, 0, SEEK_END);
        long size = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        unsigned char* img = malloc((size_t)size);
        size_t got = fread(img, 1, (size_t)size, fp);
        fclose(fp);
        st = mxmoe_st_open_memory(img, got, NULL, &f, &err);
        CHECK(st == MXMOE_OK, "open_memory: %s", err.message);
        for (int i = 0; st == MXMOE_OK && i < N; i++) {
            size_t index = mxmoe_st_find(f, names[i]);
            const mxmoe_st_tensor_info* t = mxmoe_st_info(f, index);
            CHECK(t->nbytes == 0 || memcmp(mxmoe_st_data(f, index), data[i], t->nbytes) == 0,
                  "direct data of %s", names[i]);
        }
        mxmoe_st_close(st == MXMOE_OK ? f : NULL);
        free(img);
    }
done:
    remove(path);
    for (int i = 0; i < N; i++) {
        free(data[i]);
    }
}

/* An empty file (no tensors, no metadata) is valid: "{}" padded. */
static void test_empty_file(void) {
    char path[64];
    temp_path(path);
    mxmoe_io_error err;
    CHECK(mxmoe_st_write(path, NULL, 0, NULL, 0, &err) == MXMOE_OK, "%s", err.message);
    mxmoe_st_file* f = NULL;
    CHECK(mxmoe_st_open(path, &f, &err) == MXMOE_OK && mxmoe_st_count(f) == 0, "%s", err.message);
    mxmoe_st_close(f);
    remove(path);
}

/* The streaming writer: pieces, tensors out of order, incomplete files never appear. */
static void test_streaming_writer(void) {
    char path[64];
    temp_path(path);
    remove(path);
    mxmoe_st_entry e[2];
    memset(e, 0, sizeof e);
    e[0].name = "a";
    e[0].dtype = MXMOE_ST_F32;
    e[0].ndim = 1;
    e[0].shape[0] = 4;
    e[1].name = "b";
    e[1].dtype = MXMOE_ST_U8;
    e[1].ndim = 2;
    e[1].shape[0] = 2;
    e[1].shape[1] = 3;
    float a[4] = {1.0f, -2.5f, 3.25f, 1e30f};
    unsigned char b[6] = {1, 2, 3, 4, 5, 6};
    mxmoe_io_error err;
    mxmoe_st_writer* w = NULL;
    CHECK(mxmoe_st_writer_open(&w, path, e, 2, NULL, 0, &err) == MXMOE_OK, "%s", err.message);
    if (w == NULL) {
        return;
    }
    CHECK(mxmoe_st_writer_append(w, 1, b, 4, &err) == MXMOE_OK, "%s", err.message);
    CHECK(mxmoe_st_writer_append(w, 0, a, 8, &err) == MXMOE_OK, "%s", err.message);
    CHECK(mxmoe_st_writer_append(w, 1, b + 4, 3, &err) == MXMOE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "'b'") != NULL,
          "over-append: %s", err.message);
    CHECK(mxmoe_st_writer_append(w, 7, b, 1, &err) == MXMOE_ERR_INVALID_ARGUMENT, "bad index");
    CHECK(mxmoe_st_writer_append(w, 1, b + 4, 2, &err) == MXMOE_OK, "%s", err.message);
    CHECK(!file_exists(path), "no file under the real name before close");
    /* Incomplete: tensor a has 8 of 16 bytes. */
    CHECK(mxmoe_st_writer_close(w, &err) == MXMOE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "'a'") != NULL,
          "incomplete close: %s", err.message);
    CHECK(!file_exists(path), "failed close leaves no file");
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp), "failed close removes the temporary file");

    CHECK(mxmoe_st_writer_open(&w, path, e, 2, NULL, 0, &err) == MXMOE_OK, "%s", err.message);
    CHECK(mxmoe_st_writer_append(w, 0, a + 2, 0, &err) == MXMOE_OK, "empty append");
    CHECK(mxmoe_st_writer_append(w, 0, a, 4, &err) == MXMOE_OK, "%s", err.message);
    CHECK(mxmoe_st_writer_append(w, 1, b, 6, &err) == MXMOE_OK, "%s", err.message);
    CHECK(mxmoe_st_writer_append(w, 0, (const char*)a + 4, 12, &err) == MXMOE_OK, "%s",
          err.message);
    CHECK(mxmoe_st_writer_close(w, &err) == MXMOE_OK, "%s", err.message);
    mxmoe_st_file* f = NULL;
    CHECK(mxmoe_st_open(path, &f, &err) == MXMOE_OK, "%s", err.message);
    if (f != NULL) {
        float a2[4];
        unsigned char b2[6];
        CHECK(mxmoe_st_read(f, mxmoe_st_find(f, "a"), 0, a2, 16, &err) == MXMOE_OK &&
                  memcmp(a, a2, 16) == 0,
              "a");
        CHECK(mxmoe_st_read(f, mxmoe_st_find(f, "b"), 0, b2, 6, &err) == MXMOE_OK &&
                  memcmp(b, b2, 6) == 0,
              "b");
        /* A file that shrinks after open: reads fail with IO, not garbage. */
        CHECK(truncate(path, 20) == 0, "truncate");
        CHECK(mxmoe_st_read(f, mxmoe_st_find(f, "b"), 0, b2, 6, &err) == MXMOE_ERR_IO &&
                  strstr(err.message, "'b'") != NULL,
              "read of a shrunk file: %s", err.message);
        mxmoe_st_close(f);
    }
    mxmoe_st_writer_abort(NULL);
    remove(path);
}

/* The writer refuses what the reader would refuse. */
static void test_writer_errors(void) {
    char path[64];
    temp_path(path);
    remove(path);
    unsigned char byte = 0;
    mxmoe_st_entry e[2];
    memset(e, 0, sizeof e);
    for (int i = 0; i < 2; i++) {
        e[i].dtype = MXMOE_ST_U8;
        e[i].ndim = 1;
        e[i].shape[0] = 1;
        e[i].data = &byte;
    }
    mxmoe_io_error err;
    e[0].name = "x";
    e[1].name = "x";
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "duplicate tensor name 'x'") != NULL,
          "duplicate: %s", err.message);
    e[1].dtype = MXMOE_ST_F64; /* same name, different element size: still a duplicate */
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT, "%s",
          err.message);
    e[1].dtype = MXMOE_ST_U8;
    e[1].name = "__metadata__";
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT, "reserved");
    e[1].name = "bad\xff";
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "UTF-8") != NULL,
          "utf8: %s", err.message);
    e[1].name = "y";
    e[1].dtype = (mxmoe_st_dtype)99;
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT, "dtype");
    e[1].dtype = MXMOE_ST_U8;
    e[1].shape[0] = -1;
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_OVERFLOW, "negative dim");
    e[1].shape[0] = 1;
    e[1].ndim = MXMOE_ST_MAX_DIMS + 1;
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT, "rank");
    e[1].ndim = 1;
    mxmoe_st_kv meta[2] = {{"k", "1"}, {"k", "2"}};
    CHECK(mxmoe_st_write(path, e, 2, meta, 2, &err) == MXMOE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "duplicate metadata key") != NULL,
          "metadata dup: %s", err.message);
    e[1].data = NULL;
    CHECK(mxmoe_st_write(path, e, 2, NULL, 0, &err) == MXMOE_ERR_INVALID_ARGUMENT, "NULL data");
    CHECK(mxmoe_st_write("/nonexistent-dir/x.safetensors", e, 1, NULL, 0, &err) == MXMOE_ERR_IO &&
              strstr(err.message, "/nonexistent-dir/x.safetensors") != NULL,
          "unwritable: %s", err.message);
    CHECK(!file_exists(path), "no file after refusals");
    CHECK(mxmoe_st_write(path, e, 1, NULL, 0, NULL) == MXMOE_OK, "NULL err is allowed");
    remove(path);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed files, one per case
 */

#define T1 "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"

static void test_valid_variants(void) {
    EXPECT_OK("minimal", T1, 8);
    EXPECT_OK("whitespace padding", " \t\r\n" T1 "     \n ", 8);
    EXPECT_OK("empty object", "{}", 0);
    EXPECT_OK("keys in any order",
              "{\"t\":{\"data_offsets\":[0,8],\"shape\":[2],\"dtype\":\"F32\"}}", 8);
    EXPECT_OK("escaped name",
              "{\"\\u00e9\\ud83d\\ude00\\n\":{\"dtype\":\"U8\",\"shape\":[],"
              "\"data_offsets\":[0,1]}}",
              1);
    EXPECT_OK("zero-size tensors on the chain",
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"c\":{\"dtype\":\"I8\",\"shape\":[0,5],\"data_offsets\":[2,2]}}",
              2);
    EXPECT_OK("metadata",
              "{\"__metadata__\":{\"a\":\"b\"},\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]}}",
              8);
}

static void test_truncated(void) {
    mxmoe_io_error err;
    mxmoe_st_file* f = NULL;
    unsigned char few[5] = {1, 0, 0, 0, 0};
    CHECK(mxmoe_st_open_memory(few, 5, "short", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "shorter than") != NULL,
          "5-byte file: %s", err.message);
    CHECK(mxmoe_st_open_memory(few, 0, "empty", &f, &err) == MXMOE_ERR_FORMAT, "0-byte image");
    char path[64];
    temp_path(path); /* an empty file */
    CHECK(mxmoe_st_open(path, &f, &err) == MXMOE_ERR_FORMAT && strstr(err.message, path) != NULL,
          "0-byte file: %s", err.message);
    remove(path);
    /* The data buffer is cut short: the tensor's offsets run past its end. */
    EXPECT_FORMAT("truncated data", T1, 5, "run past the end");
    /* The header itself is cut short. */
    image im = make_image_len(200, T1, 0);
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "cut", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "runs past the end") != NULL,
          "header cut: %s", err.message);
    free(im.bytes);
}

static void test_header_length(void) {
    mxmoe_io_error err;
    mxmoe_st_file* f = NULL;
    image im = make_image_len(1ull << 40, T1, 8);
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "huge", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "exceeds") != NULL,
          "huge: %s", err.message);
    free(im.bytes);
    im = make_image_len(UINT64_MAX, T1, 8);
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "max", &f, &err) == MXMOE_ERR_FORMAT, "max");
    free(im.bytes);
    im = make_image_len(MXMOE_ST_MAX_HEADER_BYTES + 1ull, T1, 8);
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "limit", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "exceeds") != NULL,
          "limit+1: %s", err.message);
    free(im.bytes);
    im = make_image_len(5000, T1, 8);
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "past", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "past the end") != NULL,
          "past EOF: %s", err.message);
    free(im.bytes);
    EXPECT_FORMAT("zero-length header", "", 0, "expected '{'");
}

static void test_bad_json(void) {
    EXPECT_FORMAT("not an object", "[]", 0, "expected '{'");
    EXPECT_FORMAT("UTF-8 byte order mark", "\xef\xbb\xbf{}", 0, "expected '{'");
    EXPECT_FORMAT("only whitespace", "    ", 0, "expected '{'");
    EXPECT_FORMAT("a tensor that is a string", "{\"t\":\"F32\"}", 0, "expected '{'");
    EXPECT_FORMAT("unterminated object",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]}",
                  8, "expected ',' or '}'");
    EXPECT_FORMAT("missing colon", "{\"t\" {}}", 0, "expected ':'");
    EXPECT_FORMAT("missing comma", "{\"t\":{\"dtype\":\"F32\" \"shape\":[2]}}", 0,
                  "expected ',' or '}'");
    EXPECT_FORMAT("trailing comma",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8],}}",
                  8, "trailing comma");
    EXPECT_FORMAT("trailing comma in array",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,],"
                  "\"data_offsets\":[0,8]}}",
                  8, "trailing comma");
    EXPECT_FORMAT("unquoted key", "{t:{}}", 0, "expected a string key");
    EXPECT_FORMAT("single quotes", "{'t':{}}", 0, "expected a string key");
    EXPECT_FORMAT("unterminated string", "{\"t", 0, "unterminated string");
    EXPECT_FORMAT("bad escape", "{\"a\\x\":{}}", 0, "invalid escape");
    EXPECT_FORMAT("short \\u", "{\"a\\u12\":{}}", 0, "4 hex digits");
    EXPECT_FORMAT("non-hex \\u", "{\"a\\u12G4\":{}}", 0, "4 hex digits");
    EXPECT_FORMAT("lone high surrogate", "{\"a\\ud800\":{}}", 0, "unpaired high surrogate");
    EXPECT_FORMAT("lone low surrogate", "{\"a\\udc00\":{}}", 0, "unpaired low surrogate");
    EXPECT_FORMAT("bad surrogate pair", "{\"a\\ud800\\u0041\":{}}", 0, "low surrogate");
    EXPECT_FORMAT("raw control character", "{\"a\tb\":{}}", 0, "control character");
    EXPECT_FORMAT("invalid UTF-8", "{\"a\xff\":{}}", 0, "not valid UTF-8");
    EXPECT_FORMAT("overlong UTF-8", "{\"a\xc0\xaf\":{}}", 0, "not valid UTF-8");
    EXPECT_FORMAT("UTF-8 surrogate", "{\"a\xed\xa0\x80\":{}}", 0, "not valid UTF-8");
    EXPECT_FORMAT("float in shape",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],"
                  "\"data_offsets\":[0,8]}}",
                  8, "fraction or exponent");
    EXPECT_FORMAT("exponent",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2e0],"
                  "\"data_offsets\":[0,8]}}",
                  8, "fraction or exponent");
    EXPECT_FORMAT("leading zero",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[02],"
                  "\"data_offsets\":[0,8]}}",
                  8, "leading zero");
    EXPECT_FORMAT("negative dim",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "negative");
    EXPECT_FORMAT("integer overflow",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                  "\"data_offsets\":[0,8]}}",
                  8, "64-bit range");
    EXPECT_FORMAT("string as dim",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],"
                  "\"data_offsets\":[0,8]}}",
                  8, "expected an integer");
    EXPECT_FORMAT("nested arrays",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[[[[2]]]],"
                  "\"data_offsets\":[0,8]}}",
                  8, "expected an integer");
    EXPECT_FORMAT("literal", "{\"t\":true}", 0, "expected '{'");
    EXPECT_FORMAT("dtype not a string",
                  "{\"t\":{\"dtype\":14,\"shape\":[2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "dtype must be a string");
    EXPECT_FORMAT("metadata value not a string", "{\"__metadata__\":{\"a\":1}}", 0,
                  "must be a string");
    EXPECT_FORMAT("metadata not an object", "{\"__metadata__\":[]}", 0, "expected '{'");
    EXPECT_FORMAT("unknown key",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8],\"offsets\":[0,8]}}",
                  8, "unexpected key \"offsets\"");
    EXPECT_FORMAT("missing key", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
                  "missing key \"data_offsets\"");
    EXPECT_FORMAT("three offsets",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8,8]}}",
                  8, "more than 2");
    EXPECT_FORMAT("one offset",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0]}}",
                  8, "must hold 2");
    EXPECT_FORMAT("rank 9",
                  "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "more than 8");
    EXPECT_FORMAT("NUL in a name",
                  "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "U+0000");
}

static void test_trailing_garbage(void) {
    EXPECT_FORMAT("garbage after the object", T1 " x", 8, "trailing characters");
    EXPECT_FORMAT("second object", T1 "{}", 8, "trailing characters");
    /* A NUL pad byte is not JSON whitespace: built by hand since it ends a C string. */
    image im = make_image(T1 "  ", 8);
    im.bytes[8 + strlen(T1) + 1] = '\0';
    mxmoe_io_error err;
    mxmoe_st_file* f = NULL;
    CHECK(mxmoe_st_open_memory(im.bytes, im.size, "nulpad", &f, &err) == MXMOE_ERR_FORMAT &&
              strstr(err.message, "trailing characters") != NULL,
          "NUL padding: %s", err.message);
    free(im.bytes);
}

static void test_dtypes(void) {
    EXPECT_FORMAT("unknown dtype",
                  "{\"w1\":{\"dtype\":\"F7\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "tensor 'w1': unknown dtype \"F7\"");
    EXPECT_FORMAT("lowercase dtype",
                  "{\"w1\":{\"dtype\":\"f32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]}}",
                  8, "unknown dtype");
    EXPECT_FORMAT("sub-byte dtype",
                  "{\"w1\":{\"dtype\":\"F4\",\"shape\":[16],"
                  "\"data_offsets\":[0,8]}}",
                  8, "tensor 'w1': unsupported sub-byte dtype \"F4\"");
}

static void test_sizes_and_offsets(void) {
    EXPECT_FORMAT("shape x dtype != bytes",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                  "\"data_offsets\":[0,10]}}",
                  10,
                  "tensor 'w': data_offsets [0, 10] hold 10 bytes, shape [2, 3] of F32 needs 24");
    EXPECT_FORMAT("shape overflow",
                  "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                  "\"data_offsets\":[0,8]}}",
                  8, "overflows");
    EXPECT_FORMAT("bytes overflow",
                  "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
                  "\"data_offsets\":[0,8]}}",
                  8, "overflows");
    EXPECT_FORMAT("offsets out of range",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[8],"
                  "\"data_offsets\":[4,12]}}",
                  8, "tensor 'w': data_offsets [4, 12] run past the end of the 8-byte");
    EXPECT_FORMAT("reversed offsets",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],"
                  "\"data_offsets\":[8,0]}}",
                  8, "end before they begin");
    EXPECT_FORMAT("overlap",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                  8, "tensor 'b': data_offsets [4, 8] overlap tensor 'a'");
    EXPECT_FORMAT("same offsets",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                  8, "overlap");
    EXPECT_FORMAT("gap",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                  8, "tensor 'b': data_offsets [4, 8] leave bytes [2, 4)");
    EXPECT_FORMAT("gap at the start",
                  "{\"b\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[4,8]}}",
                  8, "leave bytes [0, 4)");
    EXPECT_FORMAT("trailing data", T1, 12, "trailing data");
    EXPECT_FORMAT("data but no tensors", "{}", 4, "trailing data");
}

static void test_duplicates(void) {
    EXPECT_FORMAT("duplicate tensor",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                  8, "duplicate tensor name 'w'");
    EXPECT_FORMAT("duplicate after escape",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[0,4]},"
                  "\"\\u0077\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[4,8]}}",
                  8, "duplicate tensor name 'w'");
    EXPECT_FORMAT("duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
                  "duplicate __metadata__ key \"k\"");
    EXPECT_FORMAT("two metadata objects", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                  "duplicate key \"__metadata__\"");
    EXPECT_FORMAT("duplicate dtype key",
                  "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[8],"
                  "\"data_offsets\":[0,8]}}",
                  8, "tensor 'w': duplicate key \"dtype\"");
    EXPECT_FORMAT("duplicate shape key",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"shape\":[8],"
                  "\"data_offsets\":[0,8]}}",
                  8, "duplicate key \"shape\"");
}

static void test_open_errors(void) {
    mxmoe_io_error err;
    mxmoe_st_file* f = (mxmoe_st_file*)1;
    CHECK(mxmoe_st_open("/nonexistent/model.safetensors", &f, &err) == MXMOE_ERR_IO && f == NULL &&
              strstr(err.message, "/nonexistent/model.safetensors: cannot open") != NULL,
          "missing file: %s", err.message);
    CHECK(mxmoe_st_open("/tmp", &f, &err) == MXMOE_ERR_IO &&
              strstr(err.message, "not a regular file") != NULL,
          "directory: %s", err.message);
    CHECK(mxmoe_st_open(NULL, &f, &err) == MXMOE_ERR_INVALID_ARGUMENT, "NULL path");
    CHECK(mxmoe_st_open("/tmp/x", NULL, NULL) == MXMOE_ERR_INVALID_ARGUMENT, "NULL out");
    CHECK(mxmoe_st_count(NULL) == 0 && mxmoe_st_info(NULL, 0) == NULL &&
              mxmoe_st_find(NULL, "a") == MXMOE_ST_NOT_FOUND && mxmoe_st_data(NULL, 0) == NULL,
          "NULL handles");
    mxmoe_st_close(NULL);
    /* A long path is shortened in messages, keeping the file name. */
    char longpath[600];
    memset(longpath, 'd', sizeof longpath);
    memcpy(longpath, "/nonexistent/", 13);
    memcpy(longpath + sizeof longpath - 20, "/final.safetensors", 19);
    CHECK(mxmoe_st_open(longpath, &f, &err) == MXMOE_ERR_IO && strstr(err.message, "...") != NULL &&
              strstr(err.message, "final.safetensors") != NULL,
          "long path: %s", err.message);
}

static void test_dtype_helpers(void) {
    mxmoe_st_dtype d;
    CHECK(mxmoe_st_dtype_from_name("BF16", &d) && d == MXMOE_ST_BF16, "BF16");
    CHECK(!mxmoe_st_dtype_from_name("F4", &d) && !mxmoe_st_dtype_from_name(NULL, &d), "F4");
    CHECK(mxmoe_st_dtype_size(MXMOE_ST_C64) == 8 && mxmoe_st_dtype_size(MXMOE_ST_DTYPE_COUNT) == 0,
          "sizes");
    mxmoe_dtype m;
    CHECK(mxmoe_st_dtype_to_mxmoe(MXMOE_ST_BF16, &m) && m == MXMOE_BF16, "to mxmoe");
    CHECK(!mxmoe_st_dtype_to_mxmoe(MXMOE_ST_F64, &m), "F64 has no mxmoe dtype");
    for (int i = 0; i < MXMOE_ST_DTYPE_COUNT; i++) {
        CHECK(mxmoe_st_dtype_from_name(mxmoe_st_dtype_name((mxmoe_st_dtype)i), &d) && (int)d == i,
              "name round trip %d", i);
    }
}

/* Mutated images through the parser: anything may fail, nothing may crash or leak (ASan). */
static void test_mutations(void) {
    const char* header =
        "{\"__metadata__\":{\"format\":\"pt\",\"k\\u00e9\":\"v\"},"
        "\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]}}  ";
    image base = make_image(header, 16);
    unsigned char* work = malloc(base.size);
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(work, base.bytes, base.size);
        size_t size = base.size;
        int edits = 1 + (int)(next_random() % 4);
        for (int k = 0; k < edits; k++) {
            uint64_t r = next_random();
            size_t pos = (size_t)(r % size);
            switch ((r >> 32) % 5) {
            case 0:
                work[pos] ^= (unsigned char)(1u << ((r >> 40) % 8));
                break;
            case 1:
                work[pos] = (unsigned char)(r >> 48);
                break;
            case 2:
                work[pos] = "{}[]\",:\\0123456789-eu \x80"[(r >> 48) % 23];
                break;
            case 3:
                size = pos > 8 ? pos : size;
                break; /* truncate */
            default:   /* shift the tail left by one */
                if (pos + 1 < size) {
                    memmove(work + pos, work + pos + 1, size - pos - 1);
                    size--;
                }
                break;
            }
        }
        mxmoe_st_file* f = NULL;
        mxmoe_io_error err;
        mxmoe_status st = mxmoe_st_open_memory(work, size, "fuzz", &f, &err);
        if (st == MXMOE_OK) {
            accepted++;
            /* Whatever was accepted must be self-consistent. */
            for (size_t i = 0; i < mxmoe_st_count(f); i++) {
                const mxmoe_st_tensor_info* t = mxmoe_st_info(f, i);
                unsigned char tmp[64];
                if (t->nbytes <= sizeof tmp) {
                    mxmoe_st_read(f, i, 0, tmp, (size_t)t->nbytes, &err);
                }
                if (mxmoe_st_find(f, t->name) != i) {
                    failed++;
                    fprintf(stderr, "FAIL: find inconsistent after mutation %d\n", iter);
                }
            }
            mxmoe_st_close(f);
        } else if (err.message[0] == '\0' || f != NULL) {
            failed++;
            fprintf(stderr, "FAIL: mutation %d: status %d without a message\n", iter, (int)st);
        }
    }
    passed++;
    printf("mutations: %d of 20000 mutated images accepted (e.g. changed data bytes)\n", accepted);
    free(work);
    free(base.bytes);
}

int main(void) {
    for (int pass = 0; pass < 2; pass++) {
        use_mmap = pass == 0;
        if (use_mmap) {
            unsetenv("MXMOE_NO_MMAP");
        } else {
            setenv("MXMOE_NO_MMAP", "1", 1);
        }
        test_round_trip();
        test_streaming_writer();
        test_open_errors();
    }
    unsetenv("MXMOE_NO_MMAP");
    test_empty_file();
    test_writer_errors();
    test_valid_variants();
    test_truncated();
    test_header_length();
    test_bad_json();
    test_trailing_garbage();
    test_dtypes();
    test_sizes_and_offsets();
    test_duplicates();
    test_dtype_helpers();
    test_mutations();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
