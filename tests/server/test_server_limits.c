/* The server under hostile or heavy load, in-process over a tiny qwen3
 * checkpoint: API keys (401), origins and Host names (403), the context
 * length (400 context_length_exceeded), the admission line (429 with
 * Retry-After, never silence), slow senders (64 slowloris sockets while
 * /health answers; header and body deadlines), clients that disconnect
 * (the model is free again at once, streaming or not; 64 streaming
 * clients of which a third leave midway while the rest get exactly the
 * reference text), prompt caches kept apart by key and cache_salt, KV
 * memory returned after an oversized request, the per-address connection
 * limit, the access log, and the warning for a non-loopback bind without a
 * key. Prints the measured
 * /health latency and the time to free the model. */
#include "base/json.h"
#include "check.h"
#include "http_client.h"
#include "lm/lm_test_util.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include "server/admission.h"
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define KEY1 "Authorization: Bearer key-one\r\n"
#define KEY2 "Authorization: Bearer key-two\r\n"
#define QUEUE 4
#define CLIENTS 70
#define SLOW 64
#define PENDING 48
#define CROWD 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static json_object *body_json(const http_reply *r) {
    json_object *o = NULL;
    if (!r->body.p || lmc_json_parse(r->body.p, r->body.len, "reply", &o)) return NULL;
    return o;
}

/* error.code of an error reply ("" when none) */
static void check_code(const http_reply *r, int status, const char *code) {
    CHECK_EQ_INT(r->status, status);
    json_object *o = body_json(r);
    const char *c = lmc_json_str(lmc_json_get(o, "error"), "code", NULL);
    CHECK_MSG(c && !strcmp(c, code), "code %s, body %s", c ? c : "(none)",
              r->body.p ? r->body.p : "");
    json_object_put(o);
}

static int64_t usage_field(const http_reply *r, const char *a, const char *b) {
    json_object *o = body_json(r);
    json_object *u = lmc_json_get(o, "usage");
    if (b) u = lmc_json_get(u, a);
    int64_t v = -1;
    lmc_json_int(u, b ? b : a, &v, NULL);
    json_object_put(o);
    return v;
}

static int64_t health_cached(uint16_t port) {
    http_reply r;
    http_request(port, "GET", "/health", NULL, 0, NULL, &r);
    json_object *o = body_json(&r);
    int64_t v = -1;
    lmc_json_int(o, "cached_tokens", &v, NULL);
    json_object_put(o);
    http_reply_free(&r);
    return v;
}

/* A prompt of about n words (one token each in the Qwen3 tokenizer). */
static char *words_prompt(size_t n) {
    static const char *w[] = {" cat", " dog", " red", " blue", " sun", " moon", " tree"};
    lmc_buf b = {0};
    lmc_buf_puts(&b, "{\"prompt\":\"");
    for (size_t i = 0; i < n; i++) lmc_buf_puts(&b, w[i % 7]);
    lmc_buf_puts(&b, "\"");
    return lmc_buf_take(&b);
}

static void post(uint16_t port, const char *ep, const char *body, const char *hdr,
                 http_reply *r) {
    http_request(port, "POST", ep, body, strlen(body), hdr, r);
}

/* Open a request and leave it running: returns the socket. */
static int start_request(uint16_t port, const char *ep, const char *body, const char *hdr) {
    int fd = http_connect(port);
    if (fd < 0) return -1;
    lmc_buf req = {0};
    lmc_buf_printf(&req,
                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   ep, hdr ? hdr : "", strlen(body), body);
    http_send_all(fd, req.p, req.len);
    lmc_buf_free(&req);
    return fd;
}

