/*
 * json_value.c — the JSON document tree of json_value.h, built with the strict cursor of json.c.
 */
#include "io/json_value.h"

#include <stdlib.h>
#include <string.h>

#include "io/json.h"

static void free_contents(json_value* v) {
    free(v->text);
    for (size_t i = 0; i < v->count; i++) {
        if (v->keys != NULL) {
            free(v->keys[i]);
        }
        free_contents(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
    memset(v, 0, sizeof *v);
}

void json_value_free(json_value* v) {
    if (v != NULL) {
        free_contents(v);
        free(v);
    }
}

/* Room for one more member; -1 when out of memory. */
static int reserve(json_value* v, int with_keys) {
    if (v->count < v->capacity) {
        return 0;
    }
    size_t want = v->capacity ? v->capacity * 2 : 8;
    if (want > SIZE_MAX / sizeof(json_value)) {
        return -1;
    }
    json_value* items = realloc(v->items, want * sizeof *items);
    if (items == NULL) {
        return -1;
    }
    v->items = items;
    if (with_keys) {
        char** keys = realloc(v->keys, want * sizeof *keys);
        if (keys == NULL) {
            return -1;
        }
        v->keys = keys;
    }
    v->capacity = want;
    return 0;
}

static int parse_value(json_cursor* c, json_value* v, int depth);

static int parse_object(json_cursor* c, json_value* v, int depth) {
    v->kind = JSON_OBJECT;
    if (json_object_begin(c) != 0) {
        return -1;
    }
    int first = 1, more;
    char* key;
    size_t key_len;
    while ((more = json_object_next(c, &first, &key, &key_len)) == 1) {
        if (key_len != strlen(key)) {
            free(key);
            return json_fail(c, "an object key holds U+0000");
        }
        if (json_get(v, key) != NULL) {
            json_fail(c, "duplicate key \"%.60s\"", key);
            free(key);
            return -1;
        }
        if (reserve(v, 1) != 0) {
            free(key);
            return json_fail(c, "out of memory");
        }
        json_value* item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->keys[v->count] = key;
        v->count++; /* counted before parsing so that a failure frees it */
        if (parse_value(c, item, depth + 1) != 0) {
            return -1;
        }
    }
    return more < 0 ? -1 : 0;
}

static int parse_array(json_cursor* c, json_value* v, int depth) {
    v->kind = JSON_ARRAY;
    if (json_array_begin(c) != 0) {
        return -1;
    }
    int first = 1, more;
    while ((more = json_array_next(c, &first)) == 1) {
        if (reserve(v, 0) != 0) {
            return json_fail(c, "out of memory");
        }
        json_value* item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->count++;
        if (parse_value(c, item, depth + 1) != 0) {
            return -1;
        }
    }
    return more < 0 ? -1 : 0;
}

static int parse_number(json_cursor* c, json_value* v) {
    size_t start, len;
    v->kind = JSON_NUMBER;
    if (json_parse_number(c, &start, &len, &v->number) != 0) {
        return -1;
    }
    v->text = malloc(len + 1);
    if (v->text == NULL) {
        return json_fail(c, "out of memory");
    }
    memcpy(v->text, c->text + start, len);
    v->text[len] = '\0';
    v->text_len = len;
    /* An integer (no fraction, no exponent) within int64 keeps its exact value. */
    if (strpbrk(v->text, ".eE") == NULL) {
        json_cursor sub;
        json_init_labeled(&sub, v->text, len, "");
        int64_t n;
        if (json_parse_int64(&sub, &n) == 0) {
            v->is_integer = 1;
            v->integer = n;
        }
    }
    return 0;
}

static int parse_value(json_cursor* c, json_value* v, int depth) {
    if (depth > JSON_MAX_DEPTH) {
        return json_fail(c, "nested deeper than %d levels", JSON_MAX_DEPTH);
    }
    int ch = json_peek(c);
    switch (ch) {
    case '{':
        return parse_object(c, v, depth);
    case '[':
        return parse_array(c, v, depth);
    case '"':
        v->kind = JSON_STRING;
        return json_parse_string(c, &v->text, &v->text_len);
    case 't':
    case 'f':
    case 'n': {
        int lit;
        if (json_parse_literal(c, &lit) != 0) {
            return -1;
        }
        v->kind = lit < 0 ? JSON_NULL : JSON_BOOL;
        v->boolean = lit > 0;
        return 0;
    }
    default:
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            return parse_number(c, v);
        }
        return json_parse_literal(c, &ch); /* reports "expected a value" */
    }
}

int json_value_parse(const char* text, size_t len, json_value** out, char* err, size_t err_size) {
    *out = NULL;
    json_value* v = calloc(1, sizeof *v);
    json_cursor c;
    json_init_labeled(&c, text, len, "");
    if (v == NULL) {
        json_fail(&c, "out of memory");
    } else if (!c.failed) {
        parse_value(&c, v, 0);
        json_expect_end(&c);
    }
    if (c.failed) {
        json_value_free(v);
        if (err != NULL && err_size > 0) {
            snprintf(err, err_size, "%s", c.error);
        }
        return -1;
    }
    *out = v;
    return 0;
}

json_value* json_get_mutable(json_value* obj, const char* key) {
    if (obj == NULL || obj->kind != JSON_OBJECT || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->keys[i], key) == 0) {
            return &obj->items[i];
        }
    }
    return NULL;
}

