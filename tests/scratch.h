/* A per-process scratch directory for tests, removed at exit. */
#ifndef LMC_TEST_SCRATCH_H
#define LMC_TEST_SCRATCH_H
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch_dir_[256];

/* Remove a directory tree (does not follow symlinks). */
static void scratch_rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (!lstat(p, &st) && S_ISDIR(st.st_mode))
            scratch_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void scratch_cleanup_(void) {
    if (scratch_dir_[0]) scratch_rm_tree(scratch_dir_);
}

/* $TMPDIR/lmc-<tag>-XXXXXX, created on first use. */
static const char *scratch_root(const char *tag) {
    if (scratch_dir_[0]) return scratch_dir_;
    const char *base = getenv("TMPDIR");
    snprintf(scratch_dir_, sizeof scratch_dir_, "%s/lmc-%s-XXXXXX", base && *base ? base : "/tmp",
             tag);
    if (!mkdtemp(scratch_dir_)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(scratch_cleanup_);
    return scratch_dir_;
}

#endif
