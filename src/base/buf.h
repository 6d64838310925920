/* Growable byte buffer (always NUL-terminated when non-empty). */
#ifndef LMC_BASE_BUF_H
#define LMC_BASE_BUF_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *p;
    size_t len, cap;
} lmc_buf;

/* All return false on allocation failure (buffer left valid). */
bool lmc_buf_reserve(lmc_buf *b, size_t extra);
bool lmc_buf_append(lmc_buf *b, const void *data, size_t n);
bool lmc_buf_puts(lmc_buf *b, const char *s);
bool lmc_buf_putc(lmc_buf *b, char c);
bool lmc_buf_printf(lmc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the bytes to the caller (never NULL unless OOM); buffer is reset. */
char *lmc_buf_take(lmc_buf *b);
void lmc_buf_free(lmc_buf *b);

#endif
