/* Connection tracking, request deadlines, client-gone checks and the
 * access log (see conn.h). */
#include "server/conn.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct lmc_srv_conn {
    lmc_srv_conn *prev, *next;
    int fd;                 /* -1 once the daemon closes it */
    int refs;               /* the connection itself + holders */
    lmc_srv_conn_phase phase;
    double phase_since, req_start;
    bool shut;              /* the watchdog shut it down */
    bool cors;              /* replies echo the request's allowed Origin */
    unsigned status;
    char ip[INET6_ADDRSTRLEN];
    char method[16];
    char path[160];
};

#define EVICT_AFTER_S 0.5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool pending(const lmc_srv_conn *k) { return k->phase != LMC_CONN_WORK; }

/* Under c->mu. */
static void set_phase(lmc_srv_conn *k, lmc_srv_conn_phase p) {
    k->phase = p;
    k->phase_since = now_s();
}

/* Under c->mu: stop reading from a connection; the daemon then closes it. */
static void shut(lmc_srv_conn *k) {
    if (k->fd >= 0 && !k->shut) shutdown(k->fd, SHUT_RDWR);
    k->shut = true;
}

/* Under c->mu: while more than max_pending connections are still sending
 * a request, shut the one that has been at it longest, if it has been
 * slow (an ordinary client sends its request in milliseconds; a burst of
 * them is not evicted). */
static void evict_slow(lmc_srv_conns *c) {
    double t = now_s();
    for (;;) {
        size_t live = 0;
        lmc_srv_conn *old = NULL;
        for (lmc_srv_conn *k = c->head; k; k = k->next) {
            if (!pending(k) || k->shut || k->fd < 0) continue;
            live++;
            if (!old || k->phase_since < old->phase_since) old = k;
        }
        if (live <= c->max_pending || !old || t - old->phase_since < EVICT_AFTER_S) return;
        shut(old);
    }
}

static void *watchdog_main(void *arg) {
    lmc_srv_conns *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        double t = now_s();
        for (lmc_srv_conn *k = c->head; k; k = k->next) {
            double limit = k->phase == LMC_CONN_HEADERS ? c->header_s
                           : k->phase == LMC_CONN_BODY  ? c->body_s
                                                        : 0;
            if (limit > 0 && t - k->phase_since > limit) shut(k);
        }
        evict_slow(c);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

bool lmc_srv_conns_init(lmc_srv_conns *c, size_t max_pending, double header_s, double body_s,
                        FILE *log) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->log_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->max_pending = max_pending;
    c->header_s = header_s;
    c->body_s = body_s;
    c->log = log;
    c->running = pthread_create(&c->watchdog, NULL, watchdog_main, c) == 0;
    return c->running;
}

void lmc_srv_conns_destroy(lmc_srv_conns *c) {
    if (c->running) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->watchdog, NULL);
        c->running = false;
    }
    /* records still held by nobody cannot remain: the daemon closed all */
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->log_mu);
}

static void unref(lmc_srv_conns *c, lmc_srv_conn *k) {
    if (--k->refs > 0) return;
    if (k->prev) k->prev->next = k->next;
    else c->head = k->next;
    if (k->next) k->next->prev = k->prev;
    free(k);
}

static void peer_ip(struct MHD_Connection *con, char *out, size_t n) {
    snprintf(out, n, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}


void lmc_srv_conns_notify(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    lmc_srv_conns *c = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        lmc_srv_conn *k = calloc(1, sizeof *k);
        *socket_context = k;
        if (!k) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci ? ci->connect_fd : -1;
        k->refs = 1;
        k->phase = LMC_CONN_HEADERS;
        k->phase_since = now_s();
        peer_ip(con, k->ip, sizeof k->ip);
        pthread_mutex_lock(&c->mu);
        evict_slow(c);
        k->next = c->head;
        if (c->head) c->head->prev = k;
        c->head = k;
        pthread_mutex_unlock(&c->mu);
        return;
    }
    lmc_srv_conn *k = *socket_context;
    if (!k) return;
    pthread_mutex_lock(&c->mu);
    k->phase = LMC_CONN_WORK; /* no longer counted or timed */
    k->fd = -1;
    unref(c, k);
    pthread_mutex_unlock(&c->mu);
    *socket_context = NULL;
}

lmc_srv_conn *lmc_srv_conn_of(struct MHD_Connection *con) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void lmc_srv_conn_begin(lmc_srv_conns *c, lmc_srv_conn *k, const char *method, const char *url) {
    if (!k) return;
    pthread_mutex_lock(&c->mu);
    set_phase(k, LMC_CONN_BODY);
    pthread_mutex_unlock(&c->mu);
    k->req_start = now_s();
    k->status = 0;
    snprintf(k->method, sizeof k->method, "%s", method ? method : "?");
    /* the path is logged as sent, cut short and with control bytes masked */
    snprintf(k->path, sizeof k->path, "%s", url ? url : "?");
    for (char *p = k->path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"') *p = '?';
}

void lmc_srv_conn_working(lmc_srv_conns *c, lmc_srv_conn *k) {
    if (!k) return;
    pthread_mutex_lock(&c->mu);
    set_phase(k, LMC_CONN_WORK);
    pthread_mutex_unlock(&c->mu);
}

void lmc_srv_conn_status(lmc_srv_conn *k, unsigned status) {
    if (k) k->status = status;
}

void lmc_srv_conn_end(lmc_srv_conns *c, lmc_srv_conn *k, bool aborted) {
    if (!k) return;
    double ms = (now_s() - k->req_start) * 1e3;
    if (c->log) {
        char when[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        pthread_mutex_lock(&c->log_mu);
        fprintf(c->log, "%s %s \"%s %s\" %u %.1fms%s\n", when, k->ip, k->method, k->path,
                k->status, ms, aborted ? " client-gone" : "");
        fflush(c->log);
        pthread_mutex_unlock(&c->log_mu);
    }
    pthread_mutex_lock(&c->mu);
    if (k->fd >= 0) set_phase(k, LMC_CONN_HEADERS);
    pthread_mutex_unlock(&c->mu);
}

bool lmc_srv_conn_gone(lmc_srv_conns *c, lmc_srv_conn *k) {
    if (!k) return false;
    pthread_mutex_lock(&c->mu);
    bool gone = k->fd < 0 || k->shut;
    if (!gone) {
        char b;
        ssize_t n = recv(k->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    pthread_mutex_unlock(&c->mu);
    return gone;
}

void lmc_srv_conn_hold(lmc_srv_conns *c, lmc_srv_conn *k) {
    if (!k) return;
    pthread_mutex_lock(&c->mu);
    k->refs++;
    pthread_mutex_unlock(&c->mu);
}

void lmc_srv_conn_drop(lmc_srv_conns *c, lmc_srv_conn *k) {
    if (!k) return;
    pthread_mutex_lock(&c->mu);
    unref(c, k);
    pthread_mutex_unlock(&c->mu);
}

void lmc_srv_conn_set_cors(lmc_srv_conn *k, bool on) {
    if (k) k->cors = on;
}

bool lmc_srv_conn_cors(const lmc_srv_conn *k) { return k && k->cors; }

const char *lmc_srv_conn_ip(const lmc_srv_conn *k) { return k ? k->ip : "?"; }
