/* Fuzz the server's whole HTTP request path: bytes from a client go through
 * libmicrohttpd's request parsing, the Host / Origin / API-key gate,
 * routing, the body limits, the JSON body parser and admission, on a
 * server with no model (server/stub.h) that answers a request it would
 * generate for at once.
 *
 * Input: the raw bytes a client sends on one connection (one request or
 * several pipelined), after which the client closes its sending side.
 * Besides "no crash", it checks: the server closes the connection within a
 * few seconds (no hang), everything it sends is a sequence of well-formed
 * HTTP/1.x status lines with a 2xx-5xx code other than 500 (only
 * out-of-memory would be the server's own fault; a "100 Continue" may come
 * first), and every error reply from lmc carries an OpenAI error object.
 *
 * The waits are deadlines on the monotonic clock that outlast signals:
 * libFuzzer's -timeout arms a periodic SIGALRM, and its handler makes a
 * blocking poll() return EINTR (finding H2 in fuzz/README.md was that). */
#include "fuzz_util.h"
#include "server/stub.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* How long the server may leave a connection without progress. */
#define FZ_WAIT_MS 10000

static lmc_server *srv;

static void start(void) {
    signal(SIGPIPE, SIG_IGN);
    static const char *keys[] = {"k"};
    static const char *origins[] = {"http://ok.test"};
    lmc_server_options o = {.api_keys = keys, .n_api_keys = 1,
                            .allow_origins = origins, .n_allow_origins = 1,
                            .max_body_bytes = 1 << 16, .max_queue = 4,
                            .header_timeout_s = 2, .body_timeout_s = 2, .max_per_ip = 4096};
    if (lmc_srv_start_stub(&o, &srv) != LMC_OK) {
        fprintf(stderr, "fuzz_http_request: %s\n", lmc_last_error());
        abort();
    }
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait up to ms for `events` on fd, through any signals meanwhile: > 0
 * ready, 0 when the time ran out, < 0 on another error. */
static int wait_fd(int fd, short events, int ms) {
    long long end = now_ms() + ms;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = events};
        long long left = end - now_ms();
        int r = poll(&pf, 1, left > 0 ? (int)left : 0);
        if (r >= 0 || errno != EINTR) return r;
    }
}

/* Send everything (the server may stop reading early), then close our side. */
static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        if (wait_fd(fd, POLLOUT, FZ_WAIT_MS / 2) <= 0) break;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) break;
        p += k;
        n -= (size_t)k;
    }
    shutdown(fd, SHUT_WR);
}

static size_t read_reply(int fd, char **out) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    FZ_REQUIRE(buf != NULL);
    for (;;) {
        int r = wait_fd(fd, POLLIN, FZ_WAIT_MS);
        FZ_REQUIRE(r != 0); /* the server must finish with the connection */
        FZ_REQUIRE(r > 0);
        if (len == cap) {
            buf = realloc(buf, (cap *= 2) + 1);
            FZ_REQUIRE(buf != NULL);
        }
        ssize_t k = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) break;
        len += (size_t)k;
    }
    buf[len] = 0;
    *out = buf;
    return len;
}

/* Every status line in the reply stream is well formed and not a 500. */
static void check_reply(const char *r, size_t len) {
    if (len == 0) return; /* closed without answering: a malformed request */
    FZ_REQUIRE(!strncmp(r, "HTTP/1.", 7));
    for (const char *p = r; p && p < r + len; p = strstr(p + 1, "\r\nHTTP/1.")) {
        const char *line = p[0] == '\r' ? p + 2 : p;
        int code = 0;
        FZ_REQUIRE(sscanf(line, "HTTP/1.%*1[01] %3d", &code) == 1);
        /* "100 Continue" answers "Expect: 100-continue" before the final reply */
        if (code == 100) continue;
        FZ_REQUIRE(code >= 200 && code <= 599 && code != 500);
        const char *body = strstr(line, "\r\n\r\n");
        const char *ctype = strstr(line, "Content-Type: application/json");
        /* a reply to HEAD carries the headers only: check bodies that are there */
        bool has_body = body && body + 4 < r + len && strncmp(body + 4, "HTTP/1.", 7);
        if (code >= 400 && ctype && has_body && ctype < body)
            FZ_REQUIRE(strstr(body, "{\"error\":{\"message\":") == body + 4);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!srv) start();
    int sv[2];
    FZ_REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    FZ_REQUIRE_MESSAGE(lmc_srv_add_connection(srv, sv[0]));
    send_all(sv[1], data, size);
    char *reply = NULL;
    size_t n = read_reply(sv[1], &reply);
    if (getenv("LMC_FUZZ_VERBOSE")) /* the status lines, for checking the seeds */
        for (const char *p = reply; (p = strstr(p, "HTTP/1.")); p++)
            fprintf(stderr, "%.12s\n", p);
    check_reply(reply, n);
    free(reply);
    close(sv[1]);
    return 0;
}
