/*
 * json_value.h — a small JSON document tree for the files a model folder holds (config.json,
 * model.safetensors.index.json), on top of the strict pull parser of json.h.
 *
 * Internal to src/io. safetensors headers are walked with the cursor directly; a model's config
 * is read by key in any order and rewritten by `mxmoe quantize`, which wants a tree. The tree
 * keeps object members in file order and every number's source text, so a config written back
 * says "1e-06" where the input did. Limits against hostile input: nesting deeper than
 * JSON_MAX_DEPTH is refused (the parser recurses once per level), duplicate keys are refused.
 */
#ifndef MXMOE_IO_JSON_VALUE_H
#define MXMOE_IO_JSON_VALUE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64

typedef enum json_kind {
    JSON_NULL = 0,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_kind;

typedef struct json_value {
    json_kind kind;
    int boolean;     /* JSON_BOOL */
    double number;   /* JSON_NUMBER */
    int is_integer;  /* JSON_NUMBER written as an integer that fits in int64 */
    int64_t integer; /* ... and its value */
    char* text;      /* JSON_STRING: decoded UTF-8; JSON_NUMBER: the source text (owned) */
    size_t text_len;
    size_t count; /* JSON_ARRAY, JSON_OBJECT: members */
    size_t capacity;
    char** keys; /* JSON_OBJECT: member names (owned, NUL-free) */
    struct json_value* items;
} json_value;

/* Parses `len` bytes of JSON (one value, whitespace around it allowed). On failure returns -1
 * and writes "offset N: what" into err (err_size bytes). `*out` is owned by the caller. */
int json_value_parse(const char* text, size_t len, json_value** out, char* err, size_t err_size);
void json_value_free(json_value* v); /* NULL is a no-op */

/* Member `key` of an object, or NULL (absent, or `obj` is NULL or not an object). */
const json_value* json_get(const json_value* obj, const char* key);
json_value* json_get_mutable(json_value* obj, const char* key);

/* Typed getters over json_get: return 1 and set *out when the member exists with that type
 * (an integer-valued number for json_get_int), 0 when absent or null, -1 for another type. */
int json_get_int(const json_value* obj, const char* key, int64_t* out);
int json_get_double(const json_value* obj, const char* key, double* out);
int json_get_bool(const json_value* obj, const char* key, int* out);
int json_get_string(const json_value* obj, const char* key, const char** out);

/* Sets member `key` of object `obj` to `value` (a tree from json_value_parse), taking ownership
 * of it. Replaces an existing member in place, else appends. Returns 0, or -1 when out of memory
 * or `obj` is not an object (value is freed either way). */
int json_object_set(json_value* obj, const char* key, json_value* value);

/* Writes `v` as JSON text, objects and arrays indented by 2 spaces per level (the layout
 * transformers writes configs in), and a final newline. Returns 0, or -1 on a write error. */
int json_value_write(FILE* out, const json_value* v);
/* The same without the newline, as a member nested `depth` levels deep. */
void json_value_write_nested(FILE* out, const json_value* v, int depth);
/* Writes n bytes of UTF-8 as a JSON string literal (quotes and escapes). */
void json_write_string(FILE* out, const char* s, size_t n);

#endif /* MXMOE_IO_JSON_VALUE_H */
