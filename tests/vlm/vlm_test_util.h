/* Scratch directories and file writers for the VLM tests. */
#ifndef LMC_TESTS_VLM_UTIL_H
#define LMC_TESTS_VLM_UTIL_H
#include "base/file.h"
#include "scratch.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *vt_root_dir(void) { return scratch_root("vlm-test"); }

/* A fresh empty subdirectory (static storage: a ring of 8 names). */
static const char *vt_dir(const char *name) {
    static char bufs[8][512];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 512, "%s/%s", vt_root_dir(), name);
    scratch_rm_tree(b);
    if (mkdir(b, 0755)) {
        perror(b);
        exit(1);
    }
    return b;
}

static const char *vt_path(const char *dir, const char *name) {
    static char bufs[8][1024];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static void vt_write_n(const char *dir, const char *name, const void *data, size_t n) {
    const char *p = vt_path(dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        perror(p);
        exit(1);
    }
}

static void vt_write(const char *dir, const char *name, const char *text) {
    vt_write_n(dir, name, text, strlen(text));
}

#endif
