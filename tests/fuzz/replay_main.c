/*
 * replay_main.c — runs a fuzz target over files without libFuzzer: each argument is a file or a
 * folder of files, and every file is passed once to LLVMFuzzerTestOneInput.
 *
 * Ordinary (gcc, ASan) builds link the fuzz targets with this driver and replay the seed corpus
 * as a ctest, so every build checks the seeds and any crash reproducer added to the corpus;
 * the fuzz build (-DMXMOE_FUZZ=ON, clang) links libFuzzer instead.
 */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static int replay_file(const char* path) {
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t* data = malloc(n > 0 ? (size_t)n : 1);
    size_t got = data != NULL ? fread(data, 1, (size_t)n, fp) : 0;
    fclose(fp);
    if (data == NULL || got != (size_t)n) {
        free(data);
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, got);
    free(data);
    return 0;
}

int main(int argc, char** argv) {
    int files = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat info;
        if (stat(argv[i], &info) == 0 && S_ISDIR(info.st_mode)) {
            DIR* d = opendir(argv[i]);
            struct dirent* e;
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') {
                    continue;
                }
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                failed += replay_file(path) != 0;
                files++;
            }
            if (d != NULL) {
                closedir(d);
            }
        } else {
            failed += replay_file(argv[i]) != 0;
            files++;
        }
    }
    printf("replayed %d files, %d unreadable\n", files, failed);
    return failed == 0 && files > 0 ? 0 : 1;
}
