/*
 * io_common.c — error messages, name quoting, checked sizes and the dtype table of the
 * safetensors reader and writer.
 */
#include "io/io_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Header names and element sizes, indexed by mxmoe_st_dtype (safetensors tensor.rs `Dtype`). */
static const struct {
    const char* name;
    size_t size;
} dtype_table[MXMOE_ST_DTYPE_COUNT] = {
    [MXMOE_ST_BOOL] = {"BOOL", 1},
    [MXMOE_ST_U8] = {"U8", 1},
    [MXMOE_ST_I8] = {"I8", 1},
    [MXMOE_ST_F8_E5M2] = {"F8_E5M2", 1},
    [MXMOE_ST_F8_E4M3] = {"F8_E4M3", 1},
    [MXMOE_ST_F8_E8M0] = {"F8_E8M0", 1},
    [MXMOE_ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 1},
    [MXMOE_ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 1},
    [MXMOE_ST_I16] = {"I16", 2},
    [MXMOE_ST_U16] = {"U16", 2},
    [MXMOE_ST_F16] = {"F16", 2},
    [MXMOE_ST_BF16] = {"BF16", 2},
    [MXMOE_ST_I32] = {"I32", 4},
    [MXMOE_ST_U32] = {"U32", 4},
    [MXMOE_ST_F32] = {"F32", 4},
    [MXMOE_ST_I64] = {"I64", 8},
    [MXMOE_ST_U64] = {"U64", 8},
    [MXMOE_ST_F64] = {"F64", 8},
    [MXMOE_ST_C64] = {"C64", 8},
};

const char* mxmoe_st_dtype_name(mxmoe_st_dtype dtype) {
    if ((unsigned)dtype >= MXMOE_ST_DTYPE_COUNT) {
        return NULL;
    }
    return dtype_table[dtype].name;
}

size_t mxmoe_st_dtype_size(mxmoe_st_dtype dtype) {
    if ((unsigned)dtype >= MXMOE_ST_DTYPE_COUNT) {
        return 0;
    }
    return dtype_table[dtype].size;
}

int mxmoe_st_dtype_from_name(const char* name, mxmoe_st_dtype* out) {
    if (name == NULL) {
        return 0;
    }
    for (int i = 0; i < MXMOE_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            if (out != NULL) {
                *out = (mxmoe_st_dtype)i;
            }
            return 1;
        }
    }
    return 0;
}

int mxmoe_st_dtype_to_mxmoe(mxmoe_st_dtype dtype, mxmoe_dtype* out) {
    mxmoe_dtype d;
    switch (dtype) {
    case MXMOE_ST_F32:
        d = MXMOE_F32;
        break;
    case MXMOE_ST_BF16:
        d = MXMOE_BF16;
        break;
    case MXMOE_ST_F16:
        d = MXMOE_F16;
        break;
    case MXMOE_ST_U8:
        d = MXMOE_U8;
        break;
    case MXMOE_ST_I32:
        d = MXMOE_I32;
        break;
    default:
        return 0;
    }
    if (out != NULL) {
        *out = d;
    }
    return 1;
}

mxmoe_status io_ok(mxmoe_io_error* err) {
    if (err != NULL) {
        err->message[0] = '\0';
    }
    return MXMOE_OK;
}

mxmoe_status io_fail(mxmoe_io_error* err, mxmoe_status status, const char* file, const char* fmt,
                     ...) {
    if (err == NULL) {
        return status;
    }
    io_quoted quoted;
    int used = snprintf(err->message, sizeof err->message,
                        "%s: ", io_quote_tail(quoted, file != NULL ? file : "(unnamed)"));
    if (used < 0 || (size_t)used >= sizeof err->message) {
        return status;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + used, sizeof err->message - (size_t)used, fmt, ap);
    va_end(ap);
    return status;
}

/* Copies n bytes of s into out, control characters replaced by '?'. */
static void copy_printable(char* out, const char* s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (ch < 0x20 || ch == 0x7F) ? '?' : (char)ch;
    }
    out[n] = '\0';
}

const char* io_quote_head(io_quoted out, const char* s) {
    size_t n = strlen(s);
    if (n <= IO_QUOTE_MAX) {
        copy_printable(out, s, n);
        return out;
    }
    size_t keep = IO_QUOTE_MAX - 3;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) {
        keep--; /* s[keep] would start the cut-off part: never split a UTF-8 sequence */
    }
    copy_printable(out, s, keep);
    memcpy(out + keep, "...", 4);
    return out;
}

const char* io_quote_tail(io_quoted out, const char* s) {
    size_t n = strlen(s);
    if (n <= IO_QUOTE_MAX) {
        copy_printable(out, s, n);
        return out;
    }
    size_t start = n - (IO_QUOTE_MAX - 3);
    while (start < n && ((unsigned char)s[start] & 0xC0) == 0x80) {
        start++;
    }
    memcpy(out, "...", 3);
    copy_printable(out + 3, s + start, n - start);
    return out;
}

int io_shape_numel(const int64_t* shape, int32_t ndim, int64_t* numel) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            return -1;
        }
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) {
            return -1;
        }
        n *= shape[i];
    }
    *numel = n;
    return 0;
}

int io_mul_bytes(int64_t numel, size_t elsize, uint64_t* bytes) {
    if (numel < 0 || elsize == 0) {
        return -1;
    }
    uint64_t limit = (uint64_t)INT64_MAX;
    if ((uint64_t)SIZE_MAX < limit) {
        limit = (uint64_t)SIZE_MAX;
    }
    if ((uint64_t)numel > limit / elsize) {
        return -1;
    }
    *bytes = (uint64_t)numel * elsize;
    return 0;
}

void io_format_shape(char* out, size_t size, const int64_t* shape, int32_t ndim) {
    size_t used = 0;
    int n = snprintf(out, size, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int32_t i = 0; i < ndim && used < size; i++) {
        n = snprintf(out + used, size - used, "%s%lld", i > 0 ? ", " : "", (long long)shape[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < size) {
        snprintf(out + used, size - used, "]");
    }
}