/* ------------------------------------------------------------- access */
static void test_auth(uint16_t port) {
    http_reply r;
    http_request(port, "GET", "/v1/models", NULL, 0, NULL, &r);
    check_code(&r, 401, "invalid_api_key");
    CHECK(r.head.p && strcasestr(r.head.p, "WWW-Authenticate: Bearer"));
    http_reply_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, "Authorization: Bearer key-on\r\n", &r);
    check_code(&r, 401, "invalid_api_key");
    http_reply_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, "Authorization: Bearer key-one2\r\n", &r);
    check_code(&r, 401, "invalid_api_key");
    http_reply_free(&r);
    post(port, "/v1/completions", "{\"prompt\":\"hi\"}", "Authorization: Basic a2V5LW9uZQ==\r\n",
         &r);
    check_code(&r, 401, "invalid_api_key");
    http_reply_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, KEY1, &r);
    CHECK_EQ_INT(r.status, 200);
    http_reply_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, KEY2, &r);
    CHECK_EQ_INT(r.status, 200);
    http_reply_free(&r);
    http_request(port, "GET", "/health", NULL, 0, NULL, &r); /* open for probes */
    CHECK_EQ_INT(r.status, 200);
    http_reply_free(&r);
}

static void test_origin_and_host(uint16_t port) {
    http_reply r;
    http_request(port, "OPTIONS", "/v1/chat/completions", NULL, 0,
                 "Origin: http://ok.test\r\nAccess-Control-Request-Method: POST\r\n", &r);
    CHECK_EQ_INT(r.status, 204);
    CHECK(r.head.p && strcasestr(r.head.p, "Access-Control-Allow-Origin: http://ok.test"));
    CHECK(r.head.p && strcasestr(r.head.p, "Access-Control-Allow-Headers: Content-Type, Authorization"));
    http_reply_free(&r);
    http_request(port, "OPTIONS", "/v1/chat/completions", NULL, 0,
                 "Origin: http://evil.test\r\nAccess-Control-Request-Method: POST\r\n", &r);
    check_code(&r, 403, "origin_not_allowed");
    CHECK(r.head.p && !strcasestr(r.head.p, "Access-Control-Allow-Origin"));
    http_reply_free(&r);
    http_request(port, "GET", "/v1/models", NULL, 0, KEY1 "Origin: http://ok.test\r\n", &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.head.p && strcasestr(r.head.p, "Access-Control-Allow-Origin: http://ok.test"));
    http_reply_free(&r);
    /* DNS rebinding: a loopback server answers only to loopback names */
    static const char *bad_hosts[] = {"attacker.example", "127.0.0.1.evil.test",
                                      "localhost.evil.test", "10.0.0.1:80", ""};
    static const char *good_hosts[] = {"localhost", "localhost:8080", "127.0.0.1:1", "[::1]:9",
                                       "127.3.4.5", "app.localhost", "localhost."};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof *bad_hosts; i++) {
        int fd = http_connect(port);
        lmc_buf req = {0}, raw = {0};
        lmc_buf_printf(&req, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                       bad_hosts[i]);
        http_send_all(fd, req.p, req.len);
        http_read_all(fd, &raw);
        close(fd);
        http_parse(&raw, &r);
        if (i < 4) check_code(&r, 403, "host_not_allowed");
        else CHECK(r.status == 400 || r.status == 403); /* empty Host */
        lmc_buf_free(&req);
        lmc_buf_free(&raw);
        http_reply_free(&r);
    }
    for (size_t i = 0; i < sizeof good_hosts / sizeof *good_hosts; i++) {
        int fd = http_connect(port);
        lmc_buf req = {0}, raw = {0};
        lmc_buf_printf(&req, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                       good_hosts[i]);
        http_send_all(fd, req.p, req.len);
        http_read_all(fd, &raw);
        close(fd);
        http_parse(&raw, &r);
        CHECK_MSG(r.status == 200, "Host %s: %d", good_hosts[i], r.status);
        lmc_buf_free(&req);
        lmc_buf_free(&raw);
        http_reply_free(&r);
    }
}

/* ------------------------------------------------------- prompt cache */
static int64_t cached_of(uint16_t port, const char *body, const char *key) {
    http_reply r;
    post(port, "/v1/completions", body, key, &r);
    CHECK_EQ_INT(r.status, 200);
    int64_t v = usage_field(&r, "prompt_tokens_details", "cached_tokens");
    http_reply_free(&r);
    return v;
}

