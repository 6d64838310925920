/* Who may talk to the server: API keys (Authorization: Bearer, compared in
 * constant time, several allowed), the browser origins allowed by CORS
 * (none unless listed), and the Host names a loopback-bound server answers
 * to (loopback names only, so a web page cannot reach it through a DNS name
 * rebound to 127.0.0.1). */
#ifndef LMC_SERVER_AUTH_H
#define LMC_SERVER_AUTH_H
#include "lmc.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct {
    char **keys;
    size_t n_keys;
    char **origins;     /* exact "scheme://host[:port]" values */
    size_t n_origins;
    bool any_origin;    /* "*" was listed */
} lmc_srv_auth;

/* Copies `keys`, adds one key per non-empty line of `key_file` (NULL:
 * none), copies `origins`. An empty key, or a key file without keys, is
 * LMC_ERR_INVALID_ARG. */
lmc_status lmc_srv_auth_init(lmc_srv_auth *a, const char *const *keys, size_t n_keys,
                             const char *key_file, const char *const *origins, size_t n_origins);
void lmc_srv_auth_free(lmc_srv_auth *a);
/* The index of the key an Authorization header carries; 0 when no keys
 * are configured; -1 when it is missing or matches none. Every key is
 * compared in full whatever matches. */
int lmc_srv_auth_key(const lmc_srv_auth *a, const char *authorization);
/* NULL origin (not a browser's cross-origin request) is allowed. */
bool lmc_srv_auth_origin_ok(const lmc_srv_auth *a, const char *origin);
/* A Host header naming localhost, 127.0.0.0/8 or [::1] (port optional). */
bool lmc_srv_host_is_loopback(const char *host);
bool lmc_srv_addr_is_loopback(const struct sockaddr *sa);

#endif
