/*
 * fuzz_json.c — libFuzzer target for the JSON document tree that reads a model folder's
 * config.json and index (src/io/json_value.c), and for its writer (`mxmoe quantize` rewrites
 * config.json with it).
 *
 * Property checked beyond "no crash, no leak": whatever parses is written back as JSON that
 * parses again and writes back to the same text (a fixed point after one round).
 */
#define _POSIX_C_SOURCE 200809L /* open_memstream */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json_value.h"

/* The written text of v (malloc'd), or NULL. */
static char* write_text(const json_value* v, size_t* len) {
    char* buf = NULL;
    FILE* out = open_memstream(&buf, len);
    if (out == NULL) {
        return NULL;
    }
    int rc = json_value_write(out, v);
    if (fclose(out) != 0 || rc != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    json_value* v = NULL;
    char err[256];
    if (json_value_parse((const char*)data, size, &v, err, sizeof err) != 0) {
        if (v != NULL || err[0] == '\0') {
            abort();
        }
        return 0;
    }
    size_t len1 = 0, len2 = 0;
    char* text1 = write_text(v, &len1);
    json_value* again = NULL;
    if (text1 == NULL || json_value_parse(text1, len1, &again, err, sizeof err) != 0) {
        abort(); /* what the writer wrote must parse */
    }
    char* text2 = write_text(again, &len2);
    if (text2 == NULL || len1 != len2 || memcmp(text1, text2, len1) != 0) {
        abort();
    }
    free(text1);
    free(text2);
    json_value_free(again);
    json_value_free(v);
    return 0;
}
