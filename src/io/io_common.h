/*
 * io_common.h — helpers shared by the safetensors reader and writer: error messages that name
 * the file and the tensor, checked size arithmetic.
 *
 * Internal to src/io.
 */
#ifndef MXMOE_IO_COMMON_H
#define MXMOE_IO_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mxmoe_io.h"

#if defined(__GNUC__)
#define MXMOE_IO_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define MXMOE_IO_PRINTF(fmt_idx, arg_idx)
#endif

/* Longest file or tensor name quoted in a message; longer ones are shortened with "...". */
#define IO_QUOTE_MAX 120

/* Returns from the calling function with the status of `expr` unless it is MXMOE_OK. */
#define MXMOE_IO_FORWARD(expr)                                                                     \
    do {                                                                                           \
        mxmoe_status io_forward_status_ = (expr);                                                  \
        if (io_forward_status_ != MXMOE_OK) {                                                      \
            return io_forward_status_;                                                             \
        }                                                                                          \
    } while (0)

/* Writes "<file>: <message>" into err (if not NULL) and returns `status`. */
mxmoe_status io_fail(mxmoe_io_error* err, mxmoe_status status, const char* file, const char* fmt,
                     ...) MXMOE_IO_PRINTF(4, 5);

/* Sets err->message to "" (if err is not NULL) and returns MXMOE_OK. */
mxmoe_status io_ok(mxmoe_io_error* err);

/* Copies `s` for a message: at most IO_QUOTE_MAX bytes, cut on a UTF-8 character boundary and
 * ended with "..." when longer, control characters shown as '?'. `out` has IO_QUOTE_MAX + 4
 * bytes. File paths keep their tail (the file name), tensor names their head. */
typedef char io_quoted[IO_QUOTE_MAX + 4];
const char* io_quote_head(io_quoted out, const char* s);
const char* io_quote_tail(io_quoted out, const char* s);

/* Product of the shape with overflow checks: returns 0 and sets *numel, or -1 when a dim is
 * negative or the product exceeds INT64_MAX. */
int io_shape_numel(const int64_t* shape, int32_t ndim, int64_t* numel);

/* numel x elsize, -1 if it exceeds INT64_MAX or SIZE_MAX. */
int io_mul_bytes(int64_t numel, size_t elsize, uint64_t* bytes);

/* Formats "[2, 3, 4]" into out (size bytes). */
void io_format_shape(char* out, size_t size, const int64_t* shape, int32_t ndim);

#endif /* MXMOE_IO_COMMON_H */
