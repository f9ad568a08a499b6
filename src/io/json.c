/*
 * json.c — the strict JSON pull parser behind the safetensors reader (see json.h).
 *
 * Written by hand rather than vendored because the header of a model file is untrusted input:
 * every byte is checked against RFC 8259, nothing recurses, and the only allocations are the
 * strings the caller asks for, each bounded by the text's length.
 */
#include "io/json.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offset of the first byte that breaks UTF-8 (RFC 3629), or n if all n bytes are valid. */
static size_t utf8_invalid_at(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (b >= 0xC2 && b <= 0xDF) { /* 0xC0, 0xC1 would only start overlong forms */
            extra = 1;
            cp = b & 0x1Fu;
        } else if (b >= 0xE0 && b <= 0xEF) {
            extra = 2;
            cp = b & 0x0Fu;
        } else if (b >= 0xF0 && b <= 0xF4) {
            extra = 3;
            cp = b & 0x07u;
        } else {
            return i;
        }
        if (n - i <= extra) {
            return i;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return i;
            }
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        /* Overlong encodings, UTF-16 surrogates and code points past U+10FFFF are not UTF-8. */
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return i;
        }
        i += extra + 1;
    }
    return n;
}

int json_utf8_valid(const char* s, size_t n) {
    return utf8_invalid_at((const unsigned char*)s, n) == n;
}

int json_fail(json_cursor* c, const char* fmt, ...) {
    if (c->failed) {
        return -1; /* keep the first error: later ones are consequences */
    }
    c->failed = 1;
    int used = snprintf(c->error, sizeof c->error, "%s%soffset %zu: ", c->label,
                        c->label[0] != '\0' ? " " : "", c->pos);
    if (used < 0 || (size_t)used >= sizeof c->error) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error + used, sizeof c->error - (size_t)used, fmt, ap);
    va_end(ap);
    return -1;
}

void json_init(json_cursor* c, const char* text, size_t len) {
    json_init_labeled(c, text, len, "header");
}

void json_init_labeled(json_cursor* c, const char* text, size_t len, const char* label) {
    c->label = label != NULL ? label : "";
    c->text = text;
    c->len = len;
    c->pos = 0;
    c->failed = 0;
    c->error[0] = '\0';
    size_t bad = utf8_invalid_at((const unsigned char*)text, len);
    if (bad != len) {
        c->pos = bad;
        json_fail(c, "the header is not valid UTF-8");
    }
}

void json_skip_ws(json_cursor* c) {
    while (c->pos < c->len) {
        char ch = c->text[c->pos];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            break;
        }
        c->pos++;
    }
}

/* Next significant character without consuming it, or -1 at the end of the text. */
static int peek(json_cursor* c) {
    json_skip_ws(c);
    return c->pos < c->len ? (unsigned char)c->text[c->pos] : -1;
}

int json_peek(json_cursor* c) {
    return c->failed ? -1 : peek(c);
}

/* Describes the next character for an error message. */
static const char* describe_next(json_cursor* c, char buf[16]) {
    int ch = peek(c);
    if (ch < 0) {
        return "the end of the header";
    }
    if (ch >= 0x20 && ch < 0x7F) {
        snprintf(buf, 16, "'%c'", ch);
    } else {
        snprintf(buf, 16, "byte 0x%02x", (unsigned)ch);
    }
    return buf;
}

static int expect_char(json_cursor* c, char want, const char* what) {
    if (c->failed) {
        return -1;
    }
    if (peek(c) != (unsigned char)want) {
        char buf[16];
        return json_fail(c, "expected %s, found %s", what, describe_next(c, buf));
    }
    c->pos++;
    return 0;
}

int json_expect_end(json_cursor* c) {
    if (c->failed) {
        return -1;
    }
    if (peek(c) >= 0) {
        char buf[16];
        return json_fail(c, "trailing characters after the JSON object (found %s)",
                         describe_next(c, buf));
    }
    return 0;
}

