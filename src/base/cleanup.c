/* Registry of temporaries removed on SIGINT/SIGTERM (see cleanup.h). The
 * handler only reads the fixed table and makes async-signal-safe system
 * calls (open, getdents64, unlinkat, rmdir, sigaction, raise). */
#include "base/cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TMP_SLOTS 64

static struct {
    atomic_int used; /* 0 free, 1 being written, 2 live */
    bool dir;
    char path[PATH_MAX];
} slots[TMP_SLOTS];

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed;

int lmc_remove_flat_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    char buf[4096] __attribute__((aligned(8)));
    /* unlinking while reading can hide entries: pass again until clean */
    for (int pass = 0; pass < 64; pass++) {
        bool removed = false;
        if (lseek(fd, 0, SEEK_SET) < 0) break;
        for (;;) {
            long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                struct {
                    unsigned long long ino;
                    long long off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *d = (void *)(buf + off);
                off += d->reclen;
                if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) continue;
                if (unlinkat(fd, d->name, 0) == 0) removed = true;
            }
        }
        if (!removed) break;
    }
    close(fd);
    return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void on_signal(int sig) {
    int saved = errno;
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (atomic_load(&slots[i].used) != 2) continue;
        if (slots[i].dir)
            lmc_remove_flat_dir(slots[i].path);
        else
            unlink(slots[i].path);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    errno = saved;
    raise(sig); /* pending until this handler returns, then the default action */
}

/* Our handler goes only where the program left the default action: a
 * program with its own SIGINT/SIGTERM handling keeps it. */
static void install(void) {
    pthread_mutex_lock(&install_lock);
    if (!installed) {
        static const int sigs[] = {SIGINT, SIGTERM};
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
            struct sigaction old, sa;
            if (sigaction(sigs[i], NULL, &old) || old.sa_handler != SIG_DFL ||
                (old.sa_flags & SA_SIGINFO))
                continue;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sigemptyset(&sa.sa_mask);
            sigaddset(&sa.sa_mask, SIGINT);
            sigaddset(&sa.sa_mask, SIGTERM);
            sigaction(sigs[i], &sa, NULL);
        }
        installed = true;
    }
    pthread_mutex_unlock(&install_lock);
}

int lmc_tmp_register(const char *path, bool is_dir) {
    if (strlen(path) >= PATH_MAX) return -1;
    install();
    for (int i = 0; i < TMP_SLOTS; i++) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&slots[i].used, &expect, 1)) continue;
        strcpy(slots[i].path, path);
        slots[i].dir = is_dir;
        atomic_store(&slots[i].used, 2);
        return i;
    }
    return -1;
}

void lmc_tmp_repath(int slot, const char *path) {
    if (slot < 0 || slot >= TMP_SLOTS || strlen(path) >= PATH_MAX) return;
    atomic_store(&slots[slot].used, 1); /* the handler skips it while it changes */
    strcpy(slots[slot].path, path);
    atomic_store(&slots[slot].used, 2);
}

void lmc_tmp_unregister(int slot) {
    if (slot >= 0 && slot < TMP_SLOTS) atomic_store(&slots[slot].used, 0);
}

void lmc_test_crash_point(const char *point) {
    const char *v = getenv("LMC_TEST_CRASH_AT");
    if (!v) return;
    size_t n = strlen(point);
    if (strncmp(v, point, n) || (v[n] && v[n] != ':')) return;
    raise(v[n] == ':' && !strcmp(v + n + 1, "TERM") ? SIGTERM : SIGKILL);
}
