/* Every open connection of the server, tracked from accept to close:
 * what it is doing (sending headers, sending a body, being served), for
 * the deadlines against slow senders (slowloris); whether its client is
 * still there, so a request whose client left stops generating at once;
 * and what it asked for, for the access log (one line per request).
 *
 * A watchdog thread shuts down connections whose headers or body take
 * longer than their deadline; while more than `max_pending` connections
 * are still sending requests, the slowest of them (sending for over half a
 * second) are shut down, so slow sockets cannot fill the connection slots
 * and keep /health from answering. */
#ifndef LMC_SERVER_CONN_H
#define LMC_SERVER_CONN_H
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { LMC_CONN_HEADERS, LMC_CONN_BODY, LMC_CONN_WORK } lmc_srv_conn_phase;

typedef struct lmc_srv_conn lmc_srv_conn;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t watchdog;
    bool running, stop;
    lmc_srv_conn *head;      /* open connections, newest first */
    size_t max_pending;
    double header_s, body_s; /* deadlines */
    FILE *log;               /* access log (NULL: none) */
    pthread_mutex_t log_mu;
} lmc_srv_conns;

/* Starts the watchdog; false when the thread cannot start. */
bool lmc_srv_conns_init(lmc_srv_conns *c, size_t max_pending, double header_s, double body_s,
                        FILE *log);
/* After the daemon has stopped (every connection closed). */
void lmc_srv_conns_destroy(lmc_srv_conns *c);
/* MHD_OPTION_NOTIFY_CONNECTION callback (cls: the lmc_srv_conns). */
void lmc_srv_conns_notify(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code);

/* The record of an MHD connection (NULL when untracked). */
lmc_srv_conn *lmc_srv_conn_of(struct MHD_Connection *con);
/* The request line has arrived: the body deadline starts. */
void lmc_srv_conn_begin(lmc_srv_conns *c, lmc_srv_conn *k, const char *method, const char *url);
/* The request is complete: no deadline while it is served. */
void lmc_srv_conn_working(lmc_srv_conns *c, lmc_srv_conn *k);
void lmc_srv_conn_status(lmc_srv_conn *k, unsigned status);
/* Whether the current request's replies carry CORS headers. */
void lmc_srv_conn_set_cors(lmc_srv_conn *k, bool on);
bool lmc_srv_conn_cors(const lmc_srv_conn *k);
/* The reply is done (or the client left): the access-log line; the next
 * request's header deadline starts. */
void lmc_srv_conn_end(lmc_srv_conns *c, lmc_srv_conn *k, bool aborted);
/* The client closed or reset its side. */
bool lmc_srv_conn_gone(lmc_srv_conns *c, lmc_srv_conn *k);
/* Hold / drop a reference that outlives the connection (a generation
 * thread's); the record is freed after the connection closed and the last
 * reference is dropped. */
void lmc_srv_conn_hold(lmc_srv_conns *c, lmc_srv_conn *k);
void lmc_srv_conn_drop(lmc_srv_conns *c, lmc_srv_conn *k);
/* The peer's address as text ("?" when unknown). */
const char *lmc_srv_conn_ip(const lmc_srv_conn *k);

#endif