static void test_cache_partition(uint16_t port) {
    char *p = words_prompt(100);
    lmc_buf b = {0}, salted = {0};
    lmc_buf_printf(&b, "%s,\"max_tokens\":2}", p);
    lmc_buf_printf(&salted, "%s,\"max_tokens\":2,\"cache_salt\":\"tenant-a\"}", p);
    CHECK_EQ_INT(cached_of(port, b.p, KEY1), 0);
    CHECK(cached_of(port, b.p, KEY1) >= 99);       /* same key: reused */
    CHECK_EQ_INT(cached_of(port, b.p, KEY2), 0);   /* another key: nothing shared */
    CHECK_EQ_INT(cached_of(port, b.p, KEY1), 0);
    CHECK(cached_of(port, b.p, KEY1) >= 99);
    CHECK_EQ_INT(cached_of(port, salted.p, KEY1), 0); /* another salt */
    CHECK(cached_of(port, salted.p, KEY1) >= 99);
    /* bad salts are refused */
    http_reply r;
    post(port, "/v1/completions", "{\"prompt\":\"x\",\"cache_salt\":7}", KEY1, &r);
    CHECK_EQ_INT(r.status, 400);
    CHECK(r.body.p && strstr(r.body.p, "\"param\":\"cache_salt\""));
    http_reply_free(&r);
    /* an oversized request's KV is returned: cache_keep_tokens is 256 */
    char *big = words_prompt(300);
    lmc_buf bb = {0};
    lmc_buf_printf(&bb, "%s,\"max_tokens\":2}", big);
    CHECK_EQ_INT(cached_of(port, bb.p, KEY1), 0);
    CHECK_EQ_INT(health_cached(port), 0);
    CHECK_EQ_INT(cached_of(port, b.p, KEY1), 0);
    CHECK(health_cached(port) >= 100);
    free(big);
    free(p);
    lmc_buf_free(&bb);
    lmc_buf_free(&b);
    lmc_buf_free(&salted);
}

/* ----------------------------------------------------- disconnects */
#define HUGE_BODY "{\"prompt\":\"go\",\"max_tokens\":16777216%s}"

/* A small request answered: seconds it took (or -1). */
static double quick_request(uint16_t port) {
    double t0 = now_s();
    http_reply r;
    post(port, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":1}", KEY1, &r);
    double dt = now_s() - t0;
    int st = r.status;
    http_reply_free(&r);
    return st == 200 ? dt : -1;
}

/* The client of a request that would run for days walks away: the next
 * request is answered at once. Returns the seconds it took. */
static double abandon(uint16_t port, bool stream) {
    char body[128];
    snprintf(body, sizeof body, HUGE_BODY, stream ? ",\"stream\":true" : "");
    int fd = start_request(port, "/v1/completions", body, KEY1);
    CHECK(fd >= 0);
    sleep_ms(300);
    if (stream) {
        char buf[256];
        CHECK(recv(fd, buf, sizeof buf, 0) > 0); /* it is generating */
    }
    close(fd);
    double dt = quick_request(port);
    CHECK_MSG(dt >= 0 && dt < 2.0, "%s: the model was free after %.3f s",
              stream ? "stream" : "blocking", dt);
    return dt;
}

/* ------------------------------------------------------------- queue */
typedef struct {
    uint16_t port;
    http_reply r;
    atomic_int *done;
} client;

static void *client_main(void *arg) {
    client *c = arg;
    post(c->port, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":2}", KEY1, &c->r);
    atomic_fetch_add(c->done, 1);
    return NULL;
}

