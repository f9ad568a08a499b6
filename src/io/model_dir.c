/*
 * model_dir.c — a Hugging Face model folder (model_dir.h).
 */
#if !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* opendir, fstat */
#endif

#include "io/model_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/io_common.h"

/* config.json and the index are small: refuse anything larger than this as not a model file. */
#define MODEL_JSON_MAX_BYTES ((size_t)256 << 20)

typedef struct map_entry {
    char* name;
    size_t shard;
} map_entry;

struct model_dir {
    char* path;
    json_value* config;
    json_value* index; /* NULL without an index */
    char* index_name;
    map_entry* map; /* sorted by name */
    size_t map_count;
    char** shard_names; /* sorted */
    char** shard_paths; /* folder + name, for messages */
    mxmoe_st_file** shards;
    size_t shard_count;
};

char* model_join(const char* dir, const char* name) {
    size_t a = strlen(dir), b = strlen(name);
    char* s = malloc(a + b + 2);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, dir, a);
    size_t n = a;
    if (n > 0 && s[n - 1] != '/') {
        s[n++] = '/';
    }
    memcpy(s + n, name, b + 1);
    return s;
}

static char* copy_string(const char* s) {
    size_t n = strlen(s);
    char* c = malloc(n + 1);
    if (c != NULL) {
        memcpy(c, s, n + 1);
    }
    return c;
}

