/* The fuzz_http_request harness (fuzz/fuzz_http_request.c) and the stub
 * server it drives, under a storm of signals. libFuzzer's -timeout arms a
 * periodic SIGALRM whose handler makes a blocking poll() return EINTR; the
 * harness used to take that for a connection the server never closed, so
 * long runs stopped after tens of thousands of inputs although every
 * stopping input replayed cleanly alone (finding H2 in fuzz/README.md).
 * Here SIGALRM comes every 500 us, handled without SA_RESTART, while the
 * committed corpus and reproducers run through one long-lived stub server
 * again and again for two seconds: every input must complete with its
 * checks (the harness aborts otherwise), and the signals must really have
 * arrived. The server's own threads take some of them too. */
#include "check.h"
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MIN_PASSES 8
#define MIN_SECONDS 2.0
#define MAX_INPUTS 256

static atomic_long signals;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_alarm(int sig) {
    (void)sig;
    atomic_fetch_add(&signals, 1);
}

typedef struct {
    uint8_t *data;
    size_t size;
} input;

static size_t load_dir(const char *dir, input *in, size_t n) {
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return n;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_INPUTS) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t *buf = malloc(1 << 16);
        size_t len = buf ? fread(buf, 1, 1 << 16, f) : 0;
        fclose(f);
        in[n].data = buf;
        in[n++].size = len;
    }
    closedir(d);
    return n;
}

int main(void) {
    static input in[MAX_INPUTS];
    size_t n = load_dir("fuzz/corpus/fuzz_http_request", in, 0);
    n = load_dir("fuzz/crashes/fuzz_http_request", in, n);
    CHECK_MSG(n >= 10, "only %zu inputs", n);

    struct sigaction sa = {0};
    sa.sa_handler = on_alarm; /* no SA_RESTART: blocking calls see EINTR */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval it = {.it_interval = {0, 500}, .it_value = {0, 500}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    double t0 = now_s();
    int passes = 0;
    while (passes < MIN_PASSES || now_s() - t0 < MIN_SECONDS) {
        for (size_t i = 0; i < n; i++) LLVMFuzzerTestOneInput(in[i].data, in[i].size);
        passes++;
    }
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, NULL);
    long got = atomic_load(&signals);
    printf("%d passes over %zu inputs in %.1f s with %ld signals\n", passes, n, now_s() - t0, got);
    CHECK_MSG(got >= 100, "only %ld signals arrived", got);
    for (size_t i = 0; i < n; i++) free(in[i].data);
    return check_summary("test_fuzz_http_signals");
}
