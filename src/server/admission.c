/* Admission to the model: one holder, a bounded line of waiters, everyone
 * else turned away (see admission.h). */
#include "server/admission.h"
#include <errno.h>
#include <time.h>

void lmc_srv_adm_init(lmc_srv_admission *a, size_t max_waiting) {
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    a->busy = a->stopping = a->granted = false;
    a->waiting = 0;
    a->max_waiting = max_waiting;
}

void lmc_srv_adm_destroy(lmc_srv_admission *a) {
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
}

static void deadline_in(struct timespec *ts, unsigned ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

lmc_srv_adm_result lmc_srv_adm_acquire(lmc_srv_admission *a, bool (*gone)(void *), void *user,
                                       unsigned poll_ms) {
    pthread_mutex_lock(&a->mu);
    if (a->stopping) {
        pthread_mutex_unlock(&a->mu);
        return LMC_ADM_GONE;
    }
    if (!a->busy) { /* (the model is never idle while anyone waits) */
        a->busy = true;
        pthread_mutex_unlock(&a->mu);
        return LMC_ADM_HELD;
    }
    if (a->waiting >= a->max_waiting) {
        pthread_mutex_unlock(&a->mu);
        return LMC_ADM_FULL;
    }
    a->waiting++;
    lmc_srv_adm_result r;
    for (;;) {
        if (a->granted) { /* the model passes to us still busy */
            a->granted = false;
            r = LMC_ADM_HELD;
            break;
        }
        if (a->stopping) {
            r = LMC_ADM_GONE;
            break;
        }
        struct timespec ts;
        deadline_in(&ts, poll_ms ? poll_ms : 50);
        if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT && gone && !a->granted) {
            /* the check may block briefly: don't hold the line's lock */
            pthread_mutex_unlock(&a->mu);
            bool left = gone(user);
            pthread_mutex_lock(&a->mu);
            if (left && !a->granted) {
                r = LMC_ADM_GONE;
                break;
            }
        }
    }
    a->waiting--;
    if (r != LMC_ADM_HELD && a->granted && a->waiting == 0) {
        a->granted = false; /* the last in line left: the model is idle */
        a->busy = false;
    }
    pthread_mutex_unlock(&a->mu);
    return r;
}

void lmc_srv_adm_release(lmc_srv_admission *a) {
    pthread_mutex_lock(&a->mu);
    if (a->waiting > 0 && !a->stopping) {
        a->granted = true; /* to whichever waiter wakes first */
        pthread_cond_broadcast(&a->cv);
    } else {
        a->busy = false;
    }
    pthread_mutex_unlock(&a->mu);
}

void lmc_srv_adm_stop(lmc_srv_admission *a) {
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

size_t lmc_srv_adm_waiting(lmc_srv_admission *a) {
    pthread_mutex_lock(&a->mu);
    size_t n = a->waiting;
    pthread_mutex_unlock(&a->mu);
    return n;
}
