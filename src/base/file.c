#include "base/file.h"
#include "base/cleanup.h"
#include "base/error.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/random.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Open for reading without blocking on FIFOs, then insist on a regular file. */
static lmc_status open_regular(const char *path, const char *what, int *fd_out,
                               size_t *size_out) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lmc_err(e == ENOENT ? LMC_ERR_NOT_FOUND : LMC_ERR_IO,
                       "%s: cannot open %s: %s", what, path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lmc_err(LMC_ERR_IO, "%s: cannot stat %s: %s", what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lmc_err(LMC_ERR_IO, "%s: %s is not a regular file", what, path);
    }
    /* Regular files ignore O_NONBLOCK, but clear it so reads behave normally. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return LMC_OK;
}

lmc_status lmc_read_file(const char *path, const char *what, size_t max_bytes,
                         char **out, size_t *out_len) {
    int fd;
    size_t size;
    *out = NULL;
    if (out_len) *out_len = 0;
    lmc_status st = open_regular(path, what, &fd, &size);
    if (st) return st;
    if (size > max_bytes) {
        close(fd);
        return lmc_err(LMC_ERR_LIMIT, "%s: %s is %zu bytes, over the %zu-byte limit",
                       what, path, size, max_bytes);
    }
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory reading %s", what, path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            free(buf);
            close(fd);
            return lmc_err(LMC_ERR_IO, "%s: short read of %s: %s", what, path,
                           e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    if (out_len) *out_len = size;
    return LMC_OK;
}

lmc_status lmc_map_file(const char *path, const char *what, lmc_mapping *m) {
    int fd;
    size_t size;
    m->data = NULL;
    m->size = 0;
    lmc_status st = open_regular(path, what, &fd, &size);
    if (st) return st;
    if (size > 0) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lmc_err(LMC_ERR_IO, "%s: cannot map %s: %s", what, path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    m->size = size;
    return LMC_OK;
}

void lmc_unmap(lmc_mapping *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

char *lmc_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

bool lmc_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bool lmc_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lmc_create_new_file(const char *path) {
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

void lmc_random_hex(char *out, size_t n) {
    unsigned char r[32];
    size_t want = (n + 1) / 2 > sizeof r ? sizeof r : (n + 1) / 2;
    if (getrandom(r, want, GRND_NONBLOCK) != (ssize_t)want) {
        /* no entropy yet: still unique enough, and O_EXCL keeps it safe */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32 ^
                     (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < want; i++, x = x * 6364136223846793005ull + 1442695040888963407ull)
            r[i] = (unsigned char)(x >> 56);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && i / 2 < want; i++) out[i] = hex[(r[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[n < 2 * want ? n : 2 * want] = '\0';
}

static unsigned g_umask = 022;
static void read_umask(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    unsigned m;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1) g_umask = m & 0777;
    if (f) fclose(f);
}
unsigned lmc_umask(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_umask);
    return g_umask;
}

/* "<dir of path>/.<base of path>.<tag>-<12 hex>" (malloc'd). */
char *lmc_sibling_temp_name(const char *path, const char *tag) {
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    size_t n = strlen(path) + strlen(tag) + 20;
    char *t = malloc(n), rnd[13];
    if (!t) return NULL;
    lmc_random_hex(rnd, 12);
    snprintf(t, n, "%.*s.%s.%s-%s", (int)dlen, path, path + dlen, tag, rnd);
    return t;
}

