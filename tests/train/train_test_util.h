/* Scratch files for the dataset tests. */
#ifndef LMC_TEST_TRAIN_UTIL_H
#define LMC_TEST_TRAIN_UTIL_H
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tt_dir[256];

/* Remove the scratch tree (one level of subdirectories). */
static void tt_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (!lstat(p, &st) && S_ISDIR(st.st_mode))
            tt_rmtree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void tt_cleanup(void) {
    if (tt_dir[0]) tt_rmtree(tt_dir);
}

static const char *tt_scratch(void) {
    if (tt_dir[0]) return tt_dir;
    const char *base = getenv("TMPDIR");
    snprintf(tt_dir, sizeof tt_dir, "%s/lmc-train-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tt_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(tt_cleanup);
    return tt_dir;
}

/* Path of `name` in the scratch directory (a few rotating static buffers). */
static const char *tt_path(const char *name) {
    static char bufs[8][1024];
    static int slot;
    char *p = bufs[slot++ % 8];
    snprintf(p, 1024, "%s/%s", tt_scratch(), name);
    return p;
}

/* Write `n` bytes (n == (size_t)-1: strlen) to scratch file `name`. */
static const char *tt_write_n(const char *name, const char *data, size_t n) {
    const char *p = tt_path(name);
    if (n == (size_t)-1) n = strlen(data);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    return p;
}
#define tt_write(name, text) tt_write_n((name), (text), (size_t)-1)

/* Root of the source tree (ctest sets LMC_SOURCE_DIR). */
static const char *tt_root(void) {
    const char *r = getenv("LMC_SOURCE_DIR");
    return r && *r ? r : ".";
}

#endif
