/*
 * convert.c — shared parts of `mxmoe quantize` and `mxmoe dequantize` (see convert.h).
 */
#include "convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int64_t convert_add(convert_outputs* o, const char* prefix, const char* suffix,
                    mxmoe_st_dtype dtype, int32_t ndim, const int64_t* shape) {
    if (o->count == o->capacity) {
        size_t cap = o->capacity ? 2 * o->capacity : 64;
        mxmoe_st_entry* p = realloc(o->entries, cap * sizeof *p);
        if (p == NULL) {
            return -1;
        }
        o->entries = p;
        o->capacity = cap;
    }
    size_t a = strlen(prefix), b = strlen(suffix);
    char* name = malloc(a + b + 1);
    if (name == NULL) {
        return -1;
    }
    memcpy(name, prefix, a);
    memcpy(name + a, suffix, b + 1);
    mxmoe_st_entry* e = &o->entries[o->count];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int32_t d = 0; d < ndim; d++) {
        e->shape[d] = shape[d];
    }
    return (int64_t)o->count++;
}

void convert_outputs_free(convert_outputs* o) {
    for (size_t i = 0; i < o->count; i++) {
        free((char*)o->entries[i].name);
    }
    free(o->entries);
    o->entries = NULL;
    o->count = o->capacity = 0;
}

static int compare_entry_names(const void* a, const void* b) {
    return strcmp((*(const mxmoe_st_entry* const*)a)->name,
                  (*(const mxmoe_st_entry* const*)b)->name);
}

int convert_check_unique(const char* cmd, const convert_outputs* o) {
    if (o->count < 2) {
        return 0;
    }
    const mxmoe_st_entry** sorted = malloc(o->count * sizeof *sorted);
    if (sorted == NULL) {
        cli_error(cmd, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < o->count; i++) {
        sorted[i] = &o->entries[i];
    }
    qsort(sorted, o->count, sizeof *sorted, compare_entry_names);
    int rc = 0;
    for (size_t i = 1; i < o->count && rc == 0; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            cli_error(cmd,
                      "two output tensors would be called '%s' (the input already has a tensor of "
                      "that name); rename it first",
                      sorted[i]->name);
            rc = -1;
        }
    }
    free(sorted);
    return rc;
}

static int is_dropped(const char* key, const char* const* drop) {
    for (; drop != NULL && *drop != NULL; drop++) {
        size_t n = strlen(*drop);
        if (n > 0 && (*drop)[n - 1] == '*') {
            if (strncmp(key, *drop, n - 1) == 0) {
                return 1;
            }
        } else if (strcmp(key, *drop) == 0) {
            return 1;
        }
    }
    return 0;
}

int convert_metadata_build(const mxmoe_st_file* in, const char* const* drop, const mxmoe_st_kv* add,
                           size_t add_count, convert_metadata* out) {
    size_t n_in = 0;
    const mxmoe_st_kv* kv = mxmoe_st_metadata(in, &n_in);
    out->kv = malloc((n_in + add_count + 1) * sizeof *out->kv);
    out->count = 0;
    if (out->kv == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n_in; i++) {
        int replaced = 0;
        for (size_t j = 0; j < add_count; j++) {
            replaced |= strcmp(kv[i].key, add[j].key) == 0;
        }
        if (!replaced && !is_dropped(kv[i].key, drop)) {
            out->kv[out->count++] = kv[i];
        }
    }
    for (size_t j = 0; j < add_count; j++) {
        out->kv[out->count++] = add[j];
    }
    return 0;
}

void convert_metadata_free(convert_metadata* m) {
    free(m->kv);
    m->kv = NULL;
    m->count = 0;
}

mxmoe_st_file* convert_open_input(const char* cmd, const char* path) {
    mxmoe_st_file* f = NULL;
    mxmoe_io_error err;
    mxmoe_status st = mxmoe_st_open(path, &f, &err);
    if (st != MXMOE_OK) {
        cli_error(cmd, "%s (%s)", err.message, mxmoe_status_string(st));
        return NULL;
    }
    return f;
}

int convert_copy_tensor(const char* cmd, mxmoe_st_file* in, size_t in_index, mxmoe_st_writer* out,
                        size_t out_index) {
    const mxmoe_st_tensor_info* t = mxmoe_st_info(in, in_index);
    size_t chunk = t->nbytes < CONVERT_CHUNK_BYTES ? (size_t)t->nbytes : CONVERT_CHUNK_BYTES;
    unsigned char* buf = malloc(chunk ? chunk : 1);
    if (buf == NULL) {
        cli_error(cmd, "out of memory copying '%s'", t->name);
        return -1;
    }
    mxmoe_io_error err;
    int rc = 0;
    for (uint64_t done = 0; done < t->nbytes && rc == 0; done += chunk) {
        size_t n = (size_t)(t->nbytes - done < chunk ? t->nbytes - done : chunk);
        if (mxmoe_st_read(in, in_index, done, buf, n, &err) != MXMOE_OK ||
            mxmoe_st_writer_append(out, out_index, buf, n, &err) != MXMOE_OK) {
            cli_error(cmd, "%s", err.message);
            rc = -1;
        }
    }
    free(buf);
    return rc;
}

void convert_describe(char* buf, size_t size, mxmoe_st_dtype dtype, int32_t ndim,
                      const int64_t* shape) {
    int used = snprintf(buf, size, "%s [", mxmoe_st_dtype_name(dtype));
    for (int32_t d = 0; d < ndim && used > 0 && (size_t)used < size; d++) {
        used +=
            snprintf(buf + used, size - (size_t)used, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    if (used > 0 && (size_t)used < size) {
        snprintf(buf + used, size - (size_t)used, "]");
    }
}

int64_t convert_chunk_rows(int64_t rows_total, uint64_t row_bytes) {
    /* At least one row, even for an empty tensor: buffers are sized from this. */
    uint64_t rows = row_bytes ? CONVERT_CHUNK_BYTES / row_bytes : 1;
    if (rows < 1) {
        rows = 1;
    }
    if (rows_total >= 1 && (uint64_t)rows_total < rows) {
        rows = (uint64_t)rows_total;
    }
    return (int64_t)rows;
}

int convert_parse_args(const char* cmd, const char* usage, int argc, char** argv,
                       const char* paths[2], mxmoe_scale_rule* rule, mxmoe_backend* backend) {
    int num_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        } else if (rule != NULL && strcmp(argv[i], "--rule") == 0) {
            const char* v = cli_option_value(cmd, argc, argv, &i);
            if (v == NULL || cli_parse_rule(cmd, v, rule) != 0) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--backend") == 0) {
            const char* v = cli_option_value(cmd, argc, argv, &i);
            if (v == NULL || cli_parse_backend(cmd, v, backend) != 0) {
                return CLI_EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (num_paths < 2) {
            paths[num_paths++] = argv[i];
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (num_paths != 2) {
        return cli_usage_error(cmd, "expected IN.safetensors and OUT.safetensors");
    }
    return -1;
}

int convert_close_output(const char* cmd, mxmoe_st_writer* out, int rc) {
    mxmoe_io_error err;
    if (out == NULL) {
        return rc;
    }
    if (rc == 0 && mxmoe_st_writer_close(out, &err) != MXMOE_OK) {
        return cli_error(cmd, "%s", err.message);
    }
    if (rc != 0) {
        mxmoe_st_writer_abort(out);
    }
    return rc;
}