mxmoe_status model_read_file(const char* path, size_t max_bytes, char** text, size_t* len,
                             mxmoe_io_error* err) {
    *text = NULL;
    *len = 0;
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) {
        return io_fail(err, MXMOE_ERR_IO, path, "cannot open: %s", strerror(errno));
    }
    struct stat info;
    if (fstat(fileno(fp), &info) != 0 || !S_ISREG(info.st_mode)) {
        fclose(fp);
        return io_fail(err, MXMOE_ERR_IO, path, "not a regular file");
    }
    if ((uint64_t)info.st_size > max_bytes) {
        fclose(fp);
        return io_fail(err, MXMOE_ERR_FORMAT, path, "%lld bytes, more than the %zu allowed",
                       (long long)info.st_size, max_bytes);
    }
    size_t n = (size_t)info.st_size;
    char* buf = malloc(n + 1);
    if (buf == NULL) {
        fclose(fp);
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    size_t got = fread(buf, 1, n, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (got != n || bad) {
        free(buf);
        return io_fail(err, MXMOE_ERR_IO, path, "cannot read: %s",
                       bad ? strerror(errno) : "short read");
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return MXMOE_OK;
}

/* Reads and parses a JSON file that must hold an object. */
static mxmoe_status read_json(const char* path, json_value** out, mxmoe_io_error* err) {
    char* text;
    size_t len;
    MXMOE_IO_FORWARD(model_read_file(path, MODEL_JSON_MAX_BYTES, &text, &len, err));
    char why[256];
    int rc = json_value_parse(text, len, out, why, sizeof why);
    free(text);
    if (rc != 0) {
        return io_fail(err, MXMOE_ERR_FORMAT, path, "malformed JSON: %s", why);
    }
    if ((*out)->kind != JSON_OBJECT) {
        json_value_free(*out);
        *out = NULL;
        return io_fail(err, MXMOE_ERR_FORMAT, path, "expected a JSON object");
    }
    return MXMOE_OK;
}

void model_dir_close(model_dir* d) {
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->map_count; i++) {
        free(d->map[i].name);
    }
    for (size_t i = 0; i < d->shard_count; i++) {
        free(d->shard_names[i]);
        if (d->shard_paths != NULL) {
            free(d->shard_paths[i]);
        }
        if (d->shards != NULL) {
            mxmoe_st_close(d->shards[i]);
        }
    }
    free(d->map);
    free(d->shard_names);
    free(d->shard_paths);
    free(d->shards);
    json_value_free(d->config);
    json_value_free(d->index);
    free(d->index_name);
    free(d->path);
    free(d);
}

static int compare_strings(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

static int compare_entries(const void* a, const void* b) {
    return strcmp(((const map_entry*)a)->name, ((const map_entry*)b)->name);
}

/* Index of shard `name` in the sorted shard list, or shard_count. */
static size_t shard_index(const model_dir* d, const char* name) {
    char* key = (char*)name;
    char** hit =
        bsearch(&key, d->shard_names, d->shard_count, sizeof *d->shard_names, compare_strings);
    return hit != NULL ? (size_t)(hit - d->shard_names) : d->shard_count;
}

/* After the names are sorted: the shard table and each shard's path. */
static mxmoe_status make_shard_table(model_dir* d, mxmoe_io_error* err) {
    qsort(d->shard_names, d->shard_count, sizeof *d->shard_names, compare_strings);
    size_t n = d->shard_count ? d->shard_count : 1;
    d->shards = calloc(n, sizeof *d->shards);
    d->shard_paths = calloc(n, sizeof *d->shard_paths);
    if (d->shards == NULL || d->shard_paths == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
    }
    for (size_t i = 0; i < d->shard_count; i++) {
        if ((d->shard_paths[i] = model_join(d->path, d->shard_names[i])) == NULL) {
            return io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
        }
    }
    return MXMOE_OK;
}

/* A shard name from an index must name a file directly inside the folder. */
static int plain_file_name(const char* s) {
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Sorts the map and refuses a tensor listed twice. */
static mxmoe_status sort_map(model_dir* d, const char* source, mxmoe_io_error* err) {
    qsort(d->map, d->map_count, sizeof *d->map, compare_entries);
    for (size_t i = 1; i < d->map_count; i++) {
        if (strcmp(d->map[i - 1].name, d->map[i].name) == 0) {
            io_quoted q;
            return io_fail(err, MXMOE_ERR_FORMAT, source,
                           "tensor '%s' is listed twice (in %s and %s)",
                           io_quote_head(q, d->map[i].name), d->shard_names[d->map[i - 1].shard],
                           d->shard_names[d->map[i].shard]);
        }
    }
    return MXMOE_OK;
}

/* The index: {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}. */
static mxmoe_status load_index(model_dir* d, const char* index_path, mxmoe_io_error* err) {
    MXMOE_IO_FORWARD(read_json(index_path, &d->index, err));
    const json_value* wm = json_get(d->index, "weight_map");
    if (wm == NULL || wm->kind != JSON_OBJECT) {
        return io_fail(err, MXMOE_ERR_FORMAT, index_path, "no \"weight_map\" object");
    }
    /* Shard names: the distinct values, sorted. */
    d->shard_names = calloc(wm->count ? wm->count : 1, sizeof *d->shard_names);
    d->map = calloc(wm->count ? wm->count : 1, sizeof *d->map);
    if (d->shard_names == NULL || d->map == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, index_path, "out of memory");
    }
    io_quoted q;
    for (size_t i = 0; i < wm->count; i++) {
        const json_value* v = &wm->items[i];
        if (v->kind != JSON_STRING || v->text_len != strlen(v->text) || !plain_file_name(v->text)) {
            return io_fail(err, MXMOE_ERR_FORMAT, index_path,
                           "weight_map entry of tensor '%s' must be a file name in the folder",
                           io_quote_head(q, wm->keys[i]));
        }
        int seen = 0;
        for (size_t k = 0; k < d->shard_count && !seen; k++) {
            seen = strcmp(d->shard_names[k], v->text) == 0;
        }
        if (!seen) {
            if ((d->shard_names[d->shard_count] = copy_string(v->text)) == NULL) {
                return io_fail(err, MXMOE_ERR_NO_MEMORY, index_path, "out of memory");
            }
            d->shard_count++;
        }
    }
    MXMOE_IO_FORWARD(make_shard_table(d, err));
    for (size_t i = 0; i < wm->count; i++) {
        if ((d->map[i].name = copy_string(wm->keys[i])) == NULL) {
            return io_fail(err, MXMOE_ERR_NO_MEMORY, index_path, "out of memory");
        }
        d->map[i].shard = shard_index(d, wm->items[i].text);
        d->map_count++;
    }
    return sort_map(d, index_path, err);
}

static int has_suffix(const char* s, const char* suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* No index: every *.safetensors file of the folder, all opened now. */
static mxmoe_status load_all_shards(model_dir* d, mxmoe_io_error* err) {
    DIR* dir = opendir(d->path);
    if (dir == NULL) {
        return io_fail(err, MXMOE_ERR_IO, d->path, "cannot list the folder: %s", strerror(errno));
    }
    size_t capacity = 0;
    mxmoe_status st = MXMOE_OK;
    struct dirent* e;
    while (st == MXMOE_OK && (e = readdir(dir)) != NULL) {
        if (!has_suffix(e->d_name, ".safetensors") || e->d_name[0] == '.') {
            continue;
        }
        if (d->shard_count == capacity) {
            capacity = capacity ? 2 * capacity : 8;
            char** names = realloc(d->shard_names, capacity * sizeof *names);
            if (names == NULL) {
                st = io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
                break;
            }
            d->shard_names = names;
        }
        if ((d->shard_names[d->shard_count] = copy_string(e->d_name)) == NULL) {
            st = io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
        } else {
            d->shard_count++;
        }
    }
    closedir(dir);
    MXMOE_IO_FORWARD(st);
    if (d->shard_count == 0) {
        return io_fail(err, MXMOE_ERR_IO, d->path,
                       "no *.safetensors files and no " MODEL_INDEX_NAME " in the folder");
    }
    MXMOE_IO_FORWARD(make_shard_table(d, err));
    size_t total = 0;
    for (size_t i = 0; i < d->shard_count; i++) {
        mxmoe_st_file* f;
        MXMOE_IO_FORWARD(model_dir_shard(d, i, &f, err));
        total += mxmoe_st_count(f);
    }
    d->map = calloc(total ? total : 1, sizeof *d->map);
    if (d->map == NULL) {
        return io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
    }
    for (size_t i = 0; i < d->shard_count; i++) {
        for (size_t t = 0; t < mxmoe_st_count(d->shards[i]); t++) {
            d->map[d->map_count].name = copy_string(mxmoe_st_info(d->shards[i], t)->name);
            if (d->map[d->map_count].name == NULL) {
                return io_fail(err, MXMOE_ERR_NO_MEMORY, d->path, "out of memory");
            }
            d->map[d->map_count].shard = i;
            d->map_count++;
        }
    }
    return sort_map(d, d->path, err);
}

mxmoe_status model_dir_open(const char* path, model_dir** out, mxmoe_io_error* err) {
    *out = NULL;
    struct stat info;
    if (stat(path, &info) != 0) {
        return io_fail(err, MXMOE_ERR_IO, path, "cannot open: %s", strerror(errno));
    }
    if (!S_ISDIR(info.st_mode)) {
        return io_fail(err, MXMOE_ERR_IO, path, "not a folder");
    }
    model_dir* d = calloc(1, sizeof *d);
    if (d == NULL || (d->path = copy_string(path)) == NULL) {
        free(d);
        return io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    }
    char* config_path = model_join(path, MODEL_CONFIG_NAME);
    char* index_path = model_join(path, MODEL_INDEX_NAME);
    mxmoe_status st = MXMOE_OK;
    if (config_path == NULL || index_path == NULL) {
        st = io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory");
    } else if (stat(config_path, &info) != 0) {
        st = io_fail(err, MXMOE_ERR_IO, config_path,
                     "cannot open: %s (a Hugging Face model folder has a config.json)",
                     strerror(errno));
    } else {
        st = read_json(config_path, &d->config, err);
    }
    if (st == MXMOE_OK) {
        if (stat(index_path, &info) == 0) {
            d->index_name = copy_string(MODEL_INDEX_NAME);
            st = d->index_name == NULL ? io_fail(err, MXMOE_ERR_NO_MEMORY, path, "out of memory")
                                       : load_index(d, index_path, err);
        } else {
            st = load_all_shards(d, err);
        }
    }
    free(config_path);
    free(index_path);
    if (st != MXMOE_OK) {
        model_dir_close(d);
        return st;
    }
    *out = d;
    return io_ok(err);
}

const char* model_dir_path(const model_dir* d) {
    return d->path;
}

const json_value* model_dir_config(const model_dir* d) {
    return d->config;
}

const char* model_dir_index_name(const model_dir* d) {
    return d->index_name;
}

const json_value* model_dir_index_metadata(const model_dir* d) {
    return json_get(d->index, "metadata");
}

size_t model_dir_shard_count(const model_dir* d) {
    return d->shard_count;
}

const char* model_dir_shard_name(const model_dir* d, size_t i) {
    return i < d->shard_count ? d->shard_names[i] : NULL;
}

mxmoe_status model_dir_shard(model_dir* d, size_t i, mxmoe_st_file** file, mxmoe_io_error* err) {
    *file = NULL;
    if (i >= d->shard_count) {
        return io_fail(err, MXMOE_ERR_INVALID_ARGUMENT, d->path, "shard %zu out of range", i);
    }
    if (d->shards[i] == NULL) {
        MXMOE_IO_FORWARD(mxmoe_st_open(d->shard_paths[i], &d->shards[i], err));
    }
    *file = d->shards[i];
    return MXMOE_OK;
}

mxmoe_status model_dir_find(model_dir* d, const char* name, mxmoe_st_file** file, size_t* index,
                            mxmoe_io_error* err) {
    *file = NULL;
    *index = MXMOE_ST_NOT_FOUND;
    map_entry key = {(char*)name, 0};
    map_entry* hit = bsearch(&key, d->map, d->map_count, sizeof *d->map, compare_entries);
    if (hit == NULL) {
        return MXMOE_OK;
    }
    mxmoe_st_file* f;
    MXMOE_IO_FORWARD(model_dir_shard(d, hit->shard, &f, err));
    size_t i = mxmoe_st_find(f, name);
    if (i == MXMOE_ST_NOT_FOUND) {
        io_quoted q;
        return io_fail(err, MXMOE_ERR_FORMAT, d->shard_paths[hit->shard],
                       "tensor '%s' is not in this shard, although %s says it is",
                       io_quote_head(q, name), d->index_name ? d->index_name : "the folder");
    }
    *file = f;
    *index = i;
    return MXMOE_OK;
}

const char* model_dir_file_path(const model_dir* d, const mxmoe_st_file* file) {
    for (size_t i = 0; i < d->shard_count; i++) {
        if (d->shards[i] == file) {
            return d->shard_paths[i];
        }
    }
    return d->path;
}
