/*
 * test_gguf.c — the strict GGUF reader (src/io/gguf_read.c) that loads GGUF MoE layers.
 *
 * A valid file built byte by byte (v3, every scalar value type, a string array, tensors of
 * three types with alignment padding) must read back exactly; then one case per way a file can
 * be malformed — bad magic, versions, truncation anywhere, counts and lengths past the end,
 * unknown types, arrays of arrays, too many dimensions, rows not a multiple of the block,
 * misplaced or overlapping tensors, duplicate keys and names, bad alignment, bad UTF-8 names —
 * each must fail with the right status and a message naming the file (and key or tensor), never
 * crash (CI runs this under ASan + UBSan). Prints "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/gguf.h"

/* ---------------------------------------------------------------------------------------------
 * A GGUF image builder
 */

typedef struct buf {
    unsigned char* p;
    size_t n, cap;
} buf;

static void put(buf* b, const void* data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u32(buf* b, uint32_t v) {
    unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24)};
    put(b, le, 4);
}

static void put_u64(buf* b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(buf* b, const char* s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_u32(buf* b, const char* key, uint32_t v) {
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}

static void kv_str(buf* b, const char* key, const char* v) {
    put_str(b, key);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
}

static void tensor_info(buf* b, const char* name, uint32_t ndim, const uint64_t* ne, uint32_t type,
                        uint64_t offset) {
    put_str(b, name);
    put_u32(b, ndim);
    for (uint32_t d = 0; d < ndim; d++) {
        put_u64(b, ne[d]);
    }
    put_u32(b, type);
    put_u64(b, offset);
}

static void pad_to(buf* b, size_t alignment) {
    while (b->n % alignment != 0) {
        unsigned char z = 0;
        put(b, &z, 1);
    }
}

static void header(buf* b, uint32_t version, uint64_t tensors, uint64_t kvs) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, tensors);
    put_u64(b, kvs);
}

/* The valid file: 9 KVs, 3 tensors (F32 [4, 2], MXFP4 [64, 2] = 2 x 2 blocks, F16 [3]). */
static buf valid_file(void) {
    buf b = {0};
    header(&b, 3, 3, 9);
    kv_str(&b, "general.architecture", "gpt-oss");
    kv_u32(&b, "gpt-oss.expert_count", 2);
    put_str(&b, "i8");
    put_u32(&b, GGUF_TYPE_INT8);
    unsigned char m5 = 0xFB; /* -5 */
    put(&b, &m5, 1);
    put_str(&b, "f32");
    put_u32(&b, GGUF_TYPE_FLOAT32);
    float half = 0.5f;
    uint32_t bits;
    memcpy(&bits, &half, 4);
    put_u32(&b, bits);
    put_str(&b, "flag");
    put_u32(&b, GGUF_TYPE_BOOL);
    unsigned char one = 1;
    put(&b, &one, 1);
    put_str(&b, "i64");
    put_u32(&b, GGUF_TYPE_INT64);
    put_u64(&b, (uint64_t)-7);
    put_str(&b, "f64");
    put_u32(&b, GGUF_TYPE_FLOAT64);
    double d = 2.25;
    uint64_t dbits;
    memcpy(&dbits, &d, 8);
    put_u64(&b, dbits);
    put_str(&b, "tokenizer.ggml.tokens");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, 3);
    put_str(&b, "a");
    put_str(&b, "bc");
    put_str(&b, "");
    kv_u32(&b, "general.alignment", 64);
    uint64_t ne0[2] = {4, 2}, ne1[2] = {64, 2}, ne2[1] = {3};
    tensor_info(&b, "router", 2, ne0, GGML_TYPE_F32, 0);     /* 32 bytes */
    tensor_info(&b, "experts", 2, ne1, GGML_TYPE_MXFP4, 64); /* 4 blocks = 68 bytes */
    tensor_info(&b, "bias", 1, ne2, GGML_TYPE_F16, 192);     /* 6 bytes */
    pad_to(&b, 64);
    for (int i = 0; i < 192 + 6; i++) {
        unsigned char v = (unsigned char)(i * 7);
        put(&b, &v, 1);
    }
    return b;
}

