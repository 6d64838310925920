/* Admission to the one model: a request either holds the model, waits in a
 * bounded line for it, or is turned away at once (HTTP 429) when the line
 * is full. Waiting is cancellable: a waiter whose client has gone, or a
 * server that is stopping, leaves the line without ever touching the
 * model. The holder may hand the model to another thread (a streaming
 * reply's generator) and release it from there. */
#ifndef LMC_SERVER_ADMISSION_H
#define LMC_SERVER_ADMISSION_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy;          /* a request holds the model (or it is granted) */
    bool granted;       /* released to the line: the next waiter to wake takes it */
    bool stopping;      /* wakes every waiter; nobody is admitted any more */
    size_t waiting;     /* requests in line */
    size_t max_waiting; /* line length; one more is turned away */
} lmc_srv_admission;

typedef enum {
    LMC_ADM_HELD,  /* the caller holds the model: call lmc_srv_adm_release */
    LMC_ADM_FULL,  /* the line is full: answer 429 */
    LMC_ADM_GONE,  /* the client left or the server is stopping */
} lmc_srv_adm_result;

void lmc_srv_adm_init(lmc_srv_admission *a, size_t max_waiting);
void lmc_srv_adm_destroy(lmc_srv_admission *a);
/* Take the model, waiting in line while another request holds it. `gone`
 * (may be NULL) is polled about every `poll_ms` while waiting. */
lmc_srv_adm_result lmc_srv_adm_acquire(lmc_srv_admission *a, bool (*gone)(void *), void *user,
                                       unsigned poll_ms);
void lmc_srv_adm_release(lmc_srv_admission *a);
/* Refuse everyone from now on and wake the line. */
void lmc_srv_adm_stop(lmc_srv_admission *a);
/* Requests in line now (for Retry-After and /health). */
size_t lmc_srv_adm_waiting(lmc_srv_admission *a);

#endif
