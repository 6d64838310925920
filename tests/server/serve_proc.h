/* Test helper: `lmc serve` as a child process on an ephemeral port (the
 * port read from its banner), for the tests that drive the real binary. */
#ifndef LMC_TESTS_SERVER_SERVE_PROC_H
#define LMC_TESTS_SERVER_SERVE_PROC_H
#include "base/buf.h"
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Start `lmc serve` on an ephemeral port with `extra` arguments (up to 8,
 * NULL-terminated); returns the pid and the port read from its banner (0
 * when none came within a minute). Its later stderr goes to *err_fd (the
 * caller closes it), or is dropped when err_fd is NULL. */
static inline pid_t start_server(const char *lmc_bin, const char *dir, const char *tokdir,
                                 const char *const *extra, uint16_t *port, int *err_fd) {
    int p[2];
    *port = 0;
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        const char *argv[32] = {lmc_bin, "serve", "-m", dir, "--tokenizer", tokdir, "--port",
                                "0", "--max-tokens", "5", "--model-name", "cli-tiny"};
        int n = 12;
        for (int i = 0; extra && extra[i] && i < 8; i++) argv[n++] = extra[i];
        argv[n] = NULL;
        execv(lmc_bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    char buf[4096];
    size_t len = 0;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 60000) <= 0) break;
        ssize_t k = read(p[0], buf + len, sizeof buf - 1 - len);
        if (k <= 0) break;
        len += (size_t)k;
        buf[len] = 0;
        const char *at = strstr(buf, "http://127.0.0.1:");
        if (at && strchr(at, '\n')) {
            *port = (uint16_t)atoi(at + strlen("http://127.0.0.1:"));
            break;
        }
        if (len == sizeof buf - 1) break;
    }
    if (err_fd) *err_fd = p[0];
    else close(p[0]);
    if (!*port) fprintf(stderr, "lmc serve said: %.*s\n", (int)len, buf);
    return pid;
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything the server wrote to stderr until it exited. */
static inline void drain(int fd, lmc_buf *out) {
    char b[4096];
    ssize_t k;
    lmc_buf_puts(out, "");
    while ((k = read(fd, b, sizeof b)) > 0) lmc_buf_append(out, b, (size_t)k);
    close(fd);
}

#endif
