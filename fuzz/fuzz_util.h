/* Shared helpers for the fuzz targets and their replay driver: the parsers
 * under test read files by path, so each input is written into a private
 * scratch directory (in /dev/shm when available, to keep it off the disk). */
#ifndef LMC_FUZZ_UTIL_H
#define LMC_FUZZ_UTIL_H
#include "lmc.h"
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LMC_FUZZ_SOURCE_DIR
#define LMC_FUZZ_SOURCE_DIR "."
#endif

/* A violated invariant: abort so both libFuzzer and the replay test see it. */
#define FZ_REQUIRE(cond)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* Every failure must come with a message. */
#define FZ_REQUIRE_MESSAGE(st)                                                     \
    do {                                                                           \
        if ((st) != LMC_OK) {                                                      \
            const char *fz_msg_ = lmc_last_error();                                \
            FZ_REQUIRE(fz_msg_ != NULL && fz_msg_[0] != '\0');                     \
        }                                                                          \
    } while (0)

/* With LMC_FUZZ_VERBOSE set, report each input's outcome (for checking
 * that seeds are accepted). */
static inline void fz_note(const char *what, lmc_status st) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("LMC_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s%s%s\n", what, lmc_status_str(st), st ? ": " : "",
                st ? lmc_last_error() : "");
}

static char fz_dir[64];

static inline void fz_cleanup(void) {
    if (!fz_dir[0]) return;
    DIR *d = opendir(fz_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", fz_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fz_dir);
}

/* The scratch directory (created on first use, removed at exit). */
static inline const char *fz_scratch(void) {
    if (fz_dir[0]) return fz_dir;
    const char *bases[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        if (!bases[i] || access(bases[i], W_OK)) continue;
        snprintf(fz_dir, sizeof fz_dir, "%s/lmc-fuzz-XXXXXX", bases[i]);
        if (mkdtemp(fz_dir)) {
            atexit(fz_cleanup);
            return fz_dir;
        }
    }
    fprintf(stderr, "fuzz: cannot create a scratch directory\n");
    abort();
}

/* A tiny BPE tokenizer (ids 0..3: "a", "b", "ab", "</s>") written once into
 * <scratch>/tok, for targets that need a context; fz_tiny_tokenizer_remove
 * deletes it (call it before the scratch directory is removed). */
static inline const char *fz_tiny_tokenizer_dir(void) {
    static char dir[600];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/tok", fz_scratch());
    mkdir(dir, 0700);
    static const char tj[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"</s>\":3},"
        "\"merges\":[\"a b\"]},\"added_tokens\":[{\"id\":3,\"content\":\"</s>\","
        "\"special\":true}]}";
    char path[700];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    FZ_REQUIRE(f && fwrite(tj, 1, sizeof tj - 1, f) == sizeof tj - 1 && !fclose(f));
    return dir;
}

static inline void fz_tiny_tokenizer_remove(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/tok/tokenizer.json", fz_scratch());
    unlink(path);
    snprintf(path, sizeof path, "%s/tok", fz_scratch());
    rmdir(path);
}

/* Path of `name` inside the scratch directory (static buffer per slot). */
static inline const char *fz_path(const char *name, int slot) {
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_scratch(), name);
    return paths[slot];
}

/* Write `n` bytes to scratch file `name`; returns its path. */
static inline const char *fz_write(const char *name, int slot, const void *data, size_t n) {
    const char *p = fz_path(name, slot);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "fuzz: cannot write %s\n", p);
        abort();
    }
    return p;
}

static inline void fz_remove(const char *name, int slot) { unlink(fz_path(name, slot)); }

/* Split `data` at the first occurrence of `sep`: the head is [0, *head_len),
 * the tail (NULL when sep is absent) follows the separator. */
static inline const unsigned char *fz_split(const unsigned char *data, size_t n, const char *sep,
                                     size_t *head_len, size_t *tail_len) {
    size_t m = strlen(sep);
    for (size_t i = 0; m && i + m <= n; i++) {
        if (!memcmp(data + i, sep, m)) {
            *head_len = i;
            *tail_len = n - i - m;
            return data + i + m;
        }
    }
    *head_len = n;
    *tail_len = 0;
    return NULL;
}

/* The whole file at `rel` under the source tree (LMC_SOURCE_DIR, else the
 * directory compiled in); malloc'd, its size in *len. Aborts when missing:
 * a target without its fixtures would fuzz nothing. */
static inline char *fz_read_source_file(const char *rel, size_t *len) {
    const char *root = getenv("LMC_SOURCE_DIR");
    char src[1024];
    snprintf(src, sizeof src, "%s/%s", root && *root ? root : LMC_FUZZ_SOURCE_DIR, rel);
    FILE *f = fopen(src, "rb");
    if (!f) {
        fprintf(stderr, "fuzz: cannot open %s\n", src);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    FZ_REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#endif
