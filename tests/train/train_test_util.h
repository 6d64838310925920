/* Scratch files for the dataset tests. */
#ifndef LMC_TEST_TRAIN_UTIL_H
#define LMC_TEST_TRAIN_UTIL_H
#include "scratch.h"

static const char *tt_scratch(void) { return scratch_root("train"); }

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