static void test_queue(uint16_t port) {
    char body[128];
    snprintf(body, sizeof body, HUGE_BODY, "");
    int holder = start_request(port, "/v1/completions", body, KEY1);
    CHECK(holder >= 0);
    sleep_ms(300);
    static client cl[CLIENTS];
    pthread_t th[CLIENTS];
    atomic_int done = 0;
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){.port = port, .done = &done};
        CHECK(pthread_create(&th[i], NULL, client_main, &cl[i]) == 0);
    }
    /* everyone past the line is answered while the model is still busy */
    double t0 = now_s();
    while (atomic_load(&done) < CLIENTS - QUEUE && now_s() - t0 < 30) sleep_ms(20);
    CHECK_EQ_INT(atomic_load(&done), CLIENTS - QUEUE);
    close(holder); /* the line moves on */
    for (int i = 0; i < CLIENTS; i++) pthread_join(th[i], NULL);
    int n200 = 0, n429 = 0;
    for (int i = 0; i < CLIENTS; i++) {
        if (cl[i].r.status == 200) n200++;
        if (cl[i].r.status == 429) {
            n429++;
            CHECK(cl[i].r.head.p && strcasestr(cl[i].r.head.p, "Retry-After: "));
            CHECK(cl[i].r.body.p && strstr(cl[i].r.body.p, "\"code\":\"rate_limit_exceeded\""));
        }
        http_reply_free(&cl[i].r);
    }
    CHECK_EQ_INT(n200, QUEUE);
    CHECK_EQ_INT(n429, CLIENTS - QUEUE);
}

/* ---------------------------------------------------------- slowloris */
static bool closed_by_peer(int fd, int timeout_ms) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, timeout_ms) <= 0) return false;
    char b[512];
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* Returns the median /health latency (ms) with SLOW sockets hanging. */
static double test_slowloris(uint16_t port, double header_s, double body_s) {
    int fds[SLOW];
    for (int i = 0; i < SLOW; i++) {
        fds[i] = http_connect(port);
        CHECK(fds[i] >= 0);
        const char *part = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        if (fds[i] >= 0) http_send_all(fds[i], part, strlen(part));
    }
    double lat[9];
    for (int i = 0; i < 9; i++) {
        double t0 = now_s();
        http_reply r;
        http_request(port, "GET", "/health", NULL, 0, NULL, &r);
        lat[i] = (now_s() - t0) * 1e3;
        CHECK_EQ_INT(r.status, 200);
        http_reply_free(&r);
        /* the slow senders keep trickling */
        for (int k = 0; k < SLOW; k++)
            if (fds[k] >= 0) send(fds[k], "a", 1, MSG_NOSIGNAL);
    }
    /* past max_pending, the slowest are shut within a second */
    sleep_ms(1000);
    int evicted = 0;
    for (int i = 0; i < SLOW; i++)
        if (fds[i] >= 0 && closed_by_peer(fds[i], 0)) {
            evicted++;
            close(fds[i]);
            fds[i] = -1;
        }
    CHECK_MSG(evicted >= SLOW - PENDING && evicted < SLOW, "%d evicted", evicted);
    for (int i = 1; i < 9; i++)
        for (int j = i; j > 0 && lat[j] < lat[j - 1]; j--) {
            double t = lat[j];
            lat[j] = lat[j - 1];
            lat[j - 1] = t;
        }
    /* the header deadline closes every one of them, trickling or not */
    double t0 = now_s();
    int closed = evicted;
    for (int i = 0; i < SLOW; i++) {
        int left = (int)((header_s + 1.0 - (now_s() - t0)) * 1e3);
        if (fds[i] >= 0 && closed_by_peer(fds[i], left > 0 ? left : 0)) closed++;
        if (fds[i] >= 0) close(fds[i]);
    }
    CHECK_EQ_INT(closed, SLOW);
    /* a body that never completes hits the body deadline */
    int fd = http_connect(port);
    const char *h = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" KEY1
                    "Content-Length: 100\r\n\r\n{\"prompt\":";
    http_send_all(fd, h, strlen(h));
    CHECK(closed_by_peer(fd, (int)((body_s + 2.0) * 1e3)));
    close(fd);
    return lat[4];
}

/* Past max_per_ip open connections from one address, a new one is closed
 * unanswered; once one closes, the address is served again. */
static void test_per_ip(lmc_context *ctx) {
    lmc_server_options o = {.max_per_ip = 3};
    lmc_server *srv = NULL;
    CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    if (!srv) return;
    uint16_t port = lmc_server_port(srv);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = http_connect(port);
        http_send_all(fds[i], "GET /health HTTP/1.1\r\n", 22);
    }
    int extra = http_connect(port);
    CHECK(extra >= 0 && closed_by_peer(extra, 2000));
    if (extra >= 0) close(extra);
    close(fds[0]);
    int status = 0;
    for (int tries = 0; tries < 50 && status != 200; tries++) {
        sleep_ms(20);
        http_reply r;
        http_request(port, "GET", "/health", NULL, 0, NULL, &r);
        status = r.status;
        http_reply_free(&r);
    }
    CHECK_EQ_INT(status, 200);
    close(fds[1]);
    close(fds[2]);
    lmc_server_stop(srv);
}

