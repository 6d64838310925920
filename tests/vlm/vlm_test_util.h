/* Scratch directories and file writers for the VLM tests. */
#ifndef LMC_TESTS_VLM_UTIL_H
#define LMC_TESTS_VLM_UTIL_H
#include "base/file.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char vt_root[256];

static void vt_rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (!lstat(p, &st) && S_ISDIR(st.st_mode))
            vt_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void vt_cleanup(void) {
    if (vt_root[0]) vt_rm_tree(vt_root);
}

static const char *vt_root_dir(void) {
    if (vt_root[0]) return vt_root;
    const char *tmp = getenv("TMPDIR");
    snprintf(vt_root, sizeof vt_root, "%s/lmc-vlm-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(vt_root)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(vt_cleanup);
    return vt_root;
}

/* A fresh empty subdirectory (static storage: a ring of 8 names). */
static const char *vt_dir(const char *name) {
    static char bufs[8][512];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 512, "%s/%s", vt_root_dir(), name);
    vt_rm_tree(b);
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