static int open_fails(const char* what, const buf* b, mxmoe_status want, const char* needle) {
    gguf_file* f = (gguf_file*)1;
    mxmoe_io_error err;
    mxmoe_status st = gguf_open_memory(b->p, b->n, "bad.gguf", &f, &err);
    int ok = st == want && f == NULL && strstr(err.message, "bad.gguf") != NULL &&
             strstr(err.message, needle) != NULL;
    if (!ok) {
        fprintf(stderr, "  [%s] status %s (want %s), message \"%s\" (want \"%s\")\n", what,
                mxmoe_status_string(st), mxmoe_status_string(want), err.message, needle);
        gguf_close(st == MXMOE_OK ? f : NULL);
    }
    return ok;
}

#define EXPECT_FAIL(what, b, status, needle)                                                       \
    CHECK_MSG(open_fails(what, b, status, needle), "%s", what)

/* ---------------------------------------------------------------------------------------------
 * Tests
 */

static void test_valid(void) {
    buf b = valid_file();
    gguf_file* f = NULL;
    mxmoe_io_error err;
    CHECK_STATUS(gguf_open_memory(b.p, b.n, "ok.gguf", &f, &err), MXMOE_OK);
    if (f == NULL) {
        free(b.p);
        return;
    }
    CHECK_EQ_INT(gguf_version(f), 3);
    CHECK_EQ_INT(gguf_alignment(f), 64);
    CHECK_EQ_INT(gguf_kv_count(f), 9);
    CHECK_EQ_INT(gguf_tensor_count(f), 3);
    const char* s = NULL;
    uint64_t u = 0;
    double v = 0;
    int flag = 0;
    CHECK(gguf_get_string(f, "general.architecture", &s) == 1 && strcmp(s, "gpt-oss") == 0);
    CHECK(gguf_get_uint(f, "gpt-oss.expert_count", &u) == 1 && u == 2);
    CHECK(gguf_get_uint(f, "i8", &u) == -1); /* negative */
    CHECK(gguf_get_float(f, "i8", &v) == 1 && v == -5.0);
    CHECK(gguf_get_float(f, "f32", &v) == 1 && v == 0.5);
    CHECK(gguf_get_float(f, "f64", &v) == 1 && v == 2.25);
    CHECK(gguf_get_float(f, "i64", &v) == 1 && v == -7.0);
    CHECK(gguf_get_bool(f, "flag", &flag) == 1 && flag == 1);
    CHECK(gguf_get_bool(f, "f32", &flag) == -1);
    CHECK(gguf_get_uint(f, "missing", &u) == 0);
    const gguf_kv* tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(tokens != NULL && tokens->type == GGUF_TYPE_ARRAY &&
          tokens->array_type == GGUF_TYPE_STRING && tokens->array_count == 3);
    const gguf_tensor* t = gguf_find_tensor(f, "experts");
    CHECK(t != NULL && t->type == GGML_TYPE_MXFP4 && t->ndim == 2 && t->ne[0] == 64 &&
          t->ne[1] == 2 && t->ne[2] == 1 && t->nbytes == 68 && t->offset == 64);
    if (t != NULL) {
        const unsigned char* p = gguf_tensor_data(f, t);
        CHECK(p[0] == (unsigned char)(64 * 7) && p[67] == (unsigned char)(131 * 7));
    }
    t = gguf_find_tensor(f, "bias");
    CHECK(t != NULL && t->nbytes == 6 && t->type == GGML_TYPE_F16);
    CHECK(gguf_find_tensor(f, "nope") == NULL);
    CHECK(strcmp(gguf_type_name(GGML_TYPE_MXFP4), "mxfp4") == 0 && gguf_type_name(4) == NULL);
    gguf_close(f);
    gguf_close(NULL);

    /* The same bytes through a file: mapped, identical. */
    char path[] = "/tmp/mxmoe_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, b.p, b.n) == (ssize_t)b.n);
    if (fd >= 0) {
        close(fd);
    }
    CHECK_STATUS(gguf_open(path, &f, &err), MXMOE_OK);
    if (f != NULL) {
        CHECK(gguf_find_tensor(f, "router") != NULL && strcmp(gguf_display_name(f), path) == 0);
        gguf_close(f);
    }
    /* Truncated files, at every length: never accepted, never a crash. */
    int accepted = 0;
    for (size_t n = 0; n < b.n; n++) {
        gguf_file* g = NULL;
        if (gguf_open_memory(b.p, n, "cut.gguf", &g, &err) == MXMOE_OK) {
            accepted++;
            gguf_close(g);
        }
    }
    CHECK_EQ_INT(accepted, 0);
    CHECK(truncate(path, 100) == 0);
    CHECK_STATUS(gguf_open(path, &f, &err), MXMOE_ERR_FORMAT);
    CHECK(strstr(err.message, path) != NULL);
    remove(path);
    CHECK_STATUS(gguf_open("/nonexistent/x.gguf", &f, &err), MXMOE_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/x.gguf: cannot open") != NULL);
    CHECK_STATUS(gguf_open("/tmp", &f, &err), MXMOE_ERR_IO);
    free(b.p);
}

static void test_malformed(void) {
    buf b = {0};
    put(&b, "GGUX", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    EXPECT_FAIL("bad magic", &b, MXMOE_ERR_FORMAT, "no \"GGUF\" magic");
    free(b.p);

    uint32_t versions[3] = {1, 4, 0x03000000u};
    const char* why[3] = {"version 1 is not supported", "unknown GGUF version 4", "big-endian"};
    for (int i = 0; i < 3; i++) {
        memset(&b, 0, sizeof b);
        header(&b, versions[i], 0, 0);
        EXPECT_FAIL(why[i], &b, MXMOE_ERR_UNSUPPORTED, why[i]);
        free(b.p);
    }

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1u << 30);
    EXPECT_FAIL("huge KV count", &b, MXMOE_ERR_FORMAT, "cannot fit");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, UINT64_MAX, 0);
    EXPECT_FAIL("huge tensor count", &b, MXMOE_ERR_FORMAT, "cannot fit");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_u64(&b, UINT64_MAX); /* key length */
    put_u64(&b, 0);
    put_u64(&b, 0);
    EXPECT_FAIL("huge key length", &b, MXMOE_ERR_FORMAT, "only");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13);
    put_u32(&b, 0);
    EXPECT_FAIL("unknown value type", &b, MXMOE_ERR_FORMAT, "key 'k': unknown value type 13");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "nested");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u64(&b, 1);
    put_u64(&b, 0);
    EXPECT_FAIL("arrays of arrays", &b, MXMOE_ERR_UNSUPPORTED, "key 'nested': arrays of arrays");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_UINT64);
    put_u64(&b, 1u << 28);
    put_u64(&b, 0);
    EXPECT_FAIL("array past the end", &b, MXMOE_ERR_FORMAT, "runs past the end");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "strs");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, 1u << 20);
    put_u64(&b, 0);
    EXPECT_FAIL("string array count", &b, MXMOE_ERR_FORMAT, "strings cannot fit");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "b");
    put_u32(&b, GGUF_TYPE_BOOL);
    unsigned char two = 2;
    put(&b, &two, 1);
    EXPECT_FAIL("bool not 0/1", &b, MXMOE_ERR_FORMAT, "neither 0 nor 1");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 2);
    kv_u32(&b, "dup", 1);
    kv_u32(&b, "dup", 2);
    EXPECT_FAIL("duplicate key", &b, MXMOE_ERR_FORMAT, "duplicate key 'dup'");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_str(&b, "bad\xff");
    put_u32(&b, GGUF_TYPE_UINT8);
    put(&b, "x", 1);
    EXPECT_FAIL("key not UTF-8", &b, MXMOE_ERR_FORMAT, "not UTF-8");
    free(b.p);

    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, GGUF_TYPE_UINT8);
    put(&b, "x", 1);
    EXPECT_FAIL("key with NUL", &b, MXMOE_ERR_FORMAT, "U+0000");
    free(b.p);

    uint32_t bad_alignments[3] = {0, 3, 48};
    for (int i = 0; i < 3; i++) {
        memset(&b, 0, sizeof b);
        header(&b, 3, 0, 1);
        kv_u32(&b, "general.alignment", bad_alignments[i]);
        EXPECT_FAIL("bad alignment", &b, MXMOE_ERR_FORMAT, "power of two");
        free(b.p);
    }
    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    kv_str(&b, "general.alignment", "32");
    EXPECT_FAIL("alignment not u32", &b, MXMOE_ERR_FORMAT, "general.alignment");
    free(b.p);

    /* Tensor infos. */
    struct {
        const char* what;
        const char* name;
        uint32_t ndim;
        uint64_t ne[5];
        uint32_t type;
        uint64_t offset;
        mxmoe_status want;
        const char* needle;
    } cases[] = {
        {"5 dims", "t", 5, {1, 1, 1, 1, 1}, GGML_TYPE_F32, 0, MXMOE_ERR_FORMAT, "5 dimensions"},
        {"unknown type", "t", 1, {4}, 4, 0, MXMOE_ERR_FORMAT, "tensor 't': unknown ggml type 4"},
        {"type past table", "t", 1, {4}, 1000, 0, MXMOE_ERR_FORMAT, "unknown ggml type 1000"},
        {"row not whole blocks",
         "t",
         1,
         {48},
         GGML_TYPE_MXFP4,
         0,
         MXMOE_ERR_FORMAT,
         "not a multiple of the mxfp4 block size 32"},
        {"dim out of range",
         "t",
         1,
         {UINT64_MAX},
         GGML_TYPE_F32,
         0,
         MXMOE_ERR_FORMAT,
         "out of range"},
        {"size overflow",
         "t",
         2,
         {1ull << 40, 1ull << 40},
         GGML_TYPE_F32,
         0,
         MXMOE_ERR_FORMAT,
         "overflows"},
        {"offset not where expected",
         "t",
         1,
         {4},
         GGML_TYPE_F32,
         32,
         MXMOE_ERR_FORMAT,
         "data offset 32, expected 0"},
        {"past the end",
         "t",
         1,
         {1000},
         GGML_TYPE_F32,
         0,
         MXMOE_ERR_FORMAT,
         "run past the end of the file"},
        {"long name",
         "0123456789012345678901234567890123456789012345678901234567890123",
         1,
         {4},
         GGML_TYPE_F32,
         0,
         MXMOE_ERR_FORMAT,
         "longer than 63 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&b, 0, sizeof b);
        header(&b, 3, 1, 0);
        tensor_info(&b, cases[i].name, cases[i].ndim, cases[i].ne, cases[i].type, cases[i].offset);
        pad_to(&b, 32);
        unsigned char data[64] = {0};
        put(&b, data, sizeof data);
        EXPECT_FAIL(cases[i].what, &b, cases[i].want, cases[i].needle);
        free(b.p);
    }

    /* Two tensors: overlapping (the second at the first's offset), duplicate names. */
    uint64_t ne[1] = {8};
    memset(&b, 0, sizeof b);
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne, GGML_TYPE_F32, 0);
    tensor_info(&b, "b", 1, ne, GGML_TYPE_F32, 0);
    pad_to(&b, 32);
    unsigned char data[96] = {0};
    put(&b, data, sizeof data);
    EXPECT_FAIL("overlapping tensors", &b, MXMOE_ERR_FORMAT, "tensor 'b': data offset 0");
    free(b.p);
    memset(&b, 0, sizeof b);
    header(&b, 3, 2, 0);
    tensor_info(&b, "a", 1, ne, GGML_TYPE_F32, 0);
    tensor_info(&b, "a", 1, ne, GGML_TYPE_F32, 32);
    pad_to(&b, 32);
    put(&b, data, sizeof data);
    EXPECT_FAIL("duplicate tensor", &b, MXMOE_ERR_FORMAT, "duplicate tensor name 'a'");
    free(b.p);
}