/* ------------------------------------------------------ crowd of streams */
typedef struct {
    uint16_t port;
    bool leave;          /* disconnect after the first event */
    const char *want;    /* the reference text */
    bool ok;
} streamer;

/* The text of a completions SSE body, and whether it ended with [DONE]. */
static bool sse_text(const char *body, lmc_buf *text) {
    lmc_buf_puts(text, "");
    bool done = false;
    for (const char *p = body; (p = strstr(p, "data: ")); p += 6) {
        const char *end = strstr(p, "\n\n");
        if (!end) return false;
        if (!strncmp(p + 6, "[DONE]", 6)) {
            done = true;
            break;
        }
        json_object *o = NULL;
        if (lmc_json_parse(p + 6, (size_t)(end - p - 6), "event", &o)) return false;
        json_object *c0 = json_object_array_get_idx(lmc_json_get(o, "choices"), 0);
        const char *t = lmc_json_str(c0, "text", NULL);
        if (t) lmc_buf_puts(text, t);
        json_object_put(o);
    }
    return done;
}

static void *streamer_main(void *arg) {
    streamer *s = arg;
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"stream\":true}";
    if (!s->leave) {
        /* the whole crowd is served one by one: wait as long as it takes
         * (sanitizer builds on a loaded machine are slow) */
        int fd = start_request(s->port, "/v1/completions", body, "Connection: close\r\n");
        struct timeval tv = {.tv_sec = 900};
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        lmc_buf raw = {0};
        if (fd >= 0) http_read_all(fd, &raw);
        if (fd >= 0) close(fd);
        http_reply r = {0};
        http_parse(&raw, &r);
        lmc_buf_free(&raw);
        lmc_buf text = {0};
        s->ok = r.status == 200 && r.body.p && sse_text(r.body.p, &text) &&
                !strcmp(text.p, s->want);
        if (!s->ok)
            fprintf(stderr, "streamer: status %d, %zu body bytes, text '%s'\n", r.status,
                    r.body.len, text.p ? text.p : "");
        lmc_buf_free(&text);
        http_reply_free(&r);
        return NULL;
    }
    int fd = start_request(s->port, "/v1/completions", body, NULL);
    struct timeval tv = {.tv_sec = 900}; /* its turn may be far off */
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    lmc_buf raw = {0};
    char buf[1024];
    /* leave once the first event has arrived */
    while (fd >= 0) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0) break;
        lmc_buf_append(&raw, buf, (size_t)k);
        if (strstr(raw.p, "data: ")) {
            s->ok = true;
            break;
        }
    }
    if (fd >= 0) close(fd);
    if (!s->ok) fprintf(stderr, "leaving streamer: no event in %zu bytes\n", raw.len);
    lmc_buf_free(&raw);
    return NULL;
}

