/* API keys, allowed origins and loopback Host names (see auth.h). */
#include "server/auth.h"
#include "base/error.h"
#include "base/file.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static lmc_status push(char ***v, size_t *n, const char *s, size_t len) {
    char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    *v = p;
    if (!(p[*n] = strndup(s, len))) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    (*n)++;
    return LMC_OK;
}

static lmc_status load_key_file(lmc_srv_auth *a, const char *path) {
    char *text = NULL;
    size_t len = 0;
    lmc_status st = lmc_read_file(path, "API key file", 1 << 20, &text, &len);
    if (st) return lmc_err_prefix(st, "server: --api-key-file");
    size_t before = a->n_keys;
    for (char *line = text; !st && line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end) end = text + len;
        char *e = end;
        while (e > line && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
        char *b = line;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        if (e > b) st = push(&a->keys, &a->n_keys, b, (size_t)(e - b));
        line = end + 1;
    }
    free(text);
    if (!st && a->n_keys == before)
        st = lmc_err(LMC_ERR_INVALID_ARG, "server: API key file %s holds no key", path);
    return st;
}

lmc_status lmc_srv_auth_init(lmc_srv_auth *a, const char *const *keys, size_t n_keys,
                             const char *key_file, const char *const *origins, size_t n_origins) {
    memset(a, 0, sizeof *a);
    lmc_status st = LMC_OK;
    for (size_t i = 0; !st && i < n_keys; i++) {
        if (!keys[i] || !keys[i][0])
            st = lmc_err(LMC_ERR_INVALID_ARG, "server: API key %zu is empty", i);
        else st = push(&a->keys, &a->n_keys, keys[i], strlen(keys[i]));
    }
    if (!st && key_file) st = load_key_file(a, key_file);
    for (size_t i = 0; !st && i < n_origins; i++) {
        if (!origins[i] || !origins[i][0])
            st = lmc_err(LMC_ERR_INVALID_ARG, "server: allowed origin %zu is empty", i);
        else if (!strcmp(origins[i], "*")) a->any_origin = true;
        else st = push(&a->origins, &a->n_origins, origins[i], strlen(origins[i]));
    }
    if (st) lmc_srv_auth_free(a);
    return st;
}

void lmc_srv_auth_free(lmc_srv_auth *a) {
    for (size_t i = 0; i < a->n_keys; i++) free(a->keys[i]);
    for (size_t i = 0; i < a->n_origins; i++) free(a->origins[i]);
    free(a->keys);
    free(a->origins);
    memset(a, 0, sizeof *a);
}

/* Equal strings, in time that depends on the lengths only. */
static bool same(const char *x, size_t nx, const char *y, size_t ny) {
    size_t n = nx > ny ? nx : ny;
    unsigned diff = nx != ny;
    for (size_t i = 0; i < n; i++) {
        unsigned char cx = i < nx ? (unsigned char)x[i] : 0;
        unsigned char cy = i < ny ? (unsigned char)y[i] : 0;
        diff |= (unsigned)(cx ^ cy);
    }
    return diff == 0;
}

int lmc_srv_auth_key(const lmc_srv_auth *a, const char *authorization) {
    if (a->n_keys == 0) return 0;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) return -1;
    const char *tok = authorization + 7;
    while (*tok == ' ') tok++;
    size_t n = strlen(tok);
    while (n && tok[n - 1] == ' ') n--;
    int found = -1;
    for (size_t i = 0; i < a->n_keys; i++) {
        bool eq = same(tok, n, a->keys[i], strlen(a->keys[i]));
        found = eq && found < 0 ? (int)i : found;
    }
    return found;
}

bool lmc_srv_auth_origin_ok(const lmc_srv_auth *a, const char *origin) {
    if (!origin || a->any_origin) return true;
    for (size_t i = 0; i < a->n_origins; i++)
        if (!strcasecmp(origin, a->origins[i])) return true;
    return false;
}

bool lmc_srv_host_is_loopback(const char *host) {
    if (!host || !*host) return false;
    char name[256];
    size_t n = strlen(host);
    if (n >= sizeof name) return false;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close || (close[1] && close[1] != ':')) return false;
        memcpy(name, host + 1, (size_t)(close - host - 1));
        name[close - host - 1] = 0;
        struct in6_addr a6;
        return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    const char *colon = strchr(host, ':');
    size_t len = colon ? (size_t)(colon - host) : n;
    memcpy(name, host, len);
    name[len] = 0;
    if (colon) {
        const char *p = colon + 1;
        if (!*p) return false;
        for (; *p; p++)
            if (*p < '0' || *p > '9') return false;
    }
    if (len && name[len - 1] == '.') name[--len] = 0;
    if (!strcasecmp(name, "localhost")) return true;
    size_t ln = strlen(name);
    if (ln > 10 && !strcasecmp(name + ln - 10, ".localhost")) return true;
    struct in_addr a4;
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool lmc_srv_addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) ==
               127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a6);
    }
    return false;
}
