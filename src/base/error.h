/* Per-thread error message behind lmc_last_error(). */
#ifndef LMC_BASE_ERROR_H
#define LMC_BASE_ERROR_H
#include "lmc.h"
#include <stdarg.h>

/* Record a formatted message for this thread and return `st` (so callers can
 * write `return lmc_err(LMC_ERR_IO, "config.json: %s", why);`). */
lmc_status lmc_err(lmc_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
lmc_status lmc_verr(lmc_status st, const char *fmt, va_list ap);
/* Prefix the current message with "prefix: " (adds context while unwinding). */
lmc_status lmc_err_prefix(lmc_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void lmc_err_clear(void);

#endif