static void test_crowd(lmc_context *ctx, uint16_t port) {
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 8;
    char *want = NULL;
    CHECK(lmc_generate_text(ctx, "Once upon a time", &p, &want, NULL) == LMC_OK);
    static streamer s[CROWD];
    pthread_t th[CROWD];
    lmc_rng rng;
    lmc_rng_seed(&rng, 15);
    int leaving = 0;
    for (int i = 0; i < CROWD; i++) {
        s[i] = (streamer){.port = port, .want = want, .leave = lmc_rng_uniform(&rng) < 1.0 / 3};
        leaving += s[i].leave;
        CHECK(pthread_create(&th[i], NULL, streamer_main, &s[i]) == 0);
    }
    for (int i = 0; i < CROWD; i++) pthread_join(th[i], NULL);
    int ok = 0;
    for (int i = 0; i < CROWD; i++) ok += s[i].ok;
    CHECK_EQ_INT(ok, CROWD);
    CHECK(leaving > 10 && leaving < 40);
    /* the server is whole afterwards */
    http_reply r;
    http_request(port, "GET", "/health", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    http_reply_free(&r);
    lmc_free(want);
}

/* ------------------------------------------------------------ context */
static void test_context(uint16_t port) {
    char *p = words_prompt(4200); /* past the model's 4096 */
    static const char *tails[] = {"}", ",\"stream\":true}"};
    for (int i = 0; i < 2; i++) {
        lmc_buf b = {0};
        lmc_buf_printf(&b, "%s%s", p, tails[i]);
        http_reply r;
        post(port, "/v1/completions", b.p, NULL, &r);
        check_code(&r, 400, "context_length_exceeded");
        CHECK(r.body.p && strstr(r.body.p, "the context holds 4096"));
        CHECK(r.body.p && strstr(r.body.p, "\"param\":\"prompt\""));
        http_reply_free(&r);
        lmc_buf_free(&b);
    }
    /* max_tokens past the cap (3 on this server) is clamped */
    http_reply r;
    post(port, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":1000}", NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(usage_field(&r, "completion_tokens", NULL) <= 3);
    http_reply_free(&r);
    free(p);
}

/* ---------------------------------------------------------------- log */
static void test_log_and_warning(lmc_context *ctx, FILE *log) {
    fflush(log);
    rewind(log);
    char line[1024];
    int health = 0, gone = 0, unauthorized = 0;
    while (fgets(line, sizeof line, log)) {
        health += strstr(line, " 127.0.0.1 \"GET /health\" 200 ") != NULL;
        gone += strstr(line, "\"POST /v1/completions\"") && strstr(line, " client-gone");
        unauthorized += strstr(line, "\"GET /v1/models\" 401 ") != NULL;
    }
    CHECK(health >= 9);
    CHECK(gone >= 2);
    CHECK_EQ_INT(unauthorized, 3);
    /* a non-loopback bind without a key warns */
    FILE *f = tmpfile();
    lmc_server_options o = {.host = "0.0.0.0", .log = f};
    lmc_server *srv = NULL;
    CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    lmc_server_stop(srv);
    rewind(f);
    CHECK(fgets(line, sizeof line, f) && strstr(line, "warning: listening on 0.0.0.0") &&
          strstr(line, "without an API key"));
    fclose(f);
    /* bad key options */
    const char *empty[] = {""};
    o = (lmc_server_options){.api_keys = empty, .n_api_keys = 1};
    CHECK_ERR(lmc_server_start(ctx, &o, &srv), LMC_ERR_INVALID_ARG, "API key 0 is empty");
    o = (lmc_server_options){.api_key_file = "/nonexistent/keys"};
    CHECK_ERR(lmc_server_start(ctx, &o, &srv), LMC_ERR_NOT_FOUND, "--api-key-file");
}

/* ------------------------------------------------ the admission line alone */
typedef struct {
    lmc_srv_admission *a;
    atomic_bool leave;
    lmc_srv_adm_result r;
    bool release_after;
} waiter;

static bool waiter_gone(void *user) { return atomic_load(&((waiter *)user)->leave); }

static void *waiter_main(void *arg) {
    waiter *w = arg;
    w->r = lmc_srv_adm_acquire(w->a, waiter_gone, w, 10);
    if (w->r == LMC_ADM_HELD && w->release_after) lmc_srv_adm_release(w->a);
    return NULL;
}

static void test_admission_unit(void) {
    lmc_srv_admission a;
    lmc_srv_adm_init(&a, 1);
    CHECK_EQ_INT(lmc_srv_adm_acquire(&a, NULL, NULL, 10), LMC_ADM_HELD);
    waiter w = {.a = &a};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, waiter_main, &w) == 0);
    while (lmc_srv_adm_waiting(&a) != 1) sleep_ms(1);
    /* the line (one) is full */
    CHECK_EQ_INT(lmc_srv_adm_acquire(&a, NULL, NULL, 10), LMC_ADM_FULL);
    /* a waiter whose client leaves gives up its place; the model stays held */
    atomic_store(&w.leave, true);
    pthread_join(th, NULL);
    CHECK_EQ_INT(w.r, LMC_ADM_GONE);
    CHECK_EQ_INT(lmc_srv_adm_waiting(&a), 0);
    /* release with someone waiting: the model passes to them */
    w = (waiter){.a = &a, .release_after = false};
    CHECK(pthread_create(&th, NULL, waiter_main, &w) == 0);
    while (lmc_srv_adm_waiting(&a) != 1) sleep_ms(1);
    lmc_srv_adm_release(&a);
    pthread_join(th, NULL);
    CHECK_EQ_INT(w.r, LMC_ADM_HELD);
    lmc_srv_adm_release(&a);
    /* idle again: taken at once; stopping turns everyone away */
    CHECK_EQ_INT(lmc_srv_adm_acquire(&a, NULL, NULL, 10), LMC_ADM_HELD);
    w = (waiter){.a = &a};
    CHECK(pthread_create(&th, NULL, waiter_main, &w) == 0);
    while (lmc_srv_adm_waiting(&a) != 1) sleep_ms(1);
    lmc_srv_adm_stop(&a);
    pthread_join(th, NULL);
    CHECK_EQ_INT(w.r, LMC_ADM_GONE);
    CHECK_EQ_INT(lmc_srv_adm_acquire(&a, NULL, NULL, 10), LMC_ADM_GONE);
    lmc_srv_adm_destroy(&a);
}