lmc_status lmc_fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    lmc_status st = LMC_OK;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        st = lmc_err(LMC_ERR_IO, "fsync of directory %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

lmc_status lmc_atomic_open_mode(lmc_atomic_file *f, const char *path, unsigned mode) {
    f->fd = f->slot = -1;
    f->mode = mode;
    f->tmp = NULL;
    if (!(f->path = strdup(path))) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
    for (int tries = 0; tries < 16 && f->fd < 0; tries++) {
        free(f->tmp);
        if (!(f->tmp = lmc_sibling_temp_name(path, "tmp"))) break;
        f->fd = lmc_create_new_file(f->tmp);
        if (f->fd < 0 && errno != EEXIST) break;
    }
    if (f->fd < 0) {
        int e = errno;
        lmc_status st = f->tmp ? lmc_err(LMC_ERR_IO, "cannot create %s: %s", f->tmp, strerror(e))
                               : lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
        free(f->path);
        free(f->tmp);
        f->path = f->tmp = NULL;
        return st;
    }
    f->slot = lmc_tmp_register(f->tmp, false);
    return LMC_OK;
}

lmc_status lmc_atomic_open(lmc_atomic_file *f, const char *path) {
    return lmc_atomic_open_mode(f, path, LMC_MODE_PUBLIC);
}

lmc_status lmc_atomic_write(lmc_atomic_file *f, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return lmc_err(LMC_ERR_IO, "write %s: %s", f->tmp, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return LMC_OK;
}

void lmc_atomic_abort(lmc_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    lmc_tmp_unregister(f->slot);
    f->slot = -1;
    free(f->path);
    free(f->tmp);
    f->fd = -1;
    f->path = f->tmp = NULL;
}

lmc_status lmc_atomic_commit(lmc_atomic_file *f) {
    lmc_status st = LMC_OK;
    unsigned mode = f->mode & ~(f->mode == LMC_MODE_PRIVATE ? 0u : lmc_umask()) & 0777;
    if (mode != 0600 && fchmod(f->fd, mode) != 0)
        st = lmc_err(LMC_ERR_IO, "chmod %s: %s", f->tmp, strerror(errno));
    if (!st && fsync(f->fd) != 0)
        st = lmc_err(LMC_ERR_IO, "fsync %s: %s", f->tmp, strerror(errno));
    if (!st && close(f->fd) != 0)
        st = lmc_err(LMC_ERR_IO, "close %s: %s", f->tmp, strerror(errno));
    else if (st)
        close(f->fd);
    f->fd = -1;
    if (!st && rename(f->tmp, f->path) != 0)
        st = lmc_err(LMC_ERR_IO, "rename %s -> %s: %s", f->tmp, f->path, strerror(errno));
    if (st) unlink(f->tmp);
    lmc_tmp_unregister(f->slot);
    f->slot = -1;
    if (!st) st = lmc_fsync_parent(f->path);
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    return st;
}

lmc_status lmc_write_file_atomic(const char *path, const void *data, size_t len) {
    lmc_atomic_file f;
    lmc_status st = lmc_atomic_open(&f, path);
    if (st) return st;
    st = lmc_atomic_write(&f, data, len);
    if (st) {
        lmc_atomic_abort(&f);
        return st;
    }
    return lmc_atomic_commit(&f);
}

lmc_status lmc_ensure_dir(const char *dir) {
    if (lmc_is_dir(dir)) return LMC_OK;
    if (lmc_path_exists(dir))
        return lmc_err(LMC_ERR_IO, "%s: exists and is not a directory", dir);
    if (mkdir(dir, 0755) && errno != EEXIST)
        return lmc_err(LMC_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return LMC_OK;
}

lmc_status lmc_copy_file(const char *src_dir, const char *dst_dir, const char *name,
                         bool required) {
    char *src = lmc_path_join(src_dir, name), *dst = lmc_path_join(dst_dir, name);
    lmc_status st = LMC_OK;
    if (!src || !dst) {
        st = lmc_err(LMC_ERR_NOMEM, "out of memory");
    } else if (lmc_path_exists(src)) {
        char *buf = NULL;
        size_t len = 0;
        st = lmc_read_file(src, src, (size_t)1 << 31, &buf, &len);
        if (!st) st = lmc_write_file_atomic(dst, buf, len);
        free(buf);
    } else if (required) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s not found", src);
    }
    free(src), free(dst);
    return st;
}

lmc_status lmc_copy_model_side_files(const char *src_dir, const char *dst_dir) {
    static const char *const names[] = {
        "generation_config.json", "tokenizer.json",  "tokenizer_config.json",
        "special_tokens_map.json", "tokenizer.model", "chat_template.jinja",
        "chat_template.json",      "vocab.json",      "merges.txt", "added_tokens.json"};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !st; i++)
        st = lmc_copy_file(src_dir, dst_dir, names[i], false);
    return st;
}

bool lmc_same_path(const char *a, const char *b) {
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb && !strcmp(ra, rb);
    free(ra), free(rb);
    return same;
}