/* Mutated images: anything may fail, nothing may crash or leak. */
static void test_mutations(void) {
    buf b = valid_file();
    unsigned char* work = malloc(b.n);
    uint64_t state = 12345;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(work, b.p, b.n);
        int edits = 1 + iter % 3;
        size_t size = b.n;
        for (int k = 0; k < edits; k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t r = state >> 17;
            size_t pos = (size_t)(r % size);
            switch ((r >> 40) % 4) {
            case 0:
                work[pos] ^= (unsigned char)(1u << ((r >> 20) % 8));
                break;
            case 1:
                work[pos] = (unsigned char)(r >> 8);
                break;
            case 2:
                work[pos] = (r & 1) ? 0xFF : 0x00;
                break;
            default:
                size = pos > 24 ? pos : size;
            }
        }
        gguf_file* f = NULL;
        mxmoe_io_error err;
        if (gguf_open_memory(work, size, "m.gguf", &f, &err) == MXMOE_OK) {
            accepted++;
            for (size_t i = 0; i < gguf_tensor_count(f); i++) {
                const gguf_tensor* t = gguf_tensor_at(f, i);
                const unsigned char* p = gguf_tensor_data(f, t);
                CHECK(p >= work && (size_t)(p - work) + t->nbytes <= size);
            }
            gguf_close(f);
        } else if (err.message[0] == '\0' || f != NULL) {
            CHECK_MSG(0, "mutation %d failed without a message", iter);
        }
    }
    printf("mutations: %d of 20000 mutated images accepted\n", accepted);
    free(work);
    free(b.p);
}

int main(void) {
    test_valid();
    test_malformed();
    test_mutations();
    return check_report();
}
