#include "base/error.h"
#include <stdio.h>
#include <string.h>

#define LMC_ERR_CAP 4096
static _Thread_local char g_msg[LMC_ERR_CAP];

lmc_status lmc_verr(lmc_status st, const char *fmt, va_list ap) {
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    return st;
}

lmc_status lmc_err(lmc_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lmc_verr(st, fmt, ap);
    va_end(ap);
    return st;
}

lmc_status lmc_err_prefix(lmc_status st, const char *fmt, ...) {
    char prefix[1024], old[LMC_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 < sizeof g_msg) {
        memcpy(g_msg, prefix, n);
        memcpy(g_msg + n, ": ", 2);
        size_t rest = sizeof g_msg - n - 3, ol = strlen(old);
        if (ol > rest) ol = rest;
        memcpy(g_msg + n + 2, old, ol);
        g_msg[n + 2 + ol] = '\0';
    }
    return st;
}

void lmc_err_clear(void) { g_msg[0] = '\0'; }

const char *lmc_last_error(void) { return g_msg; }

const char *lmc_status_str(lmc_status st) {
    switch (st) {
    case LMC_OK: return "ok";
    case LMC_ERR_INVALID_ARG: return "invalid argument";
    case LMC_ERR_NOT_FOUND: return "not found";
    case LMC_ERR_IO: return "i/o error";
    case LMC_ERR_FORMAT: return "malformed input";
    case LMC_ERR_UNSUPPORTED: return "unsupported";
    case LMC_ERR_LIMIT: return "limit exceeded";
    case LMC_ERR_NOMEM: return "out of memory";
    case LMC_ERR_TEMPLATE: return "template error";
    case LMC_ERR_STATE: return "invalid state";
    case LMC_ERR_DEVICE: return "device error";
    case LMC_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}
