/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (src/io/gguf_read.c) that loads GGUF MoE
 * layers. Each input is a whole file image. Whatever is accepted must be self-consistent: every
 * tensor's bytes lie inside the image, tensors are found under their names, typed metadata reads
 * agree with the stored types. ASan/UBSan (always on in the fuzz build) report the rest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    gguf_file* f = NULL;
    mxmoe_io_error err;
    mxmoe_status st = gguf_open_memory(data, size, "fuzz.gguf", &f, &err);
    if (st != MXMOE_OK) {
        if (f != NULL || err.message[0] == '\0') {
            abort();
        }
        return 0;
    }
    volatile unsigned sink = 0;
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor* t = gguf_tensor_at(f, i);
        const uint8_t* p = gguf_tensor_data(f, t);
        if (gguf_find_tensor(f, t->name) != t || t->nbytes > size ||
            (t->nbytes > 0 && (p < data || (size_t)(p - data) > size - t->nbytes))) {
            abort();
        }
        if (t->nbytes > 0) {
            sink += p[0] + p[t->nbytes - 1]; /* first and last byte must be readable */
        }
    }
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv* kv = gguf_kv_at(f, i);
        uint64_t u;
        double d;
        int b;
        const char* s;
        if (gguf_find_kv(f, kv->key) != kv) {
            abort();
        }
        gguf_get_uint(f, kv->key, &u);
        gguf_get_float(f, kv->key, &d);
        gguf_get_bool(f, kv->key, &b);
        if (gguf_get_string(f, kv->key, &s) == 1 && strlen(s) != kv->string_len) {
            abort();
        }
    }
    (void)sink;
    gguf_close(f);
    return 0;
}
