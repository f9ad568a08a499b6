/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors header parser (mxmoe_st_open_memory).
 *
 * Each input is a whole file image and goes through the parser twice: as it is (so the 8-byte
 * header length, truncation and the data buffer are fuzzed), and with the length rewritten to
 * end at the image's last '}' (so mutations of the JSON are not all thrown out by a length that
 * no longer matches). Whatever is accepted must be self-consistent: every tensor lies inside the
 * image, can be read whole, and is found under its name. Crashes, leaks and undefined behaviour
 * are reported by ASan/UBSan, which the fuzz build (-DMXMOE_FUZZ=ON) always enables.
 *
 *   build-fuzz/tests/fuzz/fuzz_safetensors -dict=tests/fuzz/safetensors.dict CORPUS_COPY/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mxmoe_io.h"

static void check_accepted(mxmoe_st_file* f, const uint8_t* image, size_t size) {
    unsigned char buf[256];
    for (size_t i = 0; i < mxmoe_st_count(f); i++) {
        const mxmoe_st_tensor_info* t = mxmoe_st_info(f, i);
        const unsigned char* p = mxmoe_st_data(f, i);
        if (t == NULL || p == NULL || p < image || t->nbytes > size ||
            (size_t)(p - image) > size - t->nbytes || mxmoe_st_find(f, t->name) != i) {
            abort();
        }
        size_t n = t->nbytes < sizeof buf ? (size_t)t->nbytes : sizeof buf;
        if (mxmoe_st_read(f, i, t->nbytes - n, buf, n, NULL) != MXMOE_OK ||
            memcmp(buf, p + (t->nbytes - n), n) != 0) {
            abort();
        }
    }
    size_t count = 0;
    const mxmoe_st_kv* kv = mxmoe_st_metadata(f, &count);
    for (size_t i = 0; i < count; i++) {
        if (mxmoe_st_metadata_get(f, kv[i].key) == NULL) {
            abort();
        }
    }
}

static void parse(const uint8_t* image, size_t size) {
    mxmoe_st_file* f = NULL;
    mxmoe_io_error err;
    mxmoe_status st = mxmoe_st_open_memory(image, size, "fuzz.safetensors", &f, &err);
    if (st == MXMOE_OK) {
        check_accepted(f, image, size);
        mxmoe_st_close(f);
    } else if (f != NULL || err.message[0] == '\0') {
        abort(); /* a failure must leave no handle and say why */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    parse(data, size);
    if (size <= 8) {
        return 0;
    }
    size_t end = size;
    while (end > 8 && data[end - 1] != '}') {
        end--;
    }
    if (end == 8) {
        return 0;
    }
    uint8_t* copy = malloc(size);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    uint64_t header_len = (uint64_t)(end - 8);
    for (int i = 0; i < 8; i++) {
        copy[i] = (uint8_t)(header_len >> (8 * i));
    }
    parse(copy, size);
    free(copy);
    return 0;
}
