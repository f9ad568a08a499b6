/*
 * json.h — a small strict pull parser for JSON text (RFC 8259), enough for safetensors headers.
 *
 * Internal to src/io. There is no DOM: the caller walks the document it expects (objects,
 * arrays, strings, integers) and the cursor refuses everything else, so a header is parsed in
 * one pass with memory proportional to what is kept, and a hostile header cannot make the parser
 * recurse or allocate without bound. Strictness: the raw text must be valid UTF-8; strings must
 * not hold raw control characters; escapes are the eight of RFC 8259 plus \uXXXX with surrogate
 * pairs matched; numbers must be integers (no fraction, no exponent, no leading zeros) that fit
 * in int64. On the first error the cursor records a message and every later call fails.
 */
#ifndef MXMOE_IO_JSON_H
#define MXMOE_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef struct json_cursor {
    const char* text;
    size_t len;
    size_t pos;
    int failed;
    const char* label; /* what the text is, for messages: "header" by default */
    char error[192];   /* "header offset 17: expected ':' after an object key" */
} json_cursor;

void json_init(json_cursor* c, const char* text, size_t len);
/* The same, with messages reading "<label> offset N: ..." (label "" gives "offset N: ..."). */
void json_init_labeled(json_cursor* c, const char* text, size_t len, const char* label);

/* Records an error at the current position (printf-style) and returns -1. */
int json_fail(json_cursor* c, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Skips JSON whitespace (space, tab, LF, CR). */
void json_skip_ws(json_cursor* c);
/* Skips whitespace and returns the next byte without consuming it, -1 at the end or on error. */
int json_peek(json_cursor* c);
/* Skips whitespace; returns 0 if the cursor is at the end of the text, else -1 (error set). */
int json_expect_end(json_cursor* c);

/* Object iteration: json_object_begin consumes '{'. Then each json_object_next call returns 1
 * with the next member's key decoded (malloc'd, NUL-terminated, *key_len bytes without the NUL,
 * may hold NUL bytes) and the ':' consumed, 0 once the closing '}' is consumed, -1 on error.
 * `first` is caller state: set it to 1 before the first call. */
int json_object_begin(json_cursor* c);
int json_object_next(json_cursor* c, int* first, char** key, size_t* key_len);

/* Array iteration, the same protocol: 1 when an element follows, 0 after ']', -1 on error. */
int json_array_begin(json_cursor* c);
int json_array_next(json_cursor* c, int* first);

/* A string value: decoded to UTF-8, malloc'd and NUL-terminated; *len excludes the NUL. */
int json_parse_string(json_cursor* c, char** out, size_t* len);
/* An integer value in int64 range. */
int json_parse_int64(json_cursor* c, int64_t* out);
/* Any JSON number (RFC 8259 grammar: -?int frac? exp?): *start and *len locate its text, *value
 * is its value as a double (correctly rounded for the usual short decimals, independent of the
 * C locale; magnitudes past DBL_MAX are an error). */
int json_parse_number(json_cursor* c, size_t* start, size_t* len, double* value);
/* One of the literals true, false, null: *out is 1, 0 or -1. */
int json_parse_literal(json_cursor* c, int* out);

/* 1 if `s` (n bytes) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF), else 0. */
int json_utf8_valid(const char* s, size_t n);

#endif /* MXMOE_IO_JSON_H */