int json_object_begin(json_cursor* c) {
    return expect_char(c, '{', "'{' (an object)");
}

int json_array_begin(json_cursor* c) {
    return expect_char(c, '[', "'[' (an array)");
}

/* Shared by objects and arrays: 1 if another element follows, 0 after `close`, -1 on error.
 * JSON allows no trailing comma, so a ',' must be followed by an element. */
static int container_next(json_cursor* c, int* first, char close) {
    if (c->failed) {
        return -1;
    }
    int ch = peek(c);
    if (ch == (unsigned char)close) {
        c->pos++;
        return 0;
    }
    if (!*first) {
        if (ch != ',') {
            char buf[16];
            return json_fail(c, "expected ',' or '%c', found %s", close, describe_next(c, buf));
        }
        c->pos++;
        if (peek(c) == (unsigned char)close) {
            return json_fail(c, "trailing comma before '%c'", close);
        }
    }
    *first = 0;
    return 1;
}

int json_object_next(json_cursor* c, int* first, char** key, size_t* key_len) {
    *key = NULL;
    int more = container_next(c, first, '}');
    if (more != 1) {
        return more;
    }
    if (peek(c) != '"') {
        char buf[16];
        return json_fail(c, "expected a string key, found %s", describe_next(c, buf));
    }
    if (json_parse_string(c, key, key_len) != 0) {
        return -1;
    }
    if (expect_char(c, ':', "':' after an object key") != 0) {
        free(*key);
        *key = NULL;
        return -1;
    }
    return 1;
}

int json_array_next(json_cursor* c, int* first) {
    return container_next(c, first, ']');
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Reads the 4 hex digits after "\u" at c->pos; -1 if they are not 4 hex digits. */
static long read_hex4(json_cursor* c) {
    if (c->len - c->pos < 4) {
        return -1;
    }
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_value(c->text[c->pos + (size_t)i]);
        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
    }
    c->pos += 4;
    return v;
}