const json_value* json_get(const json_value* obj, const char* key) {
    return json_get_mutable((json_value*)obj, key);
}

int json_get_int(const json_value* obj, const char* key, int64_t* out) {
    const json_value* v = json_get(obj, key);
    if (v == NULL || v->kind == JSON_NULL) {
        return 0;
    }
    if (v->kind != JSON_NUMBER || !v->is_integer) {
        return -1;
    }
    *out = v->integer;
    return 1;
}

int json_get_double(const json_value* obj, const char* key, double* out) {
    const json_value* v = json_get(obj, key);
    if (v == NULL || v->kind == JSON_NULL) {
        return 0;
    }
    if (v->kind != JSON_NUMBER) {
        return -1;
    }
    *out = v->number;
    return 1;
}

int json_get_bool(const json_value* obj, const char* key, int* out) {
    const json_value* v = json_get(obj, key);
    if (v == NULL || v->kind == JSON_NULL) {
        return 0;
    }
    if (v->kind != JSON_BOOL) {
        return -1;
    }
    *out = v->boolean;
    return 1;
}

int json_get_string(const json_value* obj, const char* key, const char** out) {
    const json_value* v = json_get(obj, key);
    if (v == NULL || v->kind == JSON_NULL) {
        return 0;
    }
    if (v->kind != JSON_STRING) {
        return -1;
    }
    *out = v->text;
    return 1;
}

int json_object_set(json_value* obj, const char* key, json_value* value) {
    if (obj == NULL || obj->kind != JSON_OBJECT) {
        json_value_free(value);
        return -1;
    }
    json_value* existing = json_get_mutable(obj, key);
    if (existing != NULL) {
        free_contents(existing);
        *existing = *value;
        free(value);
        return 0;
    }
    size_t n = strlen(key);
    char* key_copy = malloc(n + 1);
    if (key_copy == NULL || reserve(obj, 1) != 0) {
        free(key_copy);
        json_value_free(value);
        return -1;
    }
    memcpy(key_copy, key, n + 1);
    obj->keys[obj->count] = key_copy;
    obj->items[obj->count] = *value;
    obj->count++;
    free(value);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 */

void json_write_string(FILE* out, const char* s, size_t n) {
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (ch < 0x20 || ch == 0x7F) {
                fprintf(out, "\\u%04x", ch);
            } else {
                fputc(ch, out);
            }
        }
    }
    fputc('"', out);
}

static void indent(FILE* out, int depth) {
    for (int i = 0; i < depth; i++) {
        fputs("  ", out);
    }
}

static void write_value(FILE* out, const json_value* v, int depth) {
    switch (v->kind) {
    case JSON_NULL:
        fputs("null", out);
        break;
    case JSON_BOOL:
        fputs(v->boolean ? "true" : "false", out);
        break;
    case JSON_NUMBER:
        fputs(v->text, out);
        break;
    case JSON_STRING:
        json_write_string(out, v->text, v->text_len);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT: {
        int is_object = v->kind == JSON_OBJECT;
        if (v->count == 0) {
            fputs(is_object ? "{}" : "[]", out);
            break;
        }
        fputs(is_object ? "{\n" : "[\n", out);
        for (size_t i = 0; i < v->count; i++) {
            indent(out, depth + 1);
            if (is_object) {
                json_write_string(out, v->keys[i], strlen(v->keys[i]));
                fputs(": ", out);
            }
            write_value(out, &v->items[i], depth + 1);
            fputs(i + 1 < v->count ? ",\n" : "\n", out);
        }
        indent(out, depth);
        fputc(is_object ? '}' : ']', out);
        break;
    }
    }
}

void json_value_write_nested(FILE* out, const json_value* v, int depth) {
    write_value(out, v, depth);
}

int json_value_write(FILE* out, const json_value* v) {
    write_value(out, v, 0);
    fputc('\n', out);
    return ferror(out) ? -1 : 0;
}