static void body(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    (void)tv;
    /* keys from the options and from a file */
    char keyfile[1200];
    snprintf(keyfile, sizeof keyfile, "%s/keys.txt", dir);
    FILE *kf = fopen(keyfile, "w");
    fputs("\n  key-two  \n", kf);
    fclose(kf);
    lmc_gen_params d;
    lmc_gen_params_default(&d);
    d.max_tokens = 8;
    d.max_context = (size_t)1 << 22; /* room for requests that would run for days */
    const char *keys[] = {"key-one"};
    const char *origins[] = {"http://ok.test"};
    FILE *log = tmpfile();
    lmc_server_options o = {.model_name = "tiny", .defaults = &d,
                            .api_keys = keys, .n_api_keys = 1, .api_key_file = keyfile,
                            .allow_origins = origins, .n_allow_origins = 1,
                            .max_queue = QUEUE, .cache_keep_tokens = 256, .max_pending = PENDING,
                            .header_timeout_s = 2, .body_timeout_s = 2, .log = log};
    lmc_server *a = NULL;
    CHECK(lmc_server_start(ctx, &o, &a) == LMC_OK);
    if (!a) return;
    uint16_t port = lmc_server_port(a);
    test_auth(port);
    test_origin_and_host(port);
    test_cache_partition(port);
    double t_block = abandon(port, false), t_stream = abandon(port, true);
    test_queue(port);
    double lat = test_slowloris(port, 2, 2);
    printf("model free again %.1f ms after a non-streaming client left, %.1f ms after a "
           "streaming one\n/health median latency with %d slowloris sockets: %.2f ms\n",
           t_block * 1e3, t_stream * 1e3, SLOW, lat);
    lmc_server_stop(a);
    test_log_and_warning(ctx, log);
    test_per_ip(ctx);
    fclose(log);

    lmc_gen_params_default(&d);
    lmc_server_options ob = {.max_queue = CROWD, .max_tokens_cap = 3, .defaults = &d};
    lmc_server *b = NULL;
    CHECK(lmc_server_start(ctx, &ob, &b) == LMC_OK);
    if (!b) return;
    test_context(lmc_server_port(b));
    lmc_server_stop(b);
    ob.max_tokens_cap = 0;
    CHECK(lmc_server_start(ctx, &ob, &b) == LMC_OK);
    if (!b) return;
    test_crowd(ctx, lmc_server_port(b));
    lmc_server_stop(b);
}

int main(void) {
    tiny_single_thread();
    signal(SIGPIPE, SIG_IGN);
    test_admission_unit();
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 11, 0};
    if (tiny_qwen3_run("srv_limits", &spec, body)) return 1;
    return check_summary("test_server_limits");
}