static size_t put_utf8(char* out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escape after a backslash (c->pos is past the '\'), appending to out. */
static int decode_escape(json_cursor* c, char* out, size_t* n) {
    if (c->pos >= c->len) {
        return json_fail(c, "unterminated string");
    }
    char e = c->text[c->pos++];
    switch (e) {
    case '"':
        out[(*n)++] = '"';
        return 0;
    case '\\':
        out[(*n)++] = '\\';
        return 0;
    case '/':
        out[(*n)++] = '/';
        return 0;
    case 'b':
        out[(*n)++] = '\b';
        return 0;
    case 'f':
        out[(*n)++] = '\f';
        return 0;
    case 'n':
        out[(*n)++] = '\n';
        return 0;
    case 'r':
        out[(*n)++] = '\r';
        return 0;
    case 't':
        out[(*n)++] = '\t';
        return 0;
    case 'u':
        break;
    default:
        c->pos--;
        return json_fail(c, "invalid escape '\\%c' in a string", (e >= 0x20 && e < 0x7F) ? e : '?');
    }
    long hi = read_hex4(c);
    if (hi < 0) {
        return json_fail(c, "\\u must be followed by 4 hex digits");
    }
    uint32_t cp = (uint32_t)hi;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return json_fail(c, "unpaired low surrogate \\u%04lx in a string", hi);
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high surrogate must be followed at once by an escaped low surrogate. */
        if (c->len - c->pos < 2 || c->text[c->pos] != '\\' || c->text[c->pos + 1] != 'u') {
            return json_fail(c, "unpaired high surrogate \\u%04lx in a string", hi);
        }
        c->pos += 2;
        long lo = read_hex4(c);
        if (lo < 0) {
            return json_fail(c, "\\u must be followed by 4 hex digits");
        }
        if (lo < 0xDC00 || lo > 0xDFFF) {
            return json_fail(c, "high surrogate \\u%04lx not followed by a low surrogate", hi);
        }
        cp = 0x10000u + (((uint32_t)hi - 0xD800u) << 10) + ((uint32_t)lo - 0xDC00u);
    }
    *n += put_utf8(out + *n, cp);
    return 0;
}

int json_parse_string(json_cursor* c, char** out, size_t* len) {
    *out = NULL;
    *len = 0;
    if (expect_char(c, '"', "a string") != 0) {
        return -1;
    }
    /* Find the closing quote first: the decoded string is never longer than its source. */
    size_t start = c->pos, end = start;
    while (end < c->len && c->text[end] != '"') {
        end += (c->text[end] == '\\' && end + 1 < c->len) ? 2 : 1;
    }
    if (end >= c->len) {
        return json_fail(c, "unterminated string");
    }
    char* buf = malloc(end - start + 1);
    if (buf == NULL) {
        return json_fail(c, "out of memory for a %zu-byte string", end - start);
    }
    size_t n = 0;
    while (c->pos < end) {
        unsigned char ch = (unsigned char)c->text[c->pos];
        if (ch < 0x20) {
            free(buf);
            return json_fail(c, "raw control character 0x%02x in a string (must be escaped)",
                             (unsigned)ch);
        }
        c->pos++;
        if (ch == '\\') {
            if (decode_escape(c, buf, &n) != 0) {
                free(buf);
                return -1;
            }
        } else {
            buf[n++] = (char)ch;
        }
    }
    c->pos = end + 1;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int json_parse_int64(json_cursor* c, int64_t* out) {
    if (c->failed) {
        return -1;
    }
    int ch = peek(c);
    size_t start = c->pos;
    int negative = 0;
    if (ch == '-') {
        negative = 1;
        c->pos++;
    }
    if (c->pos >= c->len || c->text[c->pos] < '0' || c->text[c->pos] > '9') {
        c->pos = start;
        char buf[16];
        return json_fail(c, "expected an integer, found %s", describe_next(c, buf));
    }
    if (c->text[c->pos] == '0' && c->pos + 1 < c->len && c->text[c->pos + 1] >= '0' &&
        c->text[c->pos + 1] <= '9') {
        return json_fail(c, "leading zero in a number");
    }
    /* Accumulate as a negative number: its range includes INT64_MIN. */
    int64_t v = 0;
    while (c->pos < c->len && c->text[c->pos] >= '0' && c->text[c->pos] <= '9') {
        int d = c->text[c->pos] - '0';
        if (v < (INT64_MIN + d) / 10) {
            c->pos = start;
            return json_fail(c, "integer out of the 64-bit range");
        }
        v = v * 10 - d;
        c->pos++;
    }
    if (c->pos < c->len &&
        (c->text[c->pos] == '.' || c->text[c->pos] == 'e' || c->text[c->pos] == 'E')) {
        return json_fail(c, "expected an integer, found a number with a fraction or exponent");
    }
    if (!negative) {
        if (v == INT64_MIN) {
            c->pos = start;
            return json_fail(c, "integer out of the 64-bit range");
        }
        v = -v;
    }
    *out = v;
    return 0;
}

static int is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}

/* Exact powers of ten: every 10^k with k <= 22 is a double. */
static const double exact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The value of a validated number text. Short decimals (at most 15 significant digits and a
 * decimal exponent within +-22) take the exact path: the digits and 10^k are both exact
 * doubles, so one multiplication or division rounds correctly (Clinger's fast path). Anything
 * else goes through strtod with the text rewritten for the current locale's decimal point, so
 * a program that called setlocale() still reads "2.5" as 2.5. */
static double number_value(const char* text, size_t len) {
    uint64_t digits = 0;
    int significant = 0, exp10 = 0, negative = 0, fast = 1;
    size_t i = 0;
    if (text[i] == '-') {
        negative = 1;
        i++;
    }
    int in_fraction = 0;
    for (; i < len && (is_digit(text[i]) || text[i] == '.'); i++) {
        if (text[i] == '.') {
            in_fraction = 1;
            continue;
        }
        if (digits == 0 && text[i] == '0') {
            exp10 -= in_fraction; /* leading zeros only move the decimal point */
            continue;
        }
        if (significant >= 15) {
            fast = 0;
            break;
        }
        digits = digits * 10 + (uint64_t)(text[i] - '0');
        significant++;
        exp10 -= in_fraction;
    }
    if (fast && i < len && (text[i] == 'e' || text[i] == 'E')) {
        i++;
        int exp_negative = text[i] == '-';
        if (text[i] == '-' || text[i] == '+') {
            i++;
        }
        long e = 0;
        for (; i < len && is_digit(text[i]); i++) {
            if (e < 100000) {
                e = e * 10 + (text[i] - '0');
            }
        }
        exp10 += (int)(exp_negative ? -e : e);
    }
    if (fast && digits == 0) {
        return negative ? -0.0 : 0.0;
    }
    if (fast && exp10 >= -22 && exp10 <= 22) {
        double v = (double)digits;
        v = exp10 < 0 ? v / exact_pow10[-exp10] : v * exact_pow10[exp10];
        return negative ? -v : v;
    }
    char buf[512];
    if (len >= sizeof buf) {
        return NAN; /* reported by the caller as too long */
    }
    const char* point = localeconv()->decimal_point;
    size_t n = 0;
    for (size_t k = 0; k < len && n + 8 < sizeof buf; k++) {
        if (text[k] == '.' && point != NULL && point[0] != '\0') {
            for (const char* p = point; *p != '\0' && n + 8 < sizeof buf; p++) {
                buf[n++] = *p;
            }
        } else {
            buf[n++] = text[k];
        }
    }
    buf[n] = '\0';
    return strtod(buf, NULL);
}

int json_parse_number(json_cursor* c, size_t* start, size_t* len, double* value) {
    if (c->failed) {
        return -1;
    }
    int ch = peek(c);
    size_t s = c->pos, p = c->pos;
    if (ch == '-') {
        p++;
    }
    if (p >= c->len || !is_digit(c->text[p])) {
        char buf[16];
        return json_fail(c, "expected a number, found %s", describe_next(c, buf));
    }
    if (c->text[p] == '0') {
        p++;
        if (p < c->len && is_digit(c->text[p])) {
            c->pos = p;
            return json_fail(c, "leading zero in a number");
        }
    } else {
        while (p < c->len && is_digit(c->text[p])) {
            p++;
        }
    }
    if (p < c->len && c->text[p] == '.') {
        p++;
        if (p >= c->len || !is_digit(c->text[p])) {
            c->pos = p;
            return json_fail(c, "a digit must follow the decimal point");
        }
        while (p < c->len && is_digit(c->text[p])) {
            p++;
        }
    }
    if (p < c->len && (c->text[p] == 'e' || c->text[p] == 'E')) {
        p++;
        if (p < c->len && (c->text[p] == '+' || c->text[p] == '-')) {
            p++;
        }
        if (p >= c->len || !is_digit(c->text[p])) {
            c->pos = p;
            return json_fail(c, "a digit must follow the exponent mark");
        }
        while (p < c->len && is_digit(c->text[p])) {
            p++;
        }
    }
    if (p - s > 400) {
        return json_fail(c, "number of %zu characters is too long", p - s);
    }
    double v = number_value(c->text + s, p - s);
    if (!isfinite(v)) {
        return json_fail(c, "number out of the double range");
    }
    c->pos = p;
    *start = s;
    *len = p - s;
    *value = v;
    return 0;
}

int json_parse_literal(json_cursor* c, int* out) {
    if (c->failed) {
        return -1;
    }
    peek(c);
    static const struct {
        const char* text;
        int value;
    } literals[3] = {{"true", 1}, {"false", 0}, {"null", -1}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(literals[i].text);
        if (c->len - c->pos >= n && memcmp(c->text + c->pos, literals[i].text, n) == 0) {
            c->pos += n;
            *out = literals[i].value;
            return 0;
        }
    }
    char buf[16];
    return json_fail(c, "expected a value, found %s", describe_next(c, buf));
}
