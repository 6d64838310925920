/* A minimal blocking HTTP/1.1 client for the server tests: one request per
 * connection ("Connection: close"), chunked replies decoded, a receive
 * timeout so a stuck server fails the test instead of hanging it. */
#ifndef LMC_TESTS_SERVER_HTTP_CLIENT_H
#define LMC_TESTS_SERVER_HTTP_CLIENT_H
#include "base/buf.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
    int status;     /* 0: no reply */
    lmc_buf head;   /* status line + headers */
    lmc_buf body;   /* decoded body, NUL-terminated */
} http_reply;

static inline void http_reply_free(http_reply *r) {
    lmc_buf_free(&r->head);
    lmc_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

static inline int http_connect(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline void http_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return; /* the server may refuse early; read its reply anyway */
        p += k;
        n -= (size_t)k;
    }
}

/* Decode a chunked body in place into `out`; false when malformed. */
static inline bool http_dechunk(const char *p, size_t n, lmc_buf *out) {
    size_t i = 0;
    for (;;) {
        char *end;
        if (i >= n) return false;
        unsigned long len = strtoul(p + i, &end, 16);
        const char *crlf = strstr(p + i, "\r\n");
        if (!crlf || end == p + i) return false;
        i = (size_t)(crlf - p) + 2;
        if (len == 0) return true;
        if (i + len + 2 > n) return false;
        lmc_buf_append(out, p + i, len);
        i += len + 2;
    }
}

/* Parse a complete raw response. */
static inline void http_parse(const lmc_buf *raw, http_reply *r) {
    if (!raw->p) return;
    const char *sep = strstr(raw->p, "\r\n\r\n");
    if (!sep) return;
    size_t hl = (size_t)(sep - raw->p);
    lmc_buf_append(&r->head, raw->p, hl);
    if (sscanf(raw->p, "HTTP/1.%*d %d", &r->status) != 1) r->status = 0;
    const char *b = sep + 4;
    size_t bl = raw->len - hl - 4;
    lmc_buf_puts(&r->body, "");
    bool chunked = strcasestr(r->head.p, "transfer-encoding: chunked") != NULL;
    if (chunked) {
        if (!http_dechunk(b, bl, &r->body)) r->status = -1;
    } else {
        lmc_buf_append(&r->body, b, bl);
    }
}

static inline void http_read_all(int fd, lmc_buf *raw) {
    char buf[8192];
    lmc_buf_puts(raw, "");
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        lmc_buf_append(raw, buf, (size_t)k);
    }
}

/* Send `method path` with `body` (NULL: none) and read the whole reply.
 * extra_headers (may be NULL) go verbatim after the standard ones. */
static inline void http_request(uint16_t port, const char *method, const char *path,
                                const char *body, size_t body_len, const char *extra_headers,
                                http_reply *r) {
    memset(r, 0, sizeof *r);
    int fd = http_connect(port);
    if (fd < 0) return;
    lmc_buf req = {0};
    lmc_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method,
                   path);
    if (body) lmc_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                             body_len);
    lmc_buf_printf(&req, "%s\r\n", extra_headers ? extra_headers : "");
    if (body) lmc_buf_append(&req, body, body_len);
    http_send_all(fd, req.p, req.len);
    lmc_buf_free(&req);
    lmc_buf raw = {0};
    http_read_all(fd, &raw);
    close(fd);
    http_parse(&raw, r);
    lmc_buf_free(&raw);
}

static inline void http_post(uint16_t port, const char *path, const char *body, http_reply *r) {
    http_request(port, "POST", path, body, strlen(body), NULL, r);
}

#endif
