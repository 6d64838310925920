#include "base/buf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool lmc_buf_reserve(lmc_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) return false;
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

bool lmc_buf_append(lmc_buf *b, const void *data, size_t n) {
    if (!lmc_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

bool lmc_buf_puts(lmc_buf *b, const char *s) { return lmc_buf_append(b, s, strlen(s)); }

bool lmc_buf_putc(lmc_buf *b, char c) { return lmc_buf_append(b, &c, 1); }

bool lmc_buf_printf(lmc_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !lmc_buf_reserve(b, (size_t)n)) {
        va_end(ap2);
        return false;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
    return true;
}

char *lmc_buf_take(lmc_buf *b) {
    if (!b->p && !lmc_buf_reserve(b, 0)) return NULL;
    b->p[b->len] = '\0';
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void lmc_buf_free(lmc_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
