/* File input for the CLI (see cli_io.h). */
#include "cli_io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *read_stream(const char *prefix, const char *path, FILE *f, size_t max,
                         size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fprintf(stderr, "%s: %s: out of memory\n", prefix, path);
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                fprintf(stderr, "%s: %s exceeds %zu bytes\n", prefix, path, max);
                free(buf);
                return NULL;
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                fprintf(stderr, "%s: %s: out of memory\n", prefix, path);
                free(buf);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        fprintf(stderr, "%s: %s: read error\n", prefix, path);
        free(buf);
        return NULL;
    }
    if (n == max && fgetc(f) != EOF) {
        fprintf(stderr, "%s: %s exceeds %zu bytes\n", prefix, path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *cli_read_file(const char *prefix, const char *path, size_t max, size_t *len) {
    if (!strcmp(path, "-")) return read_stream(prefix, "standard input", stdin, max, len);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", prefix, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s: %s: not a regular file\n", prefix, path);
        close(fd);
        return NULL;
    }
    if ((unsigned long long)st.st_size > max) {
        fprintf(stderr, "%s: %s exceeds %zu bytes\n", prefix, path, max);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", prefix, path, strerror(errno));
        close(fd);
        return NULL;
    }
    char *out = read_stream(prefix, path, f, max, len);
    fclose(f);
    return out;
}

bool cli_is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}
